"""Water level drivers (JSN-SR04T, 4-20 mA, MS5837) on the simulated board, under micropython: values within
resolution of bus.world, and a failed sensor flagged without an exception."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import check, dead_is_flagged, near, one, run, setup

from firmware.drivers import Q_NO_RETURN, Q_OK, Q_OUT_OF_RANGE
from firmware.sim import bus


def ultrasonic():
    cfg = {"type": "ultrasonic_level", "name": "sonar", "interval_s": 60, "mount_height_m": 5.0,
           "pings": 3, "air_temp_c": 30.0}
    sensor, model = setup(cfg, {"water_level_m": 2.345, "air_temp_c": 30.0})
    code, index, value, q = one(sensor)
    check(code == 4 and q == Q_OK, "sonar ok %r" % q)
    near(value, 2345, 3, "sonar level mm")
    bus.world["water_level_m"] = 4.9  # 10 cm below the mount: inside the blind zone
    check(one(sensor)[3] == Q_OUT_OF_RANGE, "blind zone flagged")
    dead_is_flagged(sensor, "sonar", 1)
    bus.faults.add("sonar")
    check(one(sensor)[3] == Q_NO_RETURN, "no echo is no-return")


def loop_ma():
    cfg = {"type": "pressure_level_ma", "name": "loop", "interval_s": 60, "range_m": 10.0, "offset_m": 0.5}
    sensor, model = setup(cfg, {"water_level_m": 3.2})
    code, index, value, q = one(sensor)
    check(q == Q_OK, "4-20 ok")
    near(value, 3200, 5, "4-20 level mm")
    bus.faults.add("loop")
    check(one(sensor)[3] == Q_NO_RETURN, "broken loop is no-return")


def ms5837(bars):
    cfg = {"type": "pressure_level_i2c", "name": "ms", "interval_s": 60, "bars": bars}
    sensor, model = setup(cfg, {"water_level_m": 1.234 if bars == 30 else 0.456, "water_temp_c": 12.5})
    code, index, value, q = one(sensor)
    check(q == Q_OK, "ms5837 ok")
    near(value, 1234 if bars == 30 else 456, 4 if bars == 30 else 2, "ms5837-%dBA level mm" % bars)
    near(sensor.driver.temperature_c, 12.5, 0.02, "ms5837 temperature")
    dead_is_flagged(sensor, "ms")
    near(one(sensor)[2], 1234 if bars == 30 else 456, 4, "ms5837 recovers after a fault")


def ms5837_datasheet():
    from firmware.drivers.ms5837 import compensate
    c = [0, 34982, 36352, 20328, 22354, 26646, 26146]
    mbar, temp = compensate(c, 4958179, 6815414, 30, second=False)
    check(abs(mbar - 3999.8) < 0.05 and abs(temp - 19.81) < 0.005, "datasheet example %r %r" % (mbar, temp))


run((
    (ultrasonic, ()),
    (loop_ma, ()),
    (ms5837, (30,)),
    (ms5837, (2,)),
    (ms5837_datasheet, ()),
))
