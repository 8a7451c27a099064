"""MPU6050-class accelerometer on I2C: tilt from gravity and vibration over a window.

The chip wakes in sleep mode (PWR_MGMT_1 bit 6), so it is woken on setup;
+-8 g gives 4096 LSB/g (register map 4.17), enough headroom for a bridge deck.
"""
from micropython import const

from firmware.drivers.accel import Accelerometer

_WHO_AM_I = const(0x75)  # reads the address 0x68 (register map 4.32)
_PWR_MGMT_1 = const(0x6B)
_SMPLRT_DIV = const(0x19)
_CONFIG = const(0x1A)
_ACCEL_CONFIG = const(0x1C)
_ACCEL_XOUT_H = const(0x3B)  # 6 bytes: x, y, z big-endian int16
_WAKE = const(0x00)
_RANGE_8G = const(0x10)
_DLPF_44HZ = const(0x03)
_DIV_100HZ = const(9)  # 1 kHz with the DLPF on / (1 + 9)


class MPU6050(Accelerometer):
    _ID = _WHO_AM_I
    _SETUP = ((_PWR_MGMT_1, _WAKE), (_CONFIG, _DLPF_44HZ), (_SMPLRT_DIV, _DIV_100HZ),
              (_ACCEL_CONFIG, _RANGE_8G))
    _DATA = _ACCEL_XOUT_H
    _FORMAT = ">hhh"
    _MS2_PER_LSB = 9.80665 / 4096

    def __init__(self, i2c, index, addr=0x68, window=32):
        Accelerometer.__init__(self, i2c, index, addr, window)

    def _check(self, who):
        return who & 0x7E == 0x68  # bits 6:1 hold the address; 0 and 7 are reserved
