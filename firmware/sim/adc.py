"""The simulated ADC: volts from the source wired at the pin (firmware/sim/bus.py), read as each port reads them.

RP2040/RP2350 (ports/rp2/machine_adc.c, v1.22-v1.28): a linear 12-bit SAR
against the 3.3 V rail; read_u16() only, no read_uv().

ESP32 (ports/esp32/machine_adc.c, v1.22-v1.28): read_u16() is the raw 12-bit
code scaled to 16 bits (`raw << 4 | raw >> 8`), with no calibration at all;
read_uv() runs the code through esp-idf's calibration (ports/esp32/adc.c,
adc_cali_raw_to_voltage). The raw code is not the voltage: the chip has an
offset (nothing below ~0.14 V at 11 dB), a gain that follows its own
reference (1000-1200 mV from chip to chip, burnt into eFuse), and above raw
2880 (about 2.45 V) a steeper curve that clips at raw 4095 near 3.1 V. The
model (firmware/sim/adc_esp32.py, loaded for ESP32 boards only) is esp-idf's own characterisation of the chip
(components/esp_adc/esp32/adc_cali_line_fitting.c, esp-idf v5.x): a line
`offset + raw * vref * scale / 4096 / 65536` mV, and at 11 dB above raw 2880
the 20-point table interpolated between the 1000 and 1200 mV tables. The
volts give the raw code through the inverse of that curve; read_uv() gives
the curve's value of the code (the eFuse reference is the chip's own). The
chip's reference is bus.world["esp32_adc_vref_mv"] (1100 mV, nominal).

ESP32-S3 (same MicroPython files; esp-idf curve fitting): modelled as a
linear code over 0-3.1 V at 11 dB that clips above (the S3 datasheet's
range at that attenuation); read_uv() gives the volts to the code's step.
"""
from firmware.sim import bus
from firmware.sim.io import Pin

class ADC:
    """An ADC channel of the chip of the board that firmware/sim/devices wired."""

    VREF = 3.3
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12

    def __init__(self, pin, atten=None):
        from firmware.sim.devices import chip
        self.id = pin.id if isinstance(pin, Pin) else pin
        self._chip = chip[0]
        self._atten = 0  # esp32: ATTN_0DB unless asked (ports/esp32/machine_adc.c)
        self._bits = 12
        if atten is not None:
            self.atten(atten)

    def atten(self, atten):
        if self._chip == "rp2":
            raise AttributeError("'ADC' object has no attribute 'atten'")
        self._atten = atten

    def width(self, bits):
        self._bits = bits

    def _volts(self):
        source = bus.adc_source(self.id)
        if source is None:
            return 0.0
        return source()

    def _raw12(self):
        if self._chip != "rp2":
            from firmware.sim.adc_esp32 import raw
            return raw(self._chip, self._volts(), self._atten)
        return min(max(int(self._volts() / ADC.VREF * 4095 + 0.5), 0), 4095)

    def read_u16(self):
        raw = self._raw12()
        return raw << 4 | raw >> 8  # the ports' scaling of a 12-bit code to 16 bits

    def read(self):
        return self._raw12() >> (12 - self._bits)

    def read_uv(self):
        if self._chip == "rp2":
            raise AttributeError("'ADC' object has no attribute 'read_uv'")  # rp2 has no read_uv
        from firmware.sim.adc_esp32 import uv
        return uv(self._chip, self._raw12(), self._atten)
