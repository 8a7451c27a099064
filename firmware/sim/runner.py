"""The scenario runner behind firmware/sim/run.py (see there for the options).

A module of its own so that it can be shipped compiled (.mpy) like the firmware.
"""
import gc
import json
import os
import sys
import time as _real_time

import socket as _real_socket

from firmware.sim import board, bus, vtime
from firmware.sim.scenario import Scenario, emit

_KEEP = ("firmware", "firmware.sim", "firmware.sim.board", "firmware.sim.bus", "firmware.sim.vtime",
         "firmware.sim.scenario", "firmware.sim.network", "firmware.sim.netsock")


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


class _Peer:
    """The far end of the board's UART: bytes to and from the gateway, cut while the link is down."""

    def __init__(self):
        self.sock = None

    def write(self, data):
        if board.state["link_down"] or self.sock is None:
            return
        try:
            self.sock.write(data)
        except OSError:
            pass

    def read(self, n):
        if self.sock is None or n <= 0:
            return None
        try:
            data = self.sock.recv(n)
        except OSError:
            return None
        if board.state["link_down"]:
            return None  # sent into a dead link
        return data or None


class TcpPeer(_Peer):
    def __init__(self, host, port):
        _Peer.__init__(self)
        s = _real_socket.socket()
        s.connect(_real_socket.getaddrinfo(host, int(port))[0][-1])
        s.setblocking(False)
        self.sock = s


class ListenPeer(_Peer):
    def __init__(self, port):
        _Peer.__init__(self)
        self.server = _real_socket.socket()
        self.server.setsockopt(_real_socket.SOL_SOCKET, _real_socket.SO_REUSEADDR, 1)
        self.server.bind(_real_socket.getaddrinfo("127.0.0.1", int(port))[0][-1])
        self.server.listen(1)
        self.server.setblocking(False)

    def _accept(self):
        if self.sock is None:
            try:
                self.sock = self.server.accept()[0]
                self.sock.setblocking(False)
            except OSError:
                pass

    def write(self, data):
        self._accept()
        _Peer.write(self, data)

    def read(self, n):
        self._accept()
        return _Peer.read(self, n)


class PtyPeer(_Peer):
    def __init__(self, path):
        import select

        _Peer.__init__(self)
        os.system("stty -F %s raw -echo" % path)  # no echo, no CR/LF translation
        self.f = open(path, "r+b")
        self.poller = select.poll()
        self.poller.register(self.f, select.POLLIN)
        self.buf = bytearray(1)

    def write(self, data):
        if not board.state["link_down"]:
            self.f.write(data)
            self.f.flush()

    def read(self, n):
        out = bytearray()
        while len(out) < n and self.poller.poll(0):
            if not self.f.readinto(self.buf):
                break
            out.extend(self.buf)
        if board.state["link_down"] or not out:
            return None
        return bytes(out)


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


def purge():
    """RAM is gone: forget every firmware module but the board's lasting parts."""
    for name in list(sys.modules):
        if name in _KEEP:
            continue
        if name.startswith("firmware") or name.startswith("boards") or name in ("machine", "onewire"):
            del sys.modules[name]
            parent, _, leaf = name.rpartition(".")
            if parent in sys.modules and hasattr(sys.modules[parent], leaf):
                delattr(sys.modules[parent], leaf)
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


def make_peer(spec):
    kind, _, rest = spec.partition(":")
    if kind == "tcp":
        host, port = rest.rsplit(":", 1)
        return TcpPeer(host, port)
    if kind == "tcp-listen":
        return ListenPeer(rest)
    if kind == "pty":
        return PtyPeer(rest)
    usage("unknown --uart %r" % spec)


class Heap:
    """Heap in use: all of it, and the firmware's share (above what the simulator
    itself holds before the firmware boots; on a board machine and the models
    are not on the heap). Steady: right after the main loop's gc.collect()."""

    def __init__(self):
        self.base = 0
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
    peer = make_peer(opts["uart"]) if "uart" in opts else None
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
        gc.collect()
        heap.base = gc.mem_alloc()
        try:
            from firmware.app import main as firmware_main

            if firmware_main(site_path, flash) is None:
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


