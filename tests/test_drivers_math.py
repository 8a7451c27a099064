"""Calibration and scaling math of firmware/drivers, run by CPython on the very
file the boards run, and the drivers' channel and quality codes checked
against protocol/ (the drivers repeat them as const() to spare an import)."""
import re
from pathlib import Path

import pytest

from firmware.drivers import Q_NO_RETURN, Q_NOISY, Q_OK, Q_OUT_OF_RANGE, Q_STUCK, curve, interp, motion, scaled
from huaico.protocol import channels, frame

ROOT = Path(__file__).resolve().parents[1]
CONST = re.compile(r'^_(\w+) = const\((\d+)\)\s+# protocol/channels.py "(\w+)"', re.MULTILINE)


def test_quality_codes_match_the_protocol():
    assert (Q_OK, Q_NO_RETURN, Q_OUT_OF_RANGE, Q_STUCK, Q_NOISY) == (
        frame.Q_OK, frame.Q_NO_RETURN, frame.Q_OUT_OF_RANGE, frame.Q_STUCK, frame.Q_NOISY)


def test_channel_codes_in_drivers_match_the_registry():
    found = 0
    for path in (ROOT / "firmware" / "drivers").glob("*.py"):
        for _, code, name in CONST.findall(path.read_text()):
            assert channels.get(name).code == int(code), (path.name, name)
            found += 1
    assert found >= 10


def test_water_quality_codes_match_the_registry():
    text = (ROOT / "firmware" / "drivers" / "water_quality.py").read_text()
    for name, code, exponent in re.findall(r'"(\w+)": \((\d+), (-\d+),', text):
        channel = channels.get(int(code))
        assert channel.name == name and channel.scale == int(exponent)


@pytest.mark.parametrize("value, exponent, want", [
    (1.2345, -3, 1235), (-1.2345, -3, -1235), (0.0, -2, 0), (7.005, -2, 701), (3912.0, 0, 3912)])
def test_scaled_rounds_half_away_from_zero(value, exponent, want):
    assert scaled(value, exponent) == want


def test_two_and_three_point_curves_are_piecewise_linear():
    pts = curve([[2.03, 4.0], [1.5, 7.0], [0.97, 10.0]], None)
    assert pts[0] == (0.97, 10.0)
    assert interp(pts, 1.5) == pytest.approx(7.0)
    assert interp(pts, 1.765) == pytest.approx(5.5)
    assert interp(pts, 1.235) == pytest.approx(8.5)
    assert interp(pts, 2.56) == pytest.approx(1.0)  # extrapolates the end segment


def test_one_point_moves_the_default_curve_keeping_its_slope():
    default = ((1.5, 7.0), (2.0325, 4.0))
    pts = curve([[1.6, 7.0]], default)
    assert interp(pts, 1.6) == pytest.approx(7.0)
    slope = (interp(pts, 2.0) - interp(pts, 1.0)) / 1.0
    assert slope == pytest.approx((4.0 - 7.0) / (2.0325 - 1.5))


def test_no_points_is_the_default_curve_and_shared_x_is_refused():
    assert interp(curve([], ((0.0, 0.0), (2.0, 20000.0))), 1.0) == pytest.approx(10000.0)
    with pytest.raises(ValueError):
        curve([[1.0, 4.0], [1.0, 7.0]], None)


def test_motion_removes_gravity_and_measures_vibration():
    # 8 samples: gravity on z (256 counts) plus +-10 counts on x, alternating.
    samples = []
    for i in range(8):
        samples += [10 if i % 2 else -10, 0, 256]
    tilt_x, tilt_y, rms, peak, still = motion(samples, 8, 0.1)
    assert tilt_x == pytest.approx(0.0, abs=1e-9) and tilt_y == pytest.approx(0.0, abs=1e-9)
    assert rms == pytest.approx(1.0) and peak == pytest.approx(1.0) and not still
    assert motion([5, 5, 5] * 4, 4, 1.0)[4] is True
