"""Pressure water level from an MS5837 (02BA or 30BA) on I2C.

The PROM's six coefficients are read once and checked with the CRC-4 in the
top of word 0 (TE AN520); each reading converts D1 (pressure) and D2
(temperature) at OSR 8192 and applies the datasheet's first- and
second-order compensation. Level = (P - air pressure) / (rho g) + offset.
"""
import struct
import time
from micropython import const

from firmware.drivers import Q_NO_RETURN, Q_OK, scaled

_WATER_LEVEL = const(4)  # protocol/channels.py "water_level", m, exponent -3
_CMD_RESET = const(0x1E)
_CMD_ADC_READ = const(0x00)
_CMD_PROM = const(0xA0)  # + 2 * word index
_CMD_D1_8192 = const(0x4A)
_CMD_D2_8192 = const(0x5A)
_CONVERT_MS = const(20)  # OSR 8192 converts in 18.08 ms at most (datasheet)
_RESET_MS = const(10)
_G = 9.80665


def crc4(words):
    """AN520 CRC-4 over the PROM's 8 words, word 0's top nibble and word 7 taken as zero."""
    rem = 0
    for i in range(16):
        word = words[i >> 1] if i >> 1 < 7 else 0
        if i == 0:
            word &= 0x0FFF
        rem ^= (word & 0xFF) if i & 1 else (word >> 8)
        for _ in range(8):
            rem = ((rem << 1) ^ 0x3000) if rem & 0x8000 else (rem << 1)
            rem &= 0xFFFF
    return (rem >> 12) & 0xF


def compensate(c, d1, d2, bars=30, second=True):
    """(pressure mbar, temperature degC) from PROM words c[0..6] and raw D1, D2 (datasheet)."""
    dt = d2 - c[5] * 256
    temp = 2000 + dt * c[6] // 8388608
    if bars == 30:
        off = c[2] * 65536 + (c[4] * dt) // 128
        sens = c[1] * 32768 + (c[3] * dt) // 256
    else:
        off = c[2] * 131072 + (c[4] * dt) // 64
        sens = c[1] * 65536 + (c[3] * dt) // 128
    if second:
        t2 = temp - 2000
        if bars == 30:
            if temp < 2000:
                ti = 3 * dt * dt // 8589934592
                offi = 3 * t2 * t2 // 2
                sensi = 5 * t2 * t2 // 8
                if temp < -1500:
                    offi += 7 * (temp + 1500) ** 2
                    sensi += 4 * (temp + 1500) ** 2
            else:
                ti = 2 * dt * dt // 137438953472
                offi = t2 * t2 // 16
                sensi = 0
        elif temp < 2000:
            ti = 11 * dt * dt // 34359738368
            offi = 31 * t2 * t2 // 8
            sensi = 63 * t2 * t2 // 32
        else:
            ti = offi = sensi = 0
        temp -= ti
        off -= offi
        sens -= sensi
    if bars == 30:
        return ((d1 * sens // 2097152 - off) // 8192) / 10.0, temp / 100.0
    return ((d1 * sens // 2097152 - off) // 32768) / 100.0, temp / 100.0


class MS5837:
    CHANNELS = (_WATER_LEVEL,)

    def __init__(self, i2c, index, addr=0x76, bars=30, density=997.0, air_mbar=1013.25, offset_m=0.0):
        self.i2c = i2c
        self.index = index
        self.addr = addr
        self.bars = bars
        self.density = density
        self.air_mbar = air_mbar  # the firmware may update it from a barometer
        self.offset_m = offset_m
        self.prom = [0] * 7
        self._word = bytearray(2)
        self._adc = bytearray(3)
        self._cmd = bytearray(1)
        self._ready = False
        self.temperature_c = None

    def _command(self, cmd):
        self._cmd[0] = cmd
        self.i2c.writeto(self.addr, self._cmd)

    def _load_prom(self):
        """Reset and read the PROM; True when its CRC holds. Bus errors propagate (OSError)."""
        self._command(_CMD_RESET)
        time.sleep_ms(_RESET_MS)
        for i in range(7):
            self.i2c.readfrom_mem_into(self.addr, _CMD_PROM + 2 * i, self._word)
            self.prom[i] = struct.unpack_from(">H", self._word)[0]
        self._ready = crc4(self.prom) == self.prom[0] >> 12
        return self._ready

    def powered(self):
        """Its rail came up: the datasheet's reset must load the PROM again before a read."""
        self._ready = False

    def _convert(self, cmd):
        self._command(cmd)
        time.sleep_ms(_CONVERT_MS)
        self.i2c.readfrom_mem_into(self.addr, _CMD_ADC_READ, self._adc)
        high, low = struct.unpack_from(">BH", self._adc)
        return high << 16 | low

    def read(self):
        try:
            if not self._ready and not self._load_prom():
                return [(_WATER_LEVEL, self.index, 0, Q_NO_RETURN)]
            d1 = self._convert(_CMD_D1_8192)
            d2 = self._convert(_CMD_D2_8192)
        except OSError:
            self._ready = False  # a sensor that went away is reset and re-checked next time
            return [(_WATER_LEVEL, self.index, 0, Q_NO_RETURN)]
        if d1 == 0 or d2 == 0:
            # A read before the conversion ended (or after a reset) gives 0.
            return [(_WATER_LEVEL, self.index, 0, Q_NO_RETURN)]
        mbar, self.temperature_c = compensate(self.prom, d1, d2, self.bars)
        level = (mbar - self.air_mbar) * 100.0 / (self.density * _G) + self.offset_m
        return [(_WATER_LEVEL, self.index, scaled(level, -3), Q_OK)]
