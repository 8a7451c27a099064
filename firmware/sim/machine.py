"""The simulated `machine` module: installed as sys.modules["machine"] on the unix port.

Sensor-facing parts come from firmware/sim/io.py (Pin, ADC, I2C...); this
adds the board-level ones: UART over a peer from firmware/sim/bus.py, RTC
with memory() and RP2 watchdog scratch registers (mem32) that survive a
reset, a WDT whose missed feed resets the board, sleep on the virtual
clock, and reset causes.
"""
from firmware.sim import board, bus, vtime
from firmware.sim.io import ADC, I2C, Pin, SoftI2C, disable_irq, enable_irq, time_pulse_us  # noqa: F401

PWRON_RESET = board.PWRON_RESET
HARD_RESET = board.HARD_RESET
WDT_RESET = board.WDT_RESET
DEEPSLEEP_RESET = board.DEEPSLEEP_RESET
SOFT_RESET = board.SOFT_RESET
_RX_MAX = 1024  # a board UART's receive ring; more is lost, as on a board


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None, timeout=0,
                 **kwargs):
        self.id = id
        self.baudrate = baudrate
        self._rx = bytearray()

    def _pull(self):
        peer = bus.uart_peer(self.id)
        if peer is None:
            return
        data = peer.read(_RX_MAX - len(self._rx))
        if data:
            self._rx.extend(data)

    def any(self):
        self._pull()
        return len(self._rx)

    def read(self, n=-1):
        self._pull()
        if not self._rx:
            return None
        if n < 0 or n > len(self._rx):
            n = len(self._rx)
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return out

    def write(self, data):
        peer = bus.uart_peer(self.id)
        if peer is not None:
            peer.write(bytes(data))
        return len(data)


class RTC:
    def __init__(self, id=0):
        pass

    def memory(self, data=None):
        if data is None:
            return board.state["rtc_memory"]
        board.state["rtc_memory"] = bytes(data)
        return None

    def datetime(self, dt=None):
        t = vtime.localtime()
        return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)


class _Mem32:
    """machine.mem32 for the few registers the firmware touches: the watchdog scratch words."""

    def __getitem__(self, addr):
        return board.scratch.get(addr, 0)

    def __setitem__(self, addr, value):
        board.scratch[addr] = value & 0xFFFFFFFF


mem32 = _Mem32()


class WDT:
    """Once started it cannot be stopped; a feed missed for `timeout` ms resets the board."""

    def __init__(self, id=0, timeout=5000):
        vtime.clock.wdt_start(timeout)

    def feed(self):
        vtime.clock.wdt_feed()


def reset():
    raise board.Reset(HARD_RESET)


def soft_reset():
    raise board.Reset(SOFT_RESET)


def reset_cause():
    return board.state["cause"]


def lightsleep(ms=None):
    vtime.clock.idle((ms if ms is not None else 1000) * 1000, True)


def deepsleep(ms=None):
    vtime.clock.idle((ms if ms is not None else 1000) * 1000, False)
    raise board.Reset(DEEPSLEEP_RESET)


def idle():
    vtime.clock.idle(1000, True)


def freq(hz=None):
    return 125000000


def unique_id():
    return b"\xe6\x61\x38\x97\x83\x2f\x4c\x2b"
