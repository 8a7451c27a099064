"""Capacitive soil moisture: volts mapped linearly between dry and wet calibration.

A capacitive probe's output falls as the soil gets wetter; dry_v and wet_v
are measured in air-dry and saturated soil. A reading more than 5 % past
either end is flagged out of range (probe out of the soil, or shorted).
"""
from micropython import const

from firmware.drivers import Burst, Q_OK, Q_OUT_OF_RANGE, analog_quality, scaled

_SOIL_MOISTURE = const(11)  # protocol/channels.py "soil_moisture", %, exponent -1
_MARGIN_PCT = const(5)


class SoilMoisture:
    CHANNELS = (_SOIL_MOISTURE,)

    def __init__(self, adc, vref, index, dry_v, wet_v, samples=8, noise_v=0.05, stuck_n=5):
        self.index = index
        self.dry_v = dry_v
        self.wet_v = wet_v
        self._burst = Burst(adc, vref, samples, stuck_n)  # vref None: read_uv() (ESP32)
        self._noise_raw = noise_v / self._burst.volts_per_unit

    def read(self):
        volts = self._burst.take()
        pct = (volts - self.dry_v) / (self.wet_v - self.dry_v) * 100.0
        quality = analog_quality(self._burst, self._noise_raw)
        if quality == Q_OK and not -_MARGIN_PCT <= pct <= 100 + _MARGIN_PCT:
            quality = Q_OUT_OF_RANGE
        return [(_SOIL_MOISTURE, self.index, scaled(min(max(pct, 0.0), 100.0), -1), quality)]
