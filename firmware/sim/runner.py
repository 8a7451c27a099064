"""The scenario runner behind firmware/sim/run.py (see there for the options).

A module of its own so that it can be shipped compiled (.mpy) like the firmware.
"""
import gc
import json
import os
import sys
import time as _real_time

from firmware.sim import board, bus, vtime
from firmware.sim.scenario import Scenario, emit

_KEEP = ("firmware", "firmware.sim", "firmware.sim.board", "firmware.sim.bus", "firmware.sim.vtime",
         "firmware.sim.scenario", "firmware.sim.network", "firmware.sim.netsock", "firmware.sim.peers")


def usage(msg):
    print("run.py: " + msg)
    print("usage: run.py --site FILE --scenario FILE --flash DIR [--uart tcp:HOST:PORT|tcp-listen:PORT|pty:PATH]"
          " [--mqtt HOST:PORT] [--speed K] [--board NAME]")
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


def install_modules(raw):
    """The board's own modules; network and onewire only where the site uses them (heap)."""
    sys.modules["time"] = vtime
    sys.modules["utime"] = vtime
    if raw.get("transport", {}).get("type") == "mqtt":
        import firmware.sim.netsock as netsock
        import firmware.sim.network as network

        sys.modules["socket"] = netsock
        sys.modules["network"] = network
    import firmware.sim.machine as machine

    sys.modules["machine"] = machine
    if [s for s in raw.get("sensors", ()) if s.get("type") == "ds18b20"]:
        import firmware.sim.onewire as onewire

        sys.modules["onewire"] = onewire


def forget(name):
    """Drop a module from sys.modules and from its package's attributes."""
    sys.modules.pop(name, None)
    parent, _, leaf = name.rpartition(".")
    if parent in sys.modules and hasattr(sys.modules[parent], leaf):
        delattr(sys.modules[parent], leaf)


def purge():
    """RAM is gone: forget every firmware module but the board's lasting parts."""
    for name in list(sys.modules):
        if name in _KEEP:
            continue
        if (name.startswith("firmware") or name.startswith("boards") or name.startswith("protocol")
                or name in ("machine", "onewire")):
            forget(name)
    gc.collect()


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


class Heap:
    """Heap in use: all of it, and the firmware's share, i.e. above what the
    simulator alone held before the first boot (on a board machine and the
    models are not on the heap). The first boot's base serves every boot: the
    names (qstrs) a boot interns are never freed, and belong to the firmware.
    Steady: right after the main loop's gc.collect()."""

    def __init__(self):
        self.base = -1
        self.steady = 0
        self.peak = 0
        self.fw_steady = 0
        self.fw_peak = 0

    def probe(self, after_collect):
        alloc = gc.mem_alloc()
        if alloc > self.peak:
            self.peak = alloc
        if alloc - self.base > self.fw_peak:
            self.fw_peak = alloc - self.base
        if after_collect:
            if alloc > self.steady:
                self.steady = alloc
            if alloc - self.base > self.fw_steady:
                self.fw_steady = alloc - self.base


def boot(site_path, flash):
    """The firmware's main(); its function object goes with this frame, so a reset frees the lot."""
    from firmware.boot import main as firmware_main

    return firmware_main(site_path, flash)


def main():
    opts = parse(sys.argv[1:])
    flash = opts["flash"].rstrip("/")
    raw = effective_site(opts)
    try:
        os.mkdir(flash)
    except OSError:
        pass
    site_path = flash + "/site.json"
    with open(site_path, "w") as f:
        json.dump(raw, f)
    scenario = Scenario.load(opts["scenario"])
    heap = Heap()
    clock = vtime.Clock(float(opts["speed"]), scenario)
    clock.heap_probe = heap.probe
    vtime.install(clock)
    peer = None
    if "uart" in opts:
        from firmware.sim.peers import make_peer

        peer = make_peer(opts["uart"], usage)
        del make_peer
    install_modules(raw)
    scenario.start()
    emit("sim_start", 0, "board", raw.get("board"), "speed", clock.speed,
         "heap", gc.mem_free() + gc.mem_alloc())
    resets = 0
    status = 0
    started = _real_time.time()
    while True:
        world = dict(bus.world)
        faults = set(bus.faults)
        bus.reset()
        bus.world.update(world)
        bus.faults.update(faults)
        from boards import load
        from firmware.sim.devices import wire

        b = load(raw["board"])
        models = wire(b, raw)
        scenario.rain_models = [models[s["name"]] for s in raw.get("sensors", ()) if s.get("type") == "rain_gauge"]
        if peer is not None:
            bus.uart_attach(raw["transport"].get("uart", b.PINS.get("uart")), peer)
        del models, b, load, wire
        forget("firmware.sim.devices")  # wiring is done: its code can go
        gc.collect()
        if heap.base < 0:
            heap.base = gc.mem_alloc()
        try:
            if boot(site_path, flash) is None:
                status = 2
            break
        except board.Reset as r:
            resets += 1
            board.state["cause"] = r.cause
            emit("board_reset", vtime.virtual_s(), "cause", r.cause, "power", r.power)
        except board.ScenarioEnd:
            break
        scenario.rain_models = []
        purge()
        install_modules(raw)
    gc.collect()
    emit("sim_end", vtime.virtual_s(), "tips", scenario.tips, "lost_tips", scenario.lost_tips,
         "resets", resets, "heap_steady", heap.steady, "heap_peak", heap.peak,
         "fw_heap_steady", heap.fw_steady, "fw_heap_peak", heap.fw_peak, "sim_heap", heap.base,
         "heap_size", gc.mem_free() + gc.mem_alloc(), "wall_s", _real_time.time() - started)
    sys.exit(status)


