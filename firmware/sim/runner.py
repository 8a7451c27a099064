"""The scenario runner behind firmware/sim/run.py (see there for the options): the hardware process.

It holds the simulated hardware (firmware/sim/hardware.py: device models,
scenario, UART peer, retained memory, the clock across resets, the flash
chip's littlefs image, firmware/sim/flashchip.py) and starts
the firmware in a MicroPython process of its own for each boot
(firmware/sim/mcu.py), with this process's -X options (the heap size): on
a board `machine` and the sensors are silicon, so only the firmware and the
thin proxies of its machine share the board-sized heap. A reset ends that
process; the next boot is a new one, with RAM as empty as a board's.

A module of its own so that it can be shipped compiled (.mpy) like the firmware.
"""
import gc
import json
import os
import socket
import struct
import sys
import time

from binascii import hexlify

from firmware.sim import board, bus, energy, energy_model
from firmware.sim.flashchip import MOUNT, Chip
from firmware.sim.hardware import Hardware
from firmware.sim.scenario import Scenario, emit

_CONNECT_S = 60  # a new firmware process connects within this, even on a loaded machine


def usage(msg):
    print("run.py: " + msg)
    print("usage: run.py --site FILE --scenario FILE --flash DIR [--uart tcp:HOST:PORT|tcp-listen:PORT|pty:PATH]"
          " [--mqtt HOST:PORT] [--speed K] [--board NAME] [--micropython X.Y.Z]")
    sys.exit(64)


def parse(argv):
    opts = {"speed": "1"}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or i + 1 >= len(argv):
            usage("bad argument %r" % arg)
        opts[arg[2:]] = argv[i + 1]
        i += 2
    for need in ("site", "scenario", "flash"):
        if need not in opts:
            usage("--%s is required" % need)
    return opts


def effective_site(opts):
    with open(opts["site"]) as f:
        raw = json.load(f)
    if "board" in opts:
        raw["board"] = opts["board"]
    t = raw.setdefault("transport", {})
    if "mqtt" in opts:
        host, port = opts["mqtt"].rsplit(":", 1)
        t["type"] = "mqtt"
        t["host"] = host
        t["port"] = int(port)
    elif "uart" in opts:
        t["type"] = "uart"
    return raw


class HeapFigures:
    """The firmware processes' heap figures (mcu.py), the most over every boot."""

    def __init__(self):
        self.base = 0
        self.steady = 0
        self.peak = 0
        self.size = 0

    def add(self, figures):
        base, steady, peak, size = figures
        self.base = max(self.base, base)
        self.steady = max(self.steady, steady)
        self.peak = max(self.peak, peak)
        self.size = size


def _quote(arg):
    return "'" + arg.replace("'", "'\\''") + "'"


def _x_options():
    """This process's -X options (heapsize=...), read from /proc up to the script's
    name (the pip package's micropython runs inside a python3: its argv comes first);
    none where there is no /proc."""
    try:
        with open("/proc/self/cmdline", "rb") as f:
            args = f.read().decode().split("\0")
    except OSError:
        return []
    out = []
    for i in range(len(args)):
        if args[i] == sys.argv[0]:
            break
        if args[i] == "-X" and i + 1 < len(args):
            out += ["-X", args[i + 1]]
        elif args[i].startswith("-X") and len(args[i]) > 2:
            out += ["-X", args[i][2:]]
    return out


def listen():
    """A Unix socket for the firmware processes, and its path."""
    path = "%s/huaico-board-%s.sock" % (os.getenv("TMPDIR") or "/tmp", hexlify(os.urandom(6)).decode())
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(struct.pack("<H", socket.AF_UNIX) + path.encode() + b"\0")
    server.listen(1)
    server.settimeout(_CONNECT_S)
    return server, path


# Room for the simulator's own modules in the firmware's process when the
# firmware's share is given (--free-heap): the machine/network proxies, the wire
# and the clock, which on a board are C in flash. mcu.py fills what is left over
# above the firmware's share with one block, so the share is exact.
SIM_ROOM = 64 * 1024


def firmware_x_options(free_heap):
    """The firmware process's -X options: this process's, or with --free-heap a heap
    of that share plus SIM_ROOM for the simulator's own modules."""
    options = _x_options()
    if free_heap is None:
        return options
    out = []
    for i in range(0, len(options) - 1, 2):  # ["-X", "heapsize=N", "-X", ...]
        if not options[i + 1].startswith("heapsize="):
            out += options[i:i + 2]
    return out + ["-X", "heapsize=%d" % (free_heap + SIM_ROOM)]


def power_on(server, path, free_heap=None):
    """Start a firmware process (run.py --mcu) and take its connection."""
    command = [sys.executable] + firmware_x_options(free_heap) + [sys.argv[0], "--mcu", path]
    os.system(" ".join(_quote(arg) for arg in command) + " &")
    try:
        return server.accept()[0]
    except OSError:
        print("run.py: the firmware process did not start: " + " ".join(command))
        sys.exit(1)


def wire(raw, hardware, peer):
    """A new board's wiring on the same world: models for every sensor, the UART peer."""
    world = dict(bus.world)
    faults = set(bus.faults)
    bus.reset()
    bus.world.update(world)
    bus.faults.update(faults)
    from boards import load
    from firmware.sim.devices import wire as wire_models

    b = load(raw["board"])
    models = wire_models(b, raw)
    hardware.scenario.rain_models = [models[s["name"]] for s in raw.get("sensors", ())
                                     if s.get("type") == "rain_gauge"]
    bus.rail_log[0] = emit
    if peer is not None:
        bus.uart_attach(raw["transport"].get("uart", b.PINS.get("uart")), peer)
    hardware.power_on()


