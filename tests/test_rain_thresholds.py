"""Intensity-duration thresholds against a direct recomputation, and the
published curves' coefficients at points read off the papers' own equations."""
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huaico.rules.rain_thresholds import (PRESETS, ThresholdError, antecedent_index, check, curve,
                                     exceedance, wet_factor)


def test_presets_are_the_published_curves():
    # Caine (1980): I = 14.82 D^-0.39; at 1 h 14.82 mm/h, at 24 h about 4.29 mm/h.
    alpha, beta, _ = PRESETS["caine1980"]
    assert curve(alpha, beta, 1) == pytest.approx(14.82)
    assert curve(alpha, beta, 24) == pytest.approx(14.82 * 24 ** -0.39) == pytest.approx(4.29, abs=0.01)
    # Guzzetti et al. (2008), global: I = 2.20 D^-0.44; at 10 min about 4.84 mm/h.
    alpha, beta, _ = PRESETS["guzzetti2008"]
    assert curve(alpha, beta, 1) == pytest.approx(2.20)
    assert curve(alpha, beta, 1 / 6) == pytest.approx(4.84, abs=0.01)


def test_worked_example_a_burst_of_12_mm_in_10_minutes():
    # 12 mm in 10 min is 72 mm/h; Caine's curve at 1/6 h is 14.82 * 6**0.39 = 29.8 mm/h,
    # so the burst stands at 2.42 times the curve, its 1 h mean (12 mm/h) at 0.81.
    durations = check(14.82, 0.39, [600, 3600, 86400])
    rain = [(1000 + 60 * i, 1.2) for i in range(10)]
    ratio, duration, intensity = exceedance(rain, 1540, durations, 14.82, 0.39)
    assert duration == 600 and intensity == pytest.approx(72.0)
    assert ratio == pytest.approx(72.0 / (14.82 * 6 ** 0.39))
    assert ratio == pytest.approx(2.42, abs=0.01)


def _direct(rain, now, durations, alpha, beta, factor):
    best = 0.0
    for duration in durations:
        hours = duration / 3600
        mm = sum(v for t, v in rain if now - duration < t <= now)
        best = max(best, (mm / hours) / (alpha * hours ** -beta * factor))
    return best


@settings(max_examples=400, deadline=None)
@given(data=st.data(), now=st.integers(0, 200_000),
       durations=st.lists(st.integers(60, 100_000), min_size=1, max_size=6),
       preset=st.sampled_from(sorted(PRESETS)),
       factor=st.floats(0.3, 1.0))
def test_exceedance_equals_a_direct_recomputation(data, now, durations, preset, factor):
    alpha, beta, _ = PRESETS[preset]
    # Times often right at a duration's edge or at now, where an off-by-one hides.
    ages = st.one_of(st.sampled_from(durations + [0]), st.integers(-600, 110_000))
    rain = data.draw(st.lists(st.tuples(ages.map(lambda age: now - age), st.floats(0, 50)),
                              max_size=60))
    rain = sorted(rain, key=lambda pair: pair[0])
    durations = check(alpha, beta, durations)
    ratio, duration, intensity = exceedance(rain, now, durations, alpha, beta, factor)
    assert ratio == pytest.approx(_direct(rain, now, durations, alpha, beta, factor), rel=1e-9, abs=1e-12)
    if ratio:
        hours = duration / 3600
        assert ratio == pytest.approx(intensity / (alpha * hours ** -beta * factor), rel=1e-12)


def test_antecedent_index_and_wet_factor():
    # API_t = k API_{t-1} + P_t with k = 0.9 over 10, 0, 20 mm: 0.9*(0.9*10 + 0) + 20 = 28.1.
    assert antecedent_index([10, 0, 20], 0.9) == pytest.approx(28.1)
    assert wet_factor(0, 100, 0.5) == 1.0
    assert wet_factor(28.1, 100, 0.5) == pytest.approx(0.719)
    assert wet_factor(500, 100, 0.5) == 0.5


@pytest.mark.parametrize("alpha, beta, durations, field", [
    (0, 0.39, [600], "alpha"), (14.82, 2.5, [600], "beta"), (14.82, 0.39, [], "durations"),
    (14.82, 0.39, [0, 600], "durations"), (math.nan, 0.39, [600], "alpha"),
])
def test_bad_curves_name_the_field(alpha, beta, durations, field):
    with pytest.raises(ThresholdError, match=field):
        check(alpha, beta, durations)
