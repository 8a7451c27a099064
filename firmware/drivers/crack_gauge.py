"""Crack gauge: a linear potentiometer (potentiometric displacement transducer) across a crack.

The body is fixed on one side of the crack and the plunger on the other;
the wiper voltage moves with the width. The track is powered from the ADC's
own reference, so the reading is ratiometric: a sagging supply moves the
wiper and the full scale together and cancels out. Volts map to millimetres
through calibration points [volts, mm] (from gauge blocks, or the datasheet's
two ends of the travel); `zero_mm`, the reading recorded at installation, is
subtracted so that 0 is the crack as it was found and a positive value is an
opening. The median of the burst is used, not the mean: a wiper lifting off
a dirty track for a moment gives a sample at a rail, which the mean would
carry into the value.

Flags: a sample at a rail (wiper open, broken lead: the input floats to a
rail through its pull resistor) or a position outside the calibrated travel
is out of range; identical bursts are stuck; a wide burst is noisy (a worn
track, interference on a long cable).
"""
from micropython import const

from firmware.drivers import Burst, Q_OK, Q_OUT_OF_RANGE, analog_quality, curve, interp, scaled

_CRACK_WIDTH = const(14)  # protocol/channels.py "crack_width", m, exponent -5 (0.01 mm)
_M_PER_MM = 0.001
_MARGIN = 0.02  # of the travel: past the calibrated ends by more is out of range
_TRACK_V = 3.3  # the track across the board's 3V3 rail, which is also an RP2040's ADC reference


class CrackGauge:
    CHANNELS = (_CRACK_WIDTH,)

    def __init__(self, adc, vref, index, travel_mm=25.0, calibration=None, zero_mm=0.0, samples=9,
                 noise_v=0.03, stuck_n=5):
        self.index = index
        self.zero_mm = zero_mm
        # Without points: the track's ends (0 V and 3V3) are the travel's ends; an ESP32 reads
        # true volts through read_uv(), but nothing below 0.15 V or above ~3.05 V (flagged).
        self.points = curve(calibration, ((0.0, 0.0), (_TRACK_V, travel_mm)))
        lo = self.points[0][1]
        hi = self.points[-1][1]
        if lo > hi:
            lo, hi = hi, lo
        margin = (hi - lo) * _MARGIN
        self._lo_mm = lo - margin
        self._hi_mm = hi + margin
        self._burst = Burst(adc, vref, samples, stuck_n)  # vref None: read_uv() (ESP32)
        self._noise_raw = noise_v / self._burst.volts_per_unit

    def position_mm(self):
        """The plunger's position (mm, on the calibration's scale) from a new burst's median."""
        burst = self._burst
        burst.take()
        samples = burst.samples
        samples.sort()  # in place: the burst refills the list at its next take()
        n = len(samples)
        if n % 2:
            raw = samples[n // 2]
        else:
            raw = (samples[n // 2 - 1] + samples[n // 2]) / 2
        return interp(self.points, raw * burst.volts_per_unit)

    def read(self):
        mm = self.position_mm()
        quality = analog_quality(self._burst, self._noise_raw)
        if quality == Q_OK and not self._lo_mm <= mm <= self._hi_mm:
            quality = Q_OUT_OF_RANGE
        return [(_CRACK_WIDTH, self.index, scaled((mm - self.zero_mm) * _M_PER_MM, -5), quality)]
