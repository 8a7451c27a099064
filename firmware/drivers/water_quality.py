"""Analog water-quality probes: pH, turbidity, conductivity and dissolved oxygen.

The probe's board gives a voltage; calibration points from the config map
volts to the quantity (piecewise linear through 2-3 points, or the default
curve moved through one point). Conductivity is brought to 25 degC with a
linear coefficient (2 %/degC for natural water); the DO probe's points give
percent saturation, turned into mg/L with the saturation at the water's
temperature (fresh water at sea level, USGS tables).
"""
from micropython import const

from firmware.drivers import Burst, analog_quality, curve, interp, scaled

# kind -> (channel code, exponent, default (volts, value) curve, factor to the channel's unit)
_KINDS = {
    "ph": (7, -2, ((1.5, 7.0), (2.0325, 4.0)), 1.0),
    "turbidity": (8, -1, ((3.0, 0.0), (1.2, 3000.0)), 1.0),
    "conductivity": (9, -4, ((0.0, 0.0), (2.0, 20000.0)), 1e-4),  # uS/cm -> S/m
    "dissolved_oxygen": (10, -5, ((0.0, 0.0), (1.6, 100.0)), 1e-3),  # mg/L -> kg/m3
}
# Oxygen saturation of fresh water, mg/L at 0, 5, ... 40 degC and 760 mmHg.
_DO_SAT = (14.62, 12.77, 11.29, 10.08, 9.09, 8.26, 7.56, 6.95, 6.41)
_DO_STEP_C = const(5)


def do_saturation(temp_c):
    """mg/L of oxygen in air-saturated fresh water at temp_c (linear between table rows)."""
    x = min(max(temp_c, 0.0), 40.0) / _DO_STEP_C
    i = min(int(x), len(_DO_SAT) - 2)
    return _DO_SAT[i] + (_DO_SAT[i + 1] - _DO_SAT[i]) * (x - i)


class WaterQuality:
    def __init__(self, adc, vref, index, kind, calibration=None, samples=8, noise_v=0.05, temp_c=25.0,
                 alpha=0.02, stuck_n=5):
        self.index = index
        self.kind = kind
        self.code, self._exp, default, self._unit = _KINDS[kind]
        self.CHANNELS = (self.code,)
        self.points = curve(calibration, default)
        self.temp_c = temp_c  # the firmware may update it from a DS18B20 in the same water
        self.alpha = alpha
        self._burst = Burst(adc, vref, samples, stuck_n)  # vref None: read_uv() (ESP32)
        self._noise_raw = noise_v / self._burst.volts_per_unit

    def value(self, volts):
        """The quantity in its usual unit (pH, NTU, uS/cm at 25 degC, mg/L) for the probe's volts."""
        x = interp(self.points, volts)
        if self.kind == "conductivity":
            return x / (1.0 + self.alpha * (self.temp_c - 25.0))
        if self.kind == "dissolved_oxygen":
            return x / 100.0 * do_saturation(self.temp_c)
        return x

    def read(self):
        volts = self._burst.take()
        quality = analog_quality(self._burst, self._noise_raw)
        value = self.value(volts) * self._unit
        return [(self.code, self.index, scaled(value, self._exp), quality)]
