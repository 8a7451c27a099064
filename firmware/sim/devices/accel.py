"""ADXL345 and MPU6050 models: gravity for the world's tilt plus a vibration.

Each data read gives raw counts of the gravity vector for tilt_x_deg and
tilt_y_deg, plus a vertical sine of RMS vibration_rms_ms2 (8 samples a
period, so any window of whole periods has exactly that RMS) and half an
LSB of noise, as a real sensor always shows.
"""
import math
import struct

from firmware.sim import bus
from firmware.sim.devices.noise import jitter

_G = 9.80665


class _Accel:
    DATA = 0
    FORMAT = "<hhh"
    LSB_PER_G = 256.0

    def __init__(self, name, ident):
        self.name = name
        self.regs = bytearray(128)
        self.regs[ident[0]] = ident[1]
        self.reg = 0
        self.phase = 0

    def write(self, data):
        self.reg = data[0]
        for i in range(1, len(data)):
            self.regs[(self.reg + i - 1) & 0x7F] = data[i]

    def _counts(self, ms2):
        return max(-32768, min(32767, int(round(ms2 / _G * self.LSB_PER_G + jitter(0.5)))))

    def read(self, n):
        if self.reg != self.DATA:
            return bytes(self.regs[self.reg:self.reg + n])
        tx = math.radians(bus.world.get("tilt_x_deg", 0.0))
        ty = math.radians(bus.world.get("tilt_y_deg", 0.0))
        ax = _G * math.sin(tx)
        ay = _G * math.sin(ty)
        az = math.sqrt(max(_G * _G - ax * ax - ay * ay, 0.0))
        rms = bus.world.get("vibration_rms_ms2", 0.0)
        self.phase = (self.phase + 1) % 8
        az += rms * math.sqrt(2) * math.sin(2 * math.pi * self.phase / 8)
        return struct.pack(self.FORMAT, self._counts(ax), self._counts(ay), self._counts(az))[:n]


class ADXL345(_Accel):
    DATA = 0x32
    FORMAT = "<hhh"
    LSB_PER_G = 1 / 0.0039  # full resolution

    def __init__(self, name):
        _Accel.__init__(self, name, (0x00, 0xE5))


class MPU6050(_Accel):
    DATA = 0x3B
    FORMAT = ">hhh"
    LSB_PER_G = 4096.0  # +-8 g

    def __init__(self, name):
        _Accel.__init__(self, name, (0x75, 0x68))
