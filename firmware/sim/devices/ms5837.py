"""MS5837 model: PROM with a valid CRC-4 and D1/D2 conversions for the water above it, at the datasheet's pace.

The raw D1/D2 are found by bisection on the datasheet's compensation
(firmware.drivers.ms5837.compensate), so the model answers what a real
sensor at that pressure and temperature would. A conversion takes the
datasheet's maximum time for its oversampling ratio (MS5837-30BA and -02BA
datasheets, "ADC conversion time": 0.60 ms at OSR 256 up to 18.08 ms at
OSR 8192); an ADC read before it ends answers 0, as the datasheet says.
"""
from firmware.drivers.ms5837 import compensate, crc4
from firmware.sim import bus, energy, hwclock

_CONV_US = (600, 1170, 2280, 4540, 9040, 18080)  # OSR 256, 512, ... 8192 (command bits 3:1)

# Datasheet example coefficients C1..C6 (MS5837-30BA and -02BA).
_PROM = {30: [0, 34982, 36352, 20328, 22354, 26646, 26146],
         2: [0, 46372, 43981, 29059, 27842, 31553, 28165]}
_G = 9.80665


class MS5837:
    def __init__(self, name, bars=30, density=997.0, offset_m=0.0, air_mbar=1013.25):
        self.name = name
        self.bars = bars
        self.density = density
        self.offset_m = offset_m
        self.air_mbar = air_mbar
        self.prom = list(_PROM[bars])
        self.prom[0] = 0x00C0  # product/factory bits
        self.prom[0] |= crc4(self.prom) << 12
        self._d1 = 0
        self._d2 = 0
        self.power_up()

    def power_up(self):
        """TE MS5837 datasheet, "Reset sequence": the reset shall be sent once after power-on for
        the calibration PROM to be loaded into the internal register; until then it reads erased."""
        self._cmd = 0
        self._adc = 0
        self._done_us = 0
        self._loaded = False

    def _solve(self, target, d2, which):
        lo, hi = 0, (1 << 24) - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if which == 0:
                value = compensate(self.prom, 8000000, mid, self.bars)[1]
            else:
                value = compensate(self.prom, mid, d2, self.bars)[0]
            if value < target:
                lo = mid + 1
            else:
                hi = mid
        return lo

    def _physics(self):
        temp = bus.world.get("water_temp_c", 15.0)
        depth = bus.world.get("water_level_m", 0.0) - self.offset_m
        mbar = self.air_mbar + self.density * _G * max(depth, 0.0) / 100.0
        d2 = self._solve(temp, 0, 0)
        return self._solve(mbar, d2, 1), d2

    def write(self, data):
        cmd = data[0]
        self._cmd = cmd
        if cmd == 0x1E:
            self._adc = 0
            self._loaded = True
        elif cmd & 0xE0 == 0x40:
            self._adc = self._physics()[0 if cmd & 0xF0 == 0x40 else 1]
            conv = _CONV_US[min((cmd & 0x0E) >> 1, 5)]
            self._done_us = hwclock.now_us() + conv
            energy.charge(self.name, "converting", hwclock.now_us(), conv)

    def read(self, n):
        cmd = self._cmd
        if 0xA0 <= cmd <= 0xAE:
            word = self.prom[(cmd - 0xA0) // 2] if cmd < 0xAE else 0
            if not self._loaded:
                word = 0xFFFF
            return bytes(((word >> 8) & 0xFF, word & 0xFF))[:n]
        value = self._adc if hwclock.now_us() >= self._done_us else 0
        self._adc = 0  # the ADC result is read once
        return bytes(((value >> 16) & 0xFF, (value >> 8) & 0xFF, value & 0xFF))[:n]
