"""What every I2C accelerometer driver shares: the sample window, the
bounded burst read, and recovery after the sensor drops off the bus.

A chip's driver says how to recognise and set it up (`_check`, `_SETUP`),
where its x, y, z samples are (`_DATA`, `_FORMAT`) and what one count is
worth (`_MS2_PER_LSB`).
"""
import array
import struct
import time

from firmware.drivers import MOTION_CHANNELS, motion_failed, motion_readings

_SAMPLE_MS = 10  # one sample per 100 Hz output


class Accelerometer:
    CHANNELS = MOTION_CHANNELS

    def __init__(self, i2c, index, addr, window=32):
        self.i2c = i2c
        self.index = index
        self.addr = addr
        self.window = window
        self._samples = array.array("h", bytes(6 * window))
        self._raw = bytearray(6)
        self._reg = bytearray(1)
        self._ready = False

    def _setup(self):
        self.i2c.readfrom_mem_into(self.addr, self._ID, self._reg)
        if not self._check(self._reg[0]):
            return False
        for reg, value in self._SETUP:
            self._reg[0] = value
            self.i2c.writeto_mem(self.addr, reg, self._reg)
        self._ready = True
        return True

    def powered(self):
        """Its rail came up: the chip is in standby with its power-on registers."""
        self._ready = False

    def read(self):
        samples = self._samples
        try:
            if not self._ready and not self._setup():
                return motion_failed(self.index)
            for i in range(0, 3 * self.window, 3):
                self.i2c.readfrom_mem_into(self.addr, self._DATA, self._raw)
                samples[i], samples[i + 1], samples[i + 2] = struct.unpack_from(
                    self._FORMAT, self._raw)
                time.sleep_ms(_SAMPLE_MS)
        except OSError:
            self._ready = False  # set up again once the sensor answers
            return motion_failed(self.index)
        return motion_readings(self.index, samples, self.window, self._MS2_PER_LSB)
