"""Analog water quality and soil moisture drivers on the simulated board, under micropython: values within
resolution of bus.world, and a failed sensor flagged without an exception."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import check, dead_is_flagged, near, one, run, setup

from firmware.drivers import Q_OK, Q_STUCK
from firmware.sim.devices.probes import do_saturation, probe_volts


def quality(kind, key, value, tol, scale, calibration_at, extra=None):
    world = {key: value, "water_temp_c": 25.0}
    if extra:
        world.update(extra)
    points = []
    for v in calibration_at:
        # Standards are calibrated at 25 degC; a DO probe in air-saturated water reads 100 %.
        w = {"water_temp_c": 25.0}
        w[key] = do_saturation(25.0) if v is None else v
        points.append([probe_volts(kind, w), 100.0 if v is None else v])
    cfg = {"type": kind, "name": kind, "interval_s": 60, "calibration": points}
    if extra and "water_temp_c" in extra:
        cfg["temp_c"] = extra["water_temp_c"]
    sensor, model = setup(cfg, world)
    code, index, got, q = one(sensor)
    check(q == Q_OK, "%s ok %r" % (kind, q))
    near(got, value * scale, tol, kind)
    dead_is_flagged(sensor, kind)


def soil():
    cfg = {"type": "soil_moisture", "name": "soil", "interval_s": 600, "dry_v": 2.6, "wet_v": 1.2}
    sensor, model = setup(cfg, {"soil_moisture_pct": 42.0})
    code, index, value, q = one(sensor)
    check(code == 11 and q == Q_OK, "soil ok")
    near(value, 420, 3, "soil 0.1 %")
    dead_is_flagged(sensor, "soil")


def stuck():
    """An input frozen at one voltage (a latched amplifier, a shorted divider): once
    five bursts in a row are identical raw for raw the reading is flagged stuck, the
    value still sent; live noise clears the flag at the next read."""
    cfg = {"type": "ph", "name": "ph_stuck", "interval_s": 60, "calibration": []}
    sensor, model = setup(cfg, {"ph": 7.1, "water_temp_c": 25.0})
    model.noise_v = 0.0
    qualities = [one(sensor)[3] for _ in range(6)]
    check(qualities[:4] == [Q_OK] * 4, "not stuck before five identical bursts: %r" % (qualities,))
    check(qualities[4:] == [Q_STUCK, Q_STUCK], "stuck from the fifth identical burst: %r" % (qualities,))
    code, index, value, q = one(sensor)
    near(value, 710, 5, "a stuck reading still carries its value")
    model.noise_v = 0.0008
    check(one(sensor)[3] == Q_OK, "live again: ok")


run((
    (stuck, ()),
    (quality, ("ph", "ph", 6.42, 2, 100, (4.0, 7.0, 10.0))),
    (quality, ("turbidity", "turbidity_ntu", 123.0, 15, 10, (0.0, 1000.0))),
    (quality, ("conductivity", "conductivity_us_cm", 812.0, 6, 1, (0.0, 1413.0),
               {"water_temp_c": 18.0})),
    (quality, ("dissolved_oxygen", "do_mg_l", 9.5, 8, 100, (None,), {"water_temp_c": 12.0})),
    (soil, ()),
))
