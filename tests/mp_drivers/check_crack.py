"""Crack gauge (linear potentiometer on an ADC) on the simulated board, under micropython: the width
within resolution of bus.world["crack_mm"], calibration points honoured, a spike outvoted by the
median, and dead, stuck, noisy and out-of-travel gauges flagged without an exception."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import board, check, dead_is_flagged, near, one, run, setup

from firmware import sensors
from firmware.drivers import Q_NOISY, Q_OK, Q_OUT_OF_RANGE, Q_STUCK
from firmware.sim import bus

CRACK_WIDTH = 14  # protocol/channels.py, 0.01 mm
GAUGE = {"type": "crack_gauge", "name": "crack0", "interval_s": 600, "travel_mm": 25.0, "zero_mm": 12.5}


def width_follows_the_crack():
    sensor, model = setup(GAUGE, {"crack_mm": 0.37})
    code, index, value, q = one(sensor)
    check(code == CRACK_WIDTH and index == 0 and q == Q_OK, "crack ok: %r" % ((code, index, value, q),))
    near(value, 37, 1, "0.37 mm opening")
    bus.world["crack_mm"] = -1.2  # the crack closes past where it was found
    code, index, value, q = one(sensor)
    check(q == Q_OK, "closing ok %r" % q)
    near(value, -120, 1, "1.2 mm closing")


def calibration_points():
    """A 50 mm gauge calibrated with two gauge blocks (5 mm at 0.33 V, 45 mm at 2.97 V)."""
    cfg = dict(GAUGE, name="crack50", travel_mm=50.0, zero_mm=20.0, calibration=[[0.33, 5.0], [2.97, 45.0]])
    sensor, model = setup(cfg, {"crack_mm": 2.5})
    code, index, value, q = one(sensor)
    check(q == Q_OK, "calibrated ok %r" % q)
    near(value, 250, 2, "2.5 mm on a calibrated 50 mm gauge")
    # Past the calibrated span (45 mm + 2 %) without reaching the rail: out of range.
    bus.world["crack_mm"] = 27.0
    code, index, value, q = one(sensor)
    check(q == Q_OUT_OF_RANGE, "past the calibrated travel flagged: %r" % q)


def median_outvotes_a_spike():
    """A wiper lifting off the track for one sample: the median keeps the width."""
    sensor, model = setup(GAUGE, {"crack_mm": 0.8})
    calls = [0]

    def spiky():
        calls[0] += 1
        return 3.3 if calls[0] % 9 == 4 else model.volts()

    bus.adc_attach(board.PINS["adc0"], spiky)
    code, index, value, q = one(sensor)
    near(value, 80, 1, "width despite a rail sample")
    check(q != Q_OK, "the rail sample is still flagged: %r" % q)


def flags():
    sensor, model = setup(GAUGE, {"crack_mm": 13.0})  # plunger at 25.5 mm: off the end of its 25 mm travel
    check(one(sensor)[3] == Q_OUT_OF_RANGE, "beyond the travel flagged")
    bus.world["crack_mm"] = 0.0
    check(one(sensor)[3] == Q_OK, "back in travel ok")
    dead_is_flagged(sensor, "crack0")
    model.noise_v = 0.1
    check(one(sensor)[3] == Q_NOISY, "noisy track flagged")
    model.noise_v = 0.0
    qualities = [one(sensor)[3] for _ in range(6)]
    check(qualities[4:] == [Q_STUCK, Q_STUCK], "stuck from the fifth identical burst: %r" % (qualities,))


def refused():
    for bad, what in ((dict(GAUGE, travel_mm=0), "travel_mm"),
                      (dict(GAUGE, zero_mm="x"), "zero_mm"),
                      (dict(GAUGE, calibration=[[1.0, 2.0], [1.0, 3.0]]), "two calibration points"),
                      (dict(GAUGE, pins={"adc0": 5}), "ADC-capable")):
        errors = sensors.validate(board, bad)
        check([e for e in errors if what in e], "%s refused: %r" % (what, errors))


run((
    (width_follows_the_crack, ()),
    (calibration_points, ()),
    (median_outvotes_a_spike, ()),
    (flags, ()),
    (refused, ()),
))
