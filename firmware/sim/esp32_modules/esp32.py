"""The simulated `esp32` module of an esp32 board's firmware process: the ext0 wake source.

esp32.wake_on_ext0(pin, level) as ports/esp32/modesp32.c has it (v1.22.0-v1.28.0):
only an RTC GPIO can wake the chip (the hardware process checks the pin), and
the source stays set until changed. firmware/sim/machine.py's sleeps honour it. On the
sys.path of an esp32 board only (mcu.py), and loaded when the firmware asks.
"""
import machine

WAKEUP_ALL_LOW = False
WAKEUP_ANY_HIGH = True


def wake_on_ext0(pin, level=None):
    if pin is None:
        machine.ext0[0] = None
        return
    machine.rpc.call("ext0", pin._h)  # ValueError("invalid pin") off the RTC GPIOs
    machine.ext0[0] = pin._h
    if level is not None:
        machine.ext0[1] = 1 if level else 0
    # The hardware reports this pin's edges so that a sleep can end on them.
    machine._irq_pins[pin._h] = pin
    if pin._irq is None:
        pin._irq = machine._Irq(None, 0, False)
        machine.rpc.call("irq", pin._h, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING, {})
