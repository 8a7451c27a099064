"""Battery voltage through a resistor divider on an ADC pin.

The mean of a burst of samples, times the divider ratio. An input at 0 or
full scale means a broken divider or a shorted pin, and is flagged.
"""
from micropython import const

from firmware.drivers import Burst, analog_quality, scaled

_BATTERY = const(19)  # protocol/channels.py "battery", V, exponent -3


class Battery:
    CHANNELS = (_BATTERY,)

    def __init__(self, adc, vref=3.3, index=0, ratio=2.0, samples=8, noise_v=0.1, stuck_n=5):
        # noise_v: the widest spread of a burst at the pin before it is flagged noisy
        self.index = index
        # vref None: the port's calibrated read_uv() (ESP32), see firmware/drivers Burst.
        self._burst = Burst(adc, vref, samples, stuck_n)
        self._ratio = ratio
        self._noise_raw = noise_v / self._burst.volts_per_unit

    def volts(self):
        """The battery's volts from a new burst; the burst keeps the checks' results."""
        return self._burst.take() * self._ratio

    def read(self):
        volts = self.volts()
        quality = analog_quality(self._burst, self._noise_raw)
        return [(_BATTERY, self.index, scaled(volts, -3), quality)]
