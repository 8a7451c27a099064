"""The driver tests' `machine` until F1's firmware/sim/machine.py is in the tree.

Only what drivers use: the sensor peripherals from firmware/sim/io.py, adc.py and i2c.py and the
IRQ gate, which in the simulation holds `fire`d edges while disabled.
"""
from firmware.sim.adc import ADC  # noqa: F401
from firmware.sim.i2c import I2C, SoftI2C  # noqa: F401
from firmware.sim.io import Pin, disable_irq, enable_irq, time_pulse_us  # noqa: F401
