"""The firmware's process of the simulated board: its heap is the board's RAM.

The hardware process (firmware/sim/runner.py) starts one for each boot as
`micropython -X heapsize=N run.py --mcu SOCKET`, with its own -X options, so
a reset really empties RAM (names interned by a boot included) and what
outlives it (RTC memory, scratch registers, the clock, the cables) stays
with the hardware. Besides the firmware this process holds only the wire
(rpc.py), the virtual clock (vtime.py), the `machine` and `onewire`
proxies, and the `network`/`socket` of an MQTT site: the heap figures it
reports at its end are the firmware's own, measured where it runs. Before the
firmware starts it mounts the board's littlefs image at /flash, as a board's
_boot.py mounts it at "/" (firmware/sim/blockdev.py): littlefs's caches are
on this heap, as on a board.
"""
import gc
import os
import socket
import struct
import sys

from firmware.sim import board, rpc, vtime
from firmware.sim.blockdev import Flash


# Heap in use at each sleep: [base, steady, peak]. `base` before the firmware's
# first import; `steady` right after the main loop's gc.collect() (the first light
# sleep after one: a wake that only feeds the watchdog collects nothing, and the
# simulator's proxies, C on a board, leave garbage); `peak` the most seen at any
# sleep, garbage included.
_heap = [0, 0, 0]
_collects = [0, 0]  # the firmware's gc.collect() calls, and their number at the last probe


def _probe(after_collect):
    alloc = gc.mem_alloc()
    if alloc > _heap[2]:
        _heap[2] = alloc
    collected = _collects[0] != _collects[1]
    _collects[1] = _collects[0]
    if after_collect and collected and alloc > _heap[1]:
        _heap[1] = alloc


class _Gc:
    """`gc` as the firmware sees it: the unix port's, with collect() counted for _probe."""

    def __getattr__(self, name):
        return getattr(gc, name)

    def collect(self):
        _collects[0] += 1
        return gc.collect()


class _Sys:
    """`sys` as the board's firmware sees it: the unix port's, but with the board's
    MicroPython release (implementation.version) and platform, which the firmware checks."""

    name = "micropython"

    def __getattr__(self, name):
        return getattr(sys, name)


def _install(hello):
    """The board's own modules: sys, time, machine, and onewire, network or esp32 where used."""
    port = hello["port"]
    board_sys = _Sys()
    board_sys.implementation = board_sys
    board_sys.version = tuple(hello["micropython"]) + ("",)
    board_sys.platform = port["name"]
    sys.modules["sys"] = board_sys
    sys.modules["gc"] = _Gc()
    vtime.rtc_s[0] = hello["rtc_s"]
    sys.modules["time"] = vtime
    sys.modules["utime"] = vtime
    if hello["mqtt"]:
        import firmware.sim.netsock as netsock
        import firmware.sim.network as network

        sys.modules["socket"] = netsock
        sys.modules["network"] = network
    import firmware.sim.machine as machine

    machine.port = port
    machine._wake[0] = hello["wake"]
    sys.modules["machine"] = machine
    if port["name"] == "esp32":
        # `import esp32` finds the simulated one (esp32_modules/esp32.py) when the firmware
        # first asks: until then it costs the heap nothing.
        sys.path.append(__file__.rsplit("/", 1)[0] + "/esp32_modules")
    vtime.clock.deliver = machine.deliver
    if hello["onewire"]:
        import firmware.sim.remote_onewire as onewire

        sys.modules["onewire"] = onewire


def _gate(op, block, offset, length):
    """The hardware's leave for a flash step; the pin IRQs that come due by its end run
    now, as an rp2's do when the step ends (hardware.py flash_step). Before the firmware
    has handlers (the mount, at boot) no edge finds one."""
    n, edges = rpc.call("flash", op, block, offset, length)
    deliver = vtime.clock.deliver
    if edges and deliver is not None:
        deliver(edges)
    return n


def mount(hello):
    """The board's filesystem: the unix port's littlefs2 over the image, with the board's options."""
    import vfs

    dev = Flash(hello["image"], hello["fs_size"], _gate)
    vfs.mount(vfs.VfsLfs2(dev, **hello["fs_mount"]), "/flash")
    return dev


# The heap above the firmware's share (runner.py --free-heap): one block, made
# before the firmware's first import, so it lies below the firmware's objects.
_ballast = []


def _leave_free(free_heap):
    """Fill the heap so that exactly free_heap bytes stay free for the firmware."""
    spare = gc.mem_free() - free_heap
    if spare < 0:
        print("mcu.py: the simulator's modules leave %d B, less than --free-heap %d"
              % (gc.mem_free(), free_heap))
        sys.exit(1)
    _ballast.append(bytearray(max(spare - 64, 0)))  # its object head and block rounding
    gc.collect()
    while gc.mem_free() > free_heap + 16:
        _ballast.append(bytearray(min(gc.mem_free() - free_heap - 16, 256)))
        gc.collect()
    if not free_heap - 64 <= gc.mem_free() <= free_heap + 16:
        print("mcu.py: could not leave %d B free (%d)" % (free_heap, gc.mem_free()))
        sys.exit(1)


def boot(site_path, flash):
    """firmware/main.py's steps: start() unloads firmware.boot, and its last
    reference goes with this frame's `start` before the main loop runs."""
    from firmware.boot import start

    app = start(site_path, flash)
    del start
    if app is None:
        return False
    app.run()
    return True


def main(path):
    # Import the firmware as a board does, from the current directory: each module's
    # __file__ is then "firmware/app.mpy" as on a board, not a long PC path on the heap.
    os.chdir(sys.path[0])
    sys.path[0] = ""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.connect(struct.pack("<H", socket.AF_UNIX) + path.encode() + b"\0")
    rpc.connect(conn)
    hello = rpc.call("hello")
    board.state["cause"] = hello["cause"]
    board.state["link_down"] = hello["link_down"]
    board.state["port"] = hello["port"]["name"]
    board.state["dns"] = hello["dns"]
    dev = mount(hello)  # first, at the bottom of the heap, as _boot.py does on a board
    vtime.install(vtime.Clock(hello["v_us"]))
    _install(hello)
    vtime.clock.heap_probe = _probe
    site, root, free_heap = hello["site"], hello["flash"], hello["free_heap"]
    del hello  # a board holds no such message: its paths and options are not the firmware's heap
    gc.collect()
    if free_heap is not None:
        _leave_free(free_heap)
    _heap[0] = gc.mem_alloc()
    last = ["end"]
    try:
        if not boot(site, root):
            last = ["refused"]
    except board.Reset as r:
        last = ["reset", r.cause, r.power]
    except board.Hang as h:
        last = ["hang", h.why]
    except board.ScenarioEnd:
        pass
    dev.close()  # after a power cut at a flash step, the collector's late flushes write nothing
    rpc.send(conn, [last[0], _heap + [gc.mem_free() + gc.mem_alloc()]] + last[1:])
    conn.close()
