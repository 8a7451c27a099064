"""The wire between the simulated board's two processes, and the far end of a peripheral.

The firmware runs in a MicroPython process of its own whose heap is the
board's RAM (firmware/sim/mcu.py); the hardware (device models, scenario,
UART peers, retained memory) lives in the process started as
firmware/sim/run.py (firmware/sim/hardware.py). On a board `machine` and the
sensors are silicon, not heap: here they cost the firmware's process only
the thin proxies of firmware/sim/machine.py and remote_onewire.py.

A message is a 4-byte little-endian length and JSON (a C module: no code on
the heap). Bytes travel as {"b": hex} and a peripheral as {"h": handle}.
A reply is [0, value] or [1, exception name, its args].

Both processes count busy time on their own clocks (vtime.py, hwclock.py), so
each request carries the firmware's time as its last element and each reply
the hardware's: the receiver moves its clock up to the sender's, never back.
Without that, the hardware stamped what a request caused (a rail switched on,
a ping sent) up to a scheduling delay later than the firmware did, and a
loaded machine saw a 20 ms settle time end after 16 ms.
"""
import json
import struct
from binascii import hexlify, unhexlify

# Exceptions a reply may name, re-raised as themselves in the firmware's process.
ERRORS = {"OSError": OSError, "ValueError": ValueError, "TypeError": TypeError}
_link = [None]  # the firmware process's socket to the hardware (mcu.py sets it)
_clock = [None]  # the firmware's virtual clock (vtime.py sets it)


class Remote:
    """A peripheral whose object lives in the hardware process: a method the
    proxy class does not define is called there. A `*into(..., buf)` method
    sends len(buf) and fills buf from the bytes that come back."""

    KIND = ""

    def __init__(self, *args, **kwargs):
        self._h = call("new", self.KIND, args, kwargs)

    def __getattr__(self, name):
        h = self._h
        if name.endswith("into"):
            def into(*args):
                buf = args[-1]
                data = call("into", h, name, args[:-1] + (len(buf),))
                buf[0:len(data)] = data
                return len(data)
            return into

        def method(*args):
            return call("call", h, name, args)
        return method


def encode(value):
    """value ready for json.dumps: bytes and peripherals made plain."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"b": hexlify(value).decode()}
    if isinstance(value, Remote):
        return {"h": value._h}
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if isinstance(value, dict):
        return {k: encode(v) for k, v in value.items()}
    return value


def decode(value, objects=None):
    """The inverse of encode; `objects` turns a handle back into the hardware's object."""
    if isinstance(value, list):
        return [decode(v, objects) for v in value]
    if isinstance(value, dict):
        if "b" in value:
            return unhexlify(value["b"])
        if "h" in value:
            return objects[value["h"]]
        return {k: decode(v, objects) for k, v in value.items()}
    return value


def send(sock, message):
    data = json.dumps(encode(message))
    sock.write(struct.pack("<I", len(data)))
    sock.write(data)


def recv(sock, objects=None):
    """The next message; EOFError when the other process is gone."""
    n = struct.unpack("<I", _exactly(sock, 4))[0]
    return decode(json.loads(_exactly(sock, n)), objects)


def _exactly(sock, n):
    out = b""
    while len(out) < n:
        chunk = sock.read(n - len(out))
        if not chunk:
            raise EOFError()
        out += chunk
    return out


def connect(sock):
    _link[0] = sock


def connected():
    """Whether a hardware process is there (a model's own test runs the firmware's side alone)."""
    return _link[0] is not None


def keep_time(clock):
    """The clock whose time each call carries and which each reply moves up (vtime.Clock)."""
    _clock[0] = clock


def call(*message):
    """One request from the firmware's process; the hardware's answer, or its exception."""
    sock = _link[0]
    clock = _clock[0]
    send(sock, list(message) + [clock.now_us()])
    reply = recv(sock)
    clock.reach(reply.pop())
    if reply[0]:
        cls = ERRORS.get(reply[1])
        if cls is None:
            raise RuntimeError("%s%r in the simulated hardware" % (reply[1], tuple(reply[2])))
        raise cls(*reply[2])
    return reply[1]
