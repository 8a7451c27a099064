"""The driver tests' `machine` until F1's firmware/sim/machine.py is in the tree.

Only what drivers use: the sensor peripherals from firmware/sim/io.py and the
IRQ gate, which in the simulation holds `fire`d edges while disabled.
"""
from firmware.sim.io import ADC, I2C, Pin, SoftI2C, disable_irq, enable_irq, time_pulse_us  # noqa: F401
