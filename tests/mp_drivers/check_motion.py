"""Accelerometer (ADXL345, MPU6050) and HX711 drivers on the simulated board, under micropython: values within
resolution of bus.world, and a failed sensor flagged without an exception."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import check, dead_is_flagged, near, one, run, setup

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


run((
    (accel, ("accel_adxl345", 0.0039)),
    (accel, ("accel_mpu6050", 1 / 4096)),
    (hx711, ()),
))
