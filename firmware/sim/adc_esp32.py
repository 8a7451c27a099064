"""The ESP32 and ESP32-S3 ADC (see adc.py): esp-idf's characterisation of the chip, code to mV and back.

Loaded for those boards only: an RP2040's ADC is a line (adc.py).
"""
from firmware.sim import bus

_S3_FULL_MV = 3100.0  # ESP32-S3 datasheet: 0-3100 mV at 11/12 dB

# esp-idf adc_cali_line_fitting.c (ESP32, ADC1): line per attenuation, Vref-scaled.
_SCALE = (57431, 76236, 105481, 196602)
_OFFSET_MV = (75, 78, 107, 142)
# Same file: mV at raw 2880, 2944, ... 4096 for an eFuse Vref of 1000 and 1200 mV (11 dB only).
_LUT_FROM = 2880
_LUT_STEP = 64
_LUT_1000 = (2240, 2297, 2352, 2405, 2457, 2512, 2564, 2616, 2664, 2709,
             2754, 2795, 2832, 2868, 2903, 2937, 2969, 3000, 3030, 3060)
_LUT_1200 = (2667, 2706, 2745, 2780, 2813, 2844, 2873, 2901, 2928, 2956,
             2982, 3006, 3032, 3059, 3084, 3110, 3135, 3160, 3184, 3209)


def esp32_mv(raw, atten, vref_mv):
    """The millivolts esp-idf's calibration gives for a raw 12-bit code: the chip's curve."""
    line = _OFFSET_MV[atten] + raw * vref_mv * _SCALE[atten] / 4096.0 / 65536.0
    if atten != 3 or raw < _LUT_FROM:
        return line
    x = (raw - _LUT_FROM) / _LUT_STEP
    i = min(int(x), len(_LUT_1000) - 2)
    f = x - i
    w = (vref_mv - 1000) / 200.0
    lo = _LUT_1000[i] + (_LUT_1000[i + 1] - _LUT_1000[i]) * f
    hi = _LUT_1200[i] + (_LUT_1200[i + 1] - _LUT_1200[i]) * f
    return lo + (hi - lo) * w


def esp32_raw(mv, atten, vref_mv):
    """The raw code the chip gives for `mv` at its pin: the curve inverted (it only rises), 0..4095."""
    lo, hi = 0, 4095
    if mv < esp32_mv(0, atten, vref_mv):
        return 0
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if esp32_mv(mid, atten, vref_mv) <= mv:
            lo = mid
        else:
            hi = mid - 1
    return lo


def _vref_mv():
    return bus.world.get("esp32_adc_vref_mv", 1100)  # the chip's own, in its eFuse


def raw(chip, volts, atten):
    """The 12-bit code the chip gives for `volts` at its pin."""
    if chip == "esp32":
        return esp32_raw(volts * 1000.0, atten, _vref_mv())
    return min(max(int(volts * 1000.0 / _S3_FULL_MV * 4095 + 0.5), 0), 4095)


def uv(chip, code, atten):
    """What read_uv() returns for a code: the calibration, which knows the chip's reference."""
    mv = esp32_mv(code, atten, _vref_mv()) if chip == "esp32" else code * _S3_FULL_MV / 4095
    return int(mv * 1000 + 0.5)