def release(b, opts):
    """The MicroPython release the board runs: --micropython X.Y.Z, else the newest its
    board file supports (boards/*.py MICROPYTHON)."""
    if "micropython" in opts:
        return [int(part) for part in opts["micropython"].split(".")]
    return list(b.MICROPYTHON[1])


def rtc_at_boot(port):
    """What time.time() adds to the wall clock in this boot: the port's RTC restarts
    at every boot (rp2) or only at power-on (esp32; firmware/sim/ports/)."""
    now = int(time.time())
    if board.state["rtc_s"] is None or not port.RTC_SURVIVES_RESET:
        board.state["rtc_s"] = port.RTC_AT_BOOT - now
    return board.state["rtc_s"]


def _root():
    """The tree run.py runs from (firmware/sim/run.py three levels down): what the board holds."""
    here = sys.argv[0] if sys.argv[0].startswith("/") else os.getcwd() + "/" + sys.argv[0]
    for _ in range(3):
        here = here[:here.rfind("/")]
    return here


def main():
    opts = parse(sys.argv[1:])
    flash = opts["flash"].rstrip("/")
    raw = effective_site(opts)
    try:
        os.mkdir(flash)
    except OSError:
        pass
    from boards import load

    board_module = load(raw["board"])
    chip = Chip.for_board(flash, board_module)
    scenario = Scenario.load(opts["scenario"])
    chip.provision(_root(), json.dumps(raw), scenario.flash_ballast_kb, scenario.ring_seq)
    hardware = Hardware(scenario, float(opts["speed"]), chip)
    peer = None
    if "uart" in opts:
        from firmware.sim.peers import make_peer

        peer = make_peer(opts["uart"], usage)
        del make_peer
    scenario.start()
    emit("sim_start", 0, "board", raw.get("board"), "speed", hardware.speed,
         "heap", gc.mem_free() + gc.mem_alloc())
    server, path = listen()
    heap = HeapFigures()
    resets = 0
    status = 0
    started = time.time()
    from boards import load
    from firmware.sim.ports import HANGS, load as port_rules

    # --free-heap N: the firmware finds N bytes free when it starts, as a board's
    # gc.mem_free() shows after _boot.py (boards/*.py FREE_HEAP); without it the
    # firmware's process shares this process's heap size with the simulator's modules.
    free_heap = int(opts["free-heap"]) if "free-heap" in opts else None
    version = release(load(raw["board"]), opts)
    hardware.rules = port_rules(raw["board"], version)
    hardware.wiring = load(raw["board"])
    port = hardware.rules.port
    energy.model = energy_model.for_site(raw)
    chip.port = port if scenario.flash_time else None
    try:
        while True:
            wire(raw, hardware, peer)
            hardware.hello = {"cause": board.state["cause"], "v_us": hardware.v_us,
                              "port": hardware.rules.hello(), "micropython": version, "wake": board.state["wake"],
                              "rtc_s": rtc_at_boot(port),
                              "link_down": board.state["link_down"], "site": MOUNT + "/site.json",
                              "flash": MOUNT + "/data", "image": chip.path, "fs_size": chip.size,
                              "fs_mount": chip.options,
                              "mqtt": raw["transport"].get("type") == "mqtt",
                              "dns": scenario.dns, "free_heap": free_heap,
                              "onewire": bool([s for s in raw.get("sensors", ()) if s.get("type") == "ds18b20"])}
            conn = power_on(server, path, free_heap)
            try:
                last = hardware.serve(conn)
                while conn.read(64):
                    pass  # until the firmware process has exited: its output comes first
            except EOFError:
                print("run.py: the firmware process ended without a word (its traceback is above)")
                sys.exit(1)
            finally:
                conn.close()
            heap.add(last[1])
            board.state["wake"] = 0
            if chip.cut is not None:  # a reset at a flash step: its cause is the chip's to tell
                last[2:] = chip.cut
                chip.cut = None
            if last[0] == "refused":
                status = 2
            if last[0] == "hang":
                status = 3
                emit("hang", hardware.virtual_s(), "why", HANGS.get(last[2], last[2]))
            if last[0] != "reset":
                break
            resets += 1
            board.state["cause"] = last[2]
            emit("board_reset", hardware.virtual_s(), "cause", last[2], "power", last[3])
    finally:
        server.close()
        os.remove(path)
    # Heap: the firmware process's, in use right after its main loop's gc.collect()
    # (steady) and the most seen at a sleep, garbage included (peak); fw_ figures
    # less sim_heap, what the machine proxies and the clock held before the
    # firmware's first import.
    emit("sim_end", hardware.virtual_s(), "tips", scenario.tips, "lost_tips", scenario.lost_tips,
         "resets", resets, "heap_steady", heap.steady, "heap_peak", heap.peak,
         "fw_heap_steady", heap.steady - heap.base, "fw_heap_peak", heap.peak - heap.base,
         "sim_heap", heap.base, "heap_size", heap.size, "free_heap", free_heap,
         "wall_s", time.time() - started,
         "flash_steps", chip.steps, "flash_erases", chip.erases, "fs_used_kb", chip.used_blocks() * 4)
    emit_energy(raw["board"], hardware.v_us)
    sys.exit(status)


def emit_energy(board_name, end_us):
    """The board's energy over the run (firmware/sim/energy_model.py), as one "energy" event line."""
    figures = energy.model.report(end_us)
    pairs = ["event", "energy", "board", board_name]
    for key in ("mah_per_day", "avg_ma", "awake_pct", "radio_on_pct", "floor_ma", "seconds", "states"):
        pairs += [key, figures[key]]
    emit("energy", end_us / 1000000, *pairs)
