"""The simulated `esp32` module of an esp32 board's firmware process: the ext0 and ext1 wake sources.

As ports/esp32/modesp32.c has them (v1.22.0-v1.28.0): only RTC GPIOs can wake
the chip (the hardware process checks each pin: ValueError "invalid pin"),
and a source stays set until changed. esp32.wake_on_ext0 arms ext0 for light
and deep sleep; wake_on_ext1(pins, level) arms ext1 for both, each call
replacing the pin set (None keeps it, an empty list clears it).
firmware/sim/machine.py's sleeps honour them. On the sys.path of an esp32
board only (mcu.py), and loaded when the firmware asks.
"""
import machine

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True


def _watch(pin):
    # The hardware reports this pin's edges so that a sleep can end on them.
    machine._irq_pins[pin._h] = pin
    if pin._irq is None:
        pin._irq = machine._Irq(None, 0, False)
        machine.rpc.call("irq", pin._h, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING, {})


def wake_on_ext0(pin, level=None):
    if pin is None:
        machine.ext0[0] = None
        return
    machine.rpc.call("ext0", pin._h)  # ValueError("invalid pin") off the RTC GPIOs
    machine.ext0[0] = pin._h
    machine.ext0[2] = machine.SLEEP_KINDS["light"] | machine.SLEEP_KINDS["deep"]
    if level is not None:
        machine.ext0[1] = 1 if level else 0
    _watch(pin)


def wake_on_ext1(pins=None, level=None):
    if pins is not None:
        handles = []
        for pin in pins:
            if not isinstance(pin, machine.Pin):
                raise ValueError("expecting a pin")  # machine_pin_get_id
            machine.rpc.call("ext0", pin._h)  # the same RTC_IS_VALID_EXT_PIN check: "invalid pin"
            handles.append(pin._h)
        for pin in pins:
            _watch(pin)
        machine.ext1[0] = handles
    if level is not None:
        machine.ext1[1] = bool(level)
