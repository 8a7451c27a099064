"""ADXL345 accelerometer on I2C: tilt from gravity and vibration over a window.

Full resolution at +-16 g keeps 3.9 mg/LSB on every range (datasheet
Table 1); the window's samples are read at the 100 Hz output rate.
"""
from micropython import const

from firmware.drivers.accel import Accelerometer

_DEVID = const(0x00)  # reads 0xE5
_BW_RATE = const(0x2C)
_POWER_CTL = const(0x2D)
_DATA_FORMAT = const(0x31)
_DATAX0 = const(0x32)  # 6 bytes: x, y, z little-endian int16
_RATE_100HZ = const(0x0A)
_MEASURE = const(0x08)
_FULL_RES_16G = const(0x0B)


class ADXL345(Accelerometer):
    _ID = _DEVID
    _SETUP = ((_DATA_FORMAT, _FULL_RES_16G), (_BW_RATE, _RATE_100HZ), (_POWER_CTL, _MEASURE))
    _DATA = _DATAX0
    _FORMAT = "<hhh"
    _MS2_PER_LSB = 0.0039 * 9.80665

    def __init__(self, i2c, index, addr=0x53, window=32):
        Accelerometer.__init__(self, i2c, index, addr, window)

    def _check(self, devid):
        return devid == 0xE5
