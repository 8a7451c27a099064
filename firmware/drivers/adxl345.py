"""ADXL345 accelerometer on I2C: tilt from gravity and vibration over a window.

Full resolution at +-16 g keeps 3.9 mg/LSB on every range (datasheet
Table 1); the window's samples are read at the 100 Hz output rate into a
buffer made once.
"""
import array
import struct
import time
from micropython import const

from firmware.drivers import MOTION_CHANNELS, motion_failed, motion_readings

_DEVID = const(0x00)  # reads 0xE5
_DEVID_VALUE = const(0xE5)
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_DATA_FORMAT = const(0x31)
_DATAX0 = const(0x32)  # 6 bytes: x, y, z little-endian int16
_RATE_100HZ = const(0x0A)
_MEASURE = const(0x08)
_FULL_RES_16G = const(0x0B)
_SAMPLE_MS = const(10)  # one sample per 100 Hz output
_MS2_PER_LSB = 0.0039 * 9.80665


class ADXL345:
    CHANNELS = MOTION_CHANNELS

    def __init__(self, i2c, index, addr=0x53, window=32):
        self.i2c = i2c
        self.index = index
        self.addr = addr
        self.window = window
        self._samples = array.array("h", bytes(6 * window))
        self._raw = bytearray(6)
        self._reg = bytearray(1)
        self._ready = False

    def _setup(self):
        self.i2c.readfrom_mem_into(self.addr, _DEVID, self._reg)
        if self._reg[0] != _DEVID_VALUE:
            return False
        for reg, value in ((_DATA_FORMAT, _FULL_RES_16G), (_BW_RATE, _RATE_100HZ), (_POWER_CTL, _MEASURE)):
            self._reg[0] = value
            self.i2c.writeto_mem(self.addr, reg, self._reg)
        self._ready = True
        return True

    def read(self):
        samples = self._samples
        try:
            if not self._ready and not self._setup():
                return motion_failed(self.index)
            for i in range(0, 3 * self.window, 3):
                self.i2c.readfrom_mem_into(self.addr, _DATAX0, self._raw)
                samples[i], samples[i + 1], samples[i + 2] = struct.unpack_from("<hhh", self._raw)
                time.sleep_ms(_SAMPLE_MS)
        except OSError:
            self._ready = False  # set up again once the sensor answers
            return motion_failed(self.index)
        return motion_readings(self.index, samples, self.window, _MS2_PER_LSB)
