"""The longest one read of each sensor type takes: the sensors' part of the watchdog budget.

firmware/config.py adds these up at boot to prove that one loop fits the
watchdog's timeout. They are the datasheet times the drivers wait out
(firmware/drivers), which the simulated board charges to its clock
(firmware/sim/devices); tests/mp_drivers/check_timing.py measures every
driver's read, live and dead, against them. A module of its own so that a
driver check can hold it without the whole config checker.
"""

# The longest one read of each sensor type may take, for the watchdog budget: the datasheet
# times the drivers wait out (firmware/drivers, the same times charged by firmware/sim/devices).
# type -> (fixed ms, ms per unit of `per`, the entry's key for the units, its default)
_READ_MS = {
    # DS18B20 datasheet tCONV 750 ms at 12 bits: the driver polls up to 800 ms, and converts
    # again once when it reads the 85.0 degC power-on value.
    "ds18b20": (1600, 0, None, 0),
    # HX711 datasheet: a conversion each 100 ms at 10 SPS (12.5 at 80), and the output settles
    # in 4 periods after power-up: up to 4 + `samples` periods.
    "hx711": (0, 0, "samples", 4),
    # JSN-SR04T: each ping waits its echo up to 40 ms (6.8 m round trip) and the datasheet's
    # 50 ms measuring cycle (the driver's gap: 60 ms).
    "ultrasonic_level": (0, 100, "pings", 5),
    # MS5837 datasheet: reset 2.8 ms (the driver waits 10), D1 and D2 at OSR 8192 18.08 ms each (20).
    "pressure_level_i2c": (50, 0, None, 0),
    # ADXL345 / MPU6050 at 100 Hz output data rate: one sample each 10 ms over the window.
    "accel_adxl345": (0, 10, "window", 32),
    "accel_mpu6050": (0, 10, "window", 32),
}
# Any read's bus transfers and interpreter work on top (a bit-banged HX711 read is 75 pin
# calls a sample); an ADC burst converts in microseconds (RP2040 datasheet 4.9.2: 2 us a
# sample; ESP32 ADC1 oneshot about 50 us) and its probes stay powered: nothing to settle.
READ_OVERHEAD_MS = 50


def read_ms(entry):
    """The longest one read of this sensor entry may take (ms), from _READ_MS."""
    kind = entry.get("type")
    fixed, each, key, default = _READ_MS.get(kind, (0, 0, None, 0))
    units = entry.get(key, default) if key else 0
    if not isinstance(units, (int, float)) or isinstance(units, bool):
        units = default
    if kind == "hx711":
        sps = entry.get("sps", 10)
        period = 1000 / sps if sps in (10, 80) else 100
        return int((4 + units) * period) + READ_OVERHEAD_MS
    return int(fixed + each * units) + READ_OVERHEAD_MS
