"""The simulated `machine` module: installed as sys.modules["machine"] on the unix port.

Sensor-facing parts come from firmware/sim/io.py (Pin), adc.py and i2c.py,
the UART (over a peer from firmware/sim/bus.py) from uart.py; this adds the
board-level ones: RTC with memory() and RP2 watchdog scratch registers
(mem32) that survive a reset, a WDT whose missed feed resets the board,
sleep on the virtual clock, and reset causes.
"""
from firmware.sim import board, vtime
from firmware.sim.io import Pin, disable_irq, enable_irq, time_pulse_us  # noqa: F401

PWRON_RESET = board.PWRON_RESET
HARD_RESET = board.HARD_RESET
WDT_RESET = board.WDT_RESET
DEEPSLEEP_RESET = board.DEEPSLEEP_RESET
SOFT_RESET = board.SOFT_RESET
# Peripherals loaded when the firmware first names them: a site without I2C
# sensors (or on MQTT, without a UART) never has their code on the heap.
_LAZY = {"ADC": "adc", "I2C": "i2c", "SoftI2C": "i2c", "UART": "uart"}


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


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    value = getattr(__import__("firmware.sim." + module, None, None, (name,)), name)
    globals()[name] = value
    return value
