"""The simulated peripherals in one process: what the hardware process serves, and what driver checks use.

The firmware's own `machine` (firmware/sim/machine.py) is a proxy to these,
living in the hardware process (firmware/sim/hardware.py); a driver check
(tests/mp_drivers/harness.py) installs this module as `machine` and runs
the drivers next to the device models. Pin, irq masking and time_pulse_us
come from io.py; ADC, I2C, SoftI2C, UART and OneWire are loaded when first
named, so a site without them never has their code on the heap.
"""
from firmware.sim.io import Pin, disable_irq, enable_irq, time_pulse_us  # noqa: F401

_LAZY = {"ADC": "adc", "I2C": "i2c", "SoftI2C": "i2c", "UART": "uart", "OneWire": "onewire", "PCNT": "ports.pcnt"}


def __getattr__(name):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(name)
    value = getattr(__import__("firmware.sim." + module, None, None, (name,)), name)
    globals()[name] = value
    return value
