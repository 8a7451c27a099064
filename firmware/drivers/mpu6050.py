"""MPU6050-class accelerometer on I2C: tilt from gravity and vibration over a window.

The chip wakes in sleep mode (PWR_MGMT_1 bit 6), so it is woken on setup;
+-8 g gives 4096 LSB/g (register map 4.17), enough headroom for a bridge deck.
"""
import array
import struct
import time
from micropython import const

from firmware.drivers import MOTION_CHANNELS, motion_failed, motion_readings

_WHO_AM_I = const(0x75)  # reads the address 0x68 (register map 4.32)
_WHO_AM_I_VALUE = const(0x68)
_PWR_MGMT_1 = const(0x6B)
_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_ACCEL_CONFIG = const(0x1C)
_ACCEL_XOUT_H = const(0x3B)  # 6 bytes: x, y, z big-endian int16
_WAKE = const(0x00)
_RANGE_8G = const(0x10)
_DLPF_44HZ = const(0x03)
_DIV_100HZ = const(9)  # 1 kHz with the DLPF on / (1 + 9)
_SAMPLE_MS = const(10)
_MS2_PER_LSB = 9.80665 / 4096


class MPU6050:
    CHANNELS = MOTION_CHANNELS

    def __init__(self, i2c, index, addr=0x68, window=32):
        self.i2c = i2c
        self.index = index
        self.addr = addr
        self.window = window
        self._samples = array.array("h", bytes(6 * window))
        self._raw = bytearray(6)
        self._reg = bytearray(1)
        self._ready = False

    def _setup(self):
        self.i2c.readfrom_mem_into(self.addr, _WHO_AM_I, self._reg)
        if self._reg[0] & 0x7E != _WHO_AM_I_VALUE:
            return False
        for reg, value in ((_PWR_MGMT_1, _WAKE), (_CONFIG, _DLPF_44HZ), (_SMPLRT_DIV, _DIV_100HZ),
                           (_ACCEL_CONFIG, _RANGE_8G)):
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
                self.i2c.readfrom_mem_into(self.addr, _ACCEL_XOUT_H, self._raw)
                samples[i], samples[i + 1], samples[i + 2] = struct.unpack_from(">hhh", self._raw)
                time.sleep_ms(_SAMPLE_MS)
        except OSError:
            self._ready = False  # set up again once the sensor answers
            return motion_failed(self.index)
        return motion_readings(self.index, samples, self.window, _MS2_PER_LSB)
