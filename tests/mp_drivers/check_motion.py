"""Accelerometer (ADXL345, MPU6050) and HX711 drivers on the simulated board, under micropython: values within
resolution of bus.world, and a failed sensor flagged without an exception; the HX711 at its data rate
(the accelerometers' is in check_rates.py)."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import check, dead_is_flagged, near, one, run, setup
from timing import read_takes_the_datasheet_time_and_fits_its_budget

from firmware.drivers import Q_OK
from firmware.sim import bus


def accel(kind, lsb_g):
    cfg = {"type": kind, "name": "acc", "interval_s": 60, "window": 32}
    sensor, model = setup(cfg, {"tilt_x_deg": 3.5, "tilt_y_deg": -12.0, "vibration_rms_ms2": 0.8})
    readings = sensor.read()
    got = dict((r[0], r) for r in readings)
    check(all(r[3] == Q_OK for r in readings), "%s ok %r" % (kind, readings))
    near(got[12][2], 350, 10, kind + " tilt x")
    near(got[13][2], -1200, 10, kind + " tilt y")
    near(got[16][2], 800, 40 + 2000 * lsb_g, kind + " vibration rms")
    near(got[17][2], 1131, 60 + 3000 * lsb_g, kind + " vibration peak")
    dead_is_flagged(sensor, "acc")
    check(sensor.read()[0][3] == Q_OK, kind + " set up again after the fault")


def hx711():
    cfg = {"type": "hx711", "name": "cell", "interval_s": 60, "tare": 81234, "scale": 21500.0}
    sensor, model = setup(cfg, {"load_kg": 12.34})
    code, index, value, q = one(sensor)
    check(code == 22 and q == Q_OK, "hx711 ok")
    near(value, 1234, 1, "hx711 load cg... 0.01 kg")
    bus.world["load_kg"] = -3.0
    near(one(sensor)[2], -300, 1, "hx711 negative load")
    dead_is_flagged(sensor, "cell")


HX711 = {"type": "hx711", "name": "t", "interval_s": 60, "scale": 2000.0, "samples": 4}


def hx711_not_ready_before_settling_nor_between_conversions():
    sensor, model = setup(HX711, {"load_kg": 1.0})
    check(sensor.driver.dt.value() == 1, "HX711 DOUT high before its output settles (400 ms at 10 SPS)")
    check(one(sensor)[3] == Q_OK, "then ready")
    check(sensor.driver.dt.value() == 1, "and not ready again until the next conversion")


run((
    (accel, ("accel_adxl345", 0.0039)),
    (accel, ("accel_mpu6050", 1 / 4096)),
    (hx711, ()),
    # HX711 at 10 SPS: 4 periods of settling after power-up, the first sample, 3 more 100 ms apart
    (read_takes_the_datasheet_time_and_fits_its_budget, (HX711, {"load_kg": 1.0}, 700)),
    (read_takes_the_datasheet_time_and_fits_its_budget, (dict(HX711, sps=80), {"load_kg": 1.0}, 87.5)),
    (hx711_not_ready_before_settling_nor_between_conversions, ()),
))
