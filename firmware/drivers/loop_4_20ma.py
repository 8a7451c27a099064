"""Pressure water level from a 4-20 mA transmitter, read as volts across a shunt.

4 mA is the bottom of the range and 20 mA the top; under 3.5 mA the loop is
broken (cable cut, transmitter dead) and the reading is a no-return; over
20.5 mA the transmitter signals saturation or a fault (NAMUR NE 43).
"""
from micropython import const

from firmware.drivers import Burst, Q_NO_RETURN, Q_OUT_OF_RANGE, analog_quality, scaled

_WATER_LEVEL = const(4)  # protocol/channels.py "water_level", m, exponent -3
_BROKEN_MA = 3.5  # NAMUR NE 43: below 3.6 mA is a failure; a little margin for the shunt's tolerance
_HIGH_MA = 20.5  # NAMUR NE 43: above 20.5 mA is saturation or a failure


class Loop420:
    CHANNELS = (_WATER_LEVEL,)

    def __init__(self, adc, vref, index, range_m, shunt_ohm=150.0, offset_m=0.0, samples=8, noise_v=0.05, stuck_n=5):
        self.index = index
        self.range_m = range_m
        self.offset_m = offset_m
        self._burst = Burst(adc, vref, samples, stuck_n)  # vref None: read_uv() (ESP32)
        self._ma_per_v = 1000.0 / shunt_ohm
        self._noise_raw = noise_v / self._burst.volts_per_unit

    def milliamps(self):
        return self._burst.take() * self._ma_per_v

    def read(self):
        ma = self.milliamps()
        if ma < _BROKEN_MA:
            return [(_WATER_LEVEL, self.index, 0, Q_NO_RETURN)]
        level = self.offset_m + (ma - 4.0) / 16.0 * self.range_m
        quality = Q_OUT_OF_RANGE if ma > _HIGH_MA else analog_quality(self._burst, self._noise_raw)
        return [(_WATER_LEVEL, self.index, scaled(level, -3), quality)]
