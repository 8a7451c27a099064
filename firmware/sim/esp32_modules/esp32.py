"""The simulated `esp32` module of an esp32 board's firmware process: wake sources and the pulse counter.

As ports/esp32/modesp32.c has them on the release the board runs (sys.implementation.version):
only RTC GPIOs can be ext0/ext1 sources (the hardware process checks each pin: ValueError
"invalid pin"), a pin is a Pin or a GPIO number (machine_pin_find), and a source stays set until
changed. wake_on_ext0 arms ext0 for light and deep sleep; wake_on_ext1(pins, level) arms ext1 for
both, each call replacing the pin set (None keeps it, an empty list clears it); wake_on_gpio (v1.27.0
on) arms any GPIO for light sleep only. Touch and ULP wakes are flags that refuse the sources they
conflict with ("no resources"); nothing touches a pad or runs the ULP here, so they never wake the
chip. PCNT exists from v1.26.0 (esp32_pcnt.c); its counter lives in the hardware process
(firmware/sim/ports/pcnt.py). firmware/sim/machine.py's sleeps honour the sources. On the sys.path
of an esp32 board only (mcu.py), and loaded when the firmware asks.
"""
import sys

import machine

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True

_RELEASE = tuple(sys.implementation.version[:3])
_GPIO_FIRST = (1, 27, 0)  # esp32_wake_on_gpio, modmachine.c gpio_pins: first in v1.27.0
_PCNT_FIRST = (1, 26, 0)  # esp32_pcnt.c: first in v1.26.0
_wake = {"touch": False, "ulp": False}


def _pin(pin):
    # machine_pin_find: a Pin, or a GPIO number (ValueError "invalid pin" for anything else).
    if isinstance(pin, machine.Pin):
        return pin
    if isinstance(pin, int) and not isinstance(pin, bool):
        try:
            return machine.Pin(pin)
        except ValueError:
            raise ValueError("invalid pin")
    raise ValueError("invalid pin")


def _watch(pin):
    # The hardware reports this pin's edges so that a sleep can end on them.
    machine._irq_pins[pin._h] = pin
    if pin._irq is None:
        pin._irq = machine._Irq(None, 0, False)
        machine.rpc.call("irq", pin._h, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING, {})


def _free(*busy):
    if any(busy):
        raise ValueError("no resources")


def wake_on_ext0(pin, level=None):
    _free(_wake["touch"])  # v1.22.0-v1.28.0: ext0 and touch exclude each other
    if pin is None:
        machine.ext0[0] = None
        return
    pin = _pin(pin)
    if pin._h != machine.ext0[0]:
        machine.rpc.call("ext0", pin._h)  # ValueError("invalid pin") off the RTC GPIOs
    machine.ext0[0] = pin._h
    machine.ext0[2] = machine.SLEEP_KINDS["light"] | machine.SLEEP_KINDS["deep"]
    if level is not None:
        machine.ext0[1] = 1 if level else 0
    _watch(pin)


def wake_on_ext1(pins=None, level=None):
    if pins is not None:
        handles = []
        for pin in [_pin(p) for p in pins]:
            machine.rpc.call("ext0", pin._h)  # the same RTC_IS_VALID_EXT_PIN check: "invalid pin"
            handles.append(pin)
        for pin in handles:
            _watch(pin)
        machine.ext1[0] = [pin._h for pin in handles]
    if level is not None:
        machine.ext1[1] = bool(level)


def wake_on_touch(wake):
    # v1.22.0-v1.26.x: refused while ext0 is set; v1.27.0 on: while ext0 or GPIO wake is set.
    _free(machine.ext0[0] is not None, _RELEASE >= _GPIO_FIRST and machine.gpio[0])
    _wake["touch"] = machine.wake_touch[0] = bool(wake)


def wake_on_ulp(wake):
    _free(machine.ext0[0] is not None, _RELEASE >= _GPIO_FIRST and machine.gpio[0])
    _wake["ulp"] = bool(wake)


def _wake_on_gpio(pins=None, level=None):
    """esp32.wake_on_gpio (v1.27.0 on): any GPIO, checked only when a sleep starts; the level is
    one for all pins (high True, low False), light sleep only on the ESP32 and ESP32-S3."""
    _free(_wake["ulp"], _wake["touch"])
    if pins is not None:
        handles = [_pin(p) for p in pins]
        for pin in handles:
            _watch(pin)
        machine.gpio[0] = [pin._h for pin in handles]
    if level is not None:
        machine.gpio[1] = bool(level)


class _PCNT(machine.rpc.Remote):
    """esp32.PCNT(id, *, channel, pin, rising, falling, mode_pin, mode_low, mode_high, min, max,
    filter, threshold0, threshold1, value): the unit's counter is in the hardware process, which
    checks every keyword as esp32_pcnt.c does. irq() is not modelled."""

    KIND = "PCNT"
    IGNORE = 0  # PCNT_COUNT_DIS
    INCREMENT = 1  # PCNT_COUNT_INC
    DECREMENT = 2  # PCNT_COUNT_DEC
    NORMAL = 0  # PCNT_MODE_KEEP
    REVERSE = 1  # PCNT_MODE_REVERSE
    HOLD = 2  # PCNT_MODE_DISABLE
    IRQ_THRESHOLD1 = 4  # PCNT_EVT_THRES_1 .. PCNT_EVT_ZERO (ESP-IDF pcnt_types_legacy.h)
    IRQ_THRESHOLD0 = 8
    IRQ_MIN = 16
    IRQ_MAX = 32
    IRQ_ZERO = 64

    def __init__(self, *args, **kwargs):
        self._h = machine.rpc.call("new", "PCNT", args, kwargs)

    def init(self, **kwargs):
        machine.rpc.call("call", self._h, "init", (kwargs,))

    def irq(self, *args, **kwargs):
        raise NotImplementedError("esp32.PCNT.irq is not modelled (firmware/README.md)")


def __getattr__(name):
    # What the board's release has: PCNT from v1.26.0, wake_on_gpio from v1.27.0.
    if name == "PCNT" and _RELEASE >= _PCNT_FIRST:
        return _PCNT
    if name == "wake_on_gpio" and _RELEASE >= _GPIO_FIRST:
        return _wake_on_gpio
    raise AttributeError(name)
