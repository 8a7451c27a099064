"""ADXL345 and MPU6050 models: gravity for the world's tilt plus a vibration, sampled at the chip's data rate.

Each sample gives raw counts of the gravity vector for tilt_x_deg and
tilt_y_deg, plus a vertical sine of RMS vibration_rms_ms2 (8 samples a
period, so any window of whole periods has exactly that RMS) and half an
LSB of noise, as a real sensor always shows. A new sample comes at each
tick of the output data rate the registers set; reading faster gives the
same sample again, and a chip left in standby/sleep (its power-on state)
never measures: its data registers read 0.
"""
import math
import struct

from firmware.sim import bus, hwclock
from firmware.sim.devices.noise import jitter

_G = 9.80665


class _Accel:
    DATA = 0
    FORMAT = "<hhh"
    LSB_PER_G = 256.0

    def __init__(self, name, ident, power_on):
        self.name = name
        self._ident = ident
        self._power_on = power_on
        self.power_up()

    def power_up(self):
        """The registers' power-on values (the chip in standby/sleep), as after its rail comes up."""
        self.regs = bytearray(128)
        self.regs[self._ident[0]] = self._ident[1]
        for reg, value in self._power_on:
            self.regs[reg] = value
        self.reg = 0
        self._k = -1  # the output data rate tick of the sample in the data registers
        self._data = bytes(6)

    def write(self, data):
        self.reg = data[0]
        for i in range(1, len(data)):
            self.regs[(self.reg + i - 1) & 0x7F] = data[i]

    def _counts(self, ms2):
        return max(-32768, min(32767, int(round(ms2 / _G * self.LSB_PER_G + jitter(0.5)))))

    def _sample(self, k):
        tx = math.radians(bus.world.get("tilt_x_deg", 0.0))
        ty = math.radians(bus.world.get("tilt_y_deg", 0.0))
        ax = _G * math.sin(tx)
        ay = _G * math.sin(ty)
        az = math.sqrt(max(_G * _G - ax * ax - ay * ay, 0.0))
        rms = bus.world.get("vibration_rms_ms2", 0.0)
        az += rms * math.sqrt(2) * math.sin(2 * math.pi * (k % 8) / 8)
        return struct.pack(self.FORMAT, self._counts(ax), self._counts(ay), self._counts(az))

    def read(self, n):
        if self.reg != self.DATA:
            return bytes(self.regs[self.reg:self.reg + n])
        if self.measuring():
            k = hwclock.now_us() * self.odr_hz() // 1000000
            if k != self._k:
                self._k = k
                self._data = self._sample(k)
        return self._data[:n]


class ADXL345(_Accel):
    """Analog Devices ADXL345 datasheet rev. G: BW_RATE (0x2C) power-on 0x0A, rate code c gives
    3200 / 2^(15 - c) Hz (Table 7); POWER_CTL (0x2D) power-on 0x00 is standby until Measure (bit 3).
    Turn-on time after power-up: 1.1 ms + 1/ODR, 11.1 ms at the power-on 100 Hz (Table 1, note 5)."""
    STARTUP_US = 11100
    DATA = 0x32
    FORMAT = "<hhh"
    LSB_PER_G = 1 / 0.0039  # full resolution

    def __init__(self, name):
        _Accel.__init__(self, name, (0x00, 0xE5), ((0x2C, 0x0A),))

    def odr_hz(self):
        return 3200 >> (15 - (self.regs[0x2C] & 0x0F))

    def measuring(self):
        return self.regs[0x2D] & 0x08


class MPU6050(_Accel):
    """InvenSense MPU-6000/6050 register map rev. 4.2: PWR_MGMT_1 (0x6B) powers on 0x40, asleep (4.28);
    sample rate = 8 kHz with the DLPF off (CONFIG 0x1A = 0 or 7) or 1 kHz on, / (1 + SMPLRT_DIV) (4.2).
    Product specification PS-MPU-6000A-00 rev. 3.4, 6.3: start-up time for register read/write 100 ms."""
    STARTUP_US = 100000
    DATA = 0x3B
    FORMAT = ">hhh"
    LSB_PER_G = 4096.0  # +-8 g

    def __init__(self, name):
        _Accel.__init__(self, name, (0x75, 0x68), ((0x6B, 0x40),))

    def odr_hz(self):
        dlpf = self.regs[0x1A] & 0x07
        return (8000 if dlpf in (0, 7) else 1000) // (1 + self.regs[0x19])

    def measuring(self):
        return not self.regs[0x6B] & 0x40
