"""The simulated ADC: volts from the source wired at the pin (firmware/sim/bus.py)."""
from firmware.sim import bus
from firmware.sim.io import Pin


class ADC:
    """An ADC channel; the volts come from the source wired at the pin.

    Without attenuation the full scale is `ADC.VREF` (3.3 V, an RP2040's);
    an ESP32-style atten() sets the full scale its datasheet gives.
    """

    VREF = 3.3
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12
    _FULL = (1.0, 1.34, 2.0, 3.6)  # volts at full scale per attenuation (MicroPython esp32 docs)

    def __init__(self, pin, atten=None):
        self.id = pin.id if isinstance(pin, Pin) else pin
        self._full = ADC.VREF
        self._bits = 12
        if atten is not None:
            self.atten(atten)

    def atten(self, atten):
        self._full = ADC._FULL[atten]

    def width(self, bits):
        self._bits = bits

    def _volts(self):
        source = bus.adc_source(self.id)
        if source is None:
            return 0.0
        return source()

    def read_u16(self):
        volts = self._volts()
        if volts <= 0:
            return 0
        if volts >= self._full:
            return 65535
        return int(volts / self._full * 65535 + 0.5)

    def read(self):
        return self.read_u16() >> (16 - self._bits)

    def read_uv(self):
        volts = min(max(self._volts(), 0.0), self._full)
        return int(volts * 1000000 + 0.5)
