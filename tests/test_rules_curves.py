"""The intensity-duration rule in the engine against a brute-force
recomputation from every reading seen: the curve alpha * D^-beta (written
out here, not taken from huaico.rules.rain_thresholds), its mean intensities
over each duration, the antecedent precipitation index over UTC daily
totals, and the levels; over hypothesis-generated readings with late ones,
day jumps, restarts and writer batches."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from huaico.rules import engine as rules
from tests.fixtures.alerting import AlertDb, CONFIG
from tests.test_rules_windows import brute_levels

RAIN = 1  # channel code; 0.1 mm per integer (protocol/SPEC.md §1.3)
T0 = 1_800_000_000
DAY = 86400


def brute_ratio(seen, alpha, beta, durations, antecedent):
    latest = max(t for t, _ in seen)
    factor = 1.0
    if antecedent:
        k, saturation, floor = antecedent
        today = latest // DAY
        api = 0.0
        for day in range(today - 30, today):
            api = k * api + sum(v * 0.1 for t, v in seen if t // DAY == day)
        factor = max(floor, 1 - api / saturation)
    best = 0.0
    for duration in durations:
        hours = duration / 3600
        mm = sum(v * 0.1 for t, v in seen if latest - duration < t <= latest)
        best = max(best, (mm / hours) / (alpha * hours ** -beta * factor))
    return best


steps = st.one_of(st.integers(-9, 7).map(lambda n: n * 100),
                  st.sampled_from([DAY, 2 * DAY + 600, -DAY]))
frames = st.lists(st.tuples(st.lists(st.tuples(steps, st.integers(0, 40)), min_size=1,
                                     max_size=4), st.booleans()), min_size=1, max_size=25)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=frames, preset=st.sampled_from(["caine1980", "guzzetti2008"]),
       durations=st.sampled_from([[600, 3600], [600, 3600, 10800], [1800]]),
       antecedent=st.sampled_from([None, (0.8, 5.0, 0.5), (0.9, 20.0, 0.3)]),
       min_duration=st.sampled_from([0, 600]), hysteresis=st.sampled_from([0.0, 0.2]),
       batched=st.booleans())
def test_intensity_duration_matches_brute_force(tmp_path_factory, plan, preset, durations,
                                                antecedent, min_duration, hysteresis, batched):
    adb = AlertDb(tmp_path_factory.mktemp("id") / "huaico.db")
    device = adb.add_device("0a0b0c0d", "g1")
    params = {"preset": preset, "durations": durations}
    if antecedent:
        params["antecedent"] = dict(zip(("k", "saturation_mm", "floor"), antecedent))
    rule = adb.add_rule(rules.Rule("curve", "intensity-duration",
                                   {"watch": 0.75, "warning": 1.0, "emergency": 1.5},
                                   params=params, min_duration_s=min_duration,
                                   hysteresis=hysteresis))
    alpha, beta = {"caine1980": (14.82, 0.39), "guzzetti2008": (2.20, 0.44)}[preset]
    observed = []
    engine = rules.RuleEngine(adb.database, CONFIG,
                              observer=lambda r, d, i, t, tr: observed.append((tr.value,
                                                                               tr.level)))
    seen, expected, evaluations = [], [], []
    clock = T0
    wall = T0
    for batch, restart in plan:
        if restart:
            engine = rules.RuleEngine(adb.database, CONFIG, observer=engine.observer)
        rows = []
        for step, value in batch:
            clock += step
            if any(row[2] == clock for row in rows):
                continue
            wall = max(wall, clock)
            rows.append((RAIN, 0, clock, value, 0))
        if batched:
            adb.store_frames(engine, device, [rows], wall)
        else:
            adb.store(engine, device, rows, wall)
        for row in sorted(rows, key=lambda row: row[2]):
            seen.append((row[2], row[3]))
            value = brute_ratio(seen, alpha, beta, durations, antecedent)
            expected.append(value)
            evaluations.append((max(t for t, _ in seen), value))
    levels = brute_levels(rule, evaluations)
    assert [(pytest.approx(v, rel=1e-9, abs=1e-12), lv) for v, lv in observed] == \
        list(zip(expected, levels))
    adb.database.conn.close()


def test_worked_example_of_the_docs(tmp_path):
    """docs/rules.md: Caine's curve, 12 mm in 10 minutes stands at 2.42
    times the 10-minute threshold (29.8 mm/h); after 60 mm the day before
    with k = 0.9, saturation 150 mm, the curve is lowered to 0.6 of itself."""
    adb = AlertDb(tmp_path / "huaico.db")
    device = adb.add_device("0a0b0c0d", "g1")
    rule = adb.add_rule(rules.Rule(
        "curve", "intensity-duration", {"watch": 0.75, "warning": 1.0, "emergency": 1.5},
        params={"preset": "caine1980", "durations": [600, 3600, 86400],
                "antecedent": {"k": 0.9, "saturation_mm": 150, "floor": 0.5}}))
    engine = rules.RuleEngine(adb.database, CONFIG)
    start = (T0 // DAY) * DAY + 3600
    adb.store(engine, device, [(RAIN, 0, start - DAY + 600 * i, 100, 0) for i in range(6)],
              start)
    adb.store(engine, device, [(RAIN, 0, start + 60 * i, 12, 0) for i in range(1, 11)],
              start + 600)
    value, level = adb.rows("SELECT value, level FROM alert_state")[0]
    assert rule.weight({start // DAY - 1: 600}, start) == pytest.approx(0.6)
    assert value == pytest.approx(72.0 / (14.82 * 6 ** 0.39) / 0.6)
    assert round(value, 2) == 4.03 and level == "emergency"


@pytest.mark.parametrize("params, field", [
    ({"durations": [600]}, "alpha and beta"),
    ({"preset": "caine", "durations": [600]}, "preset"),
    ({"preset": "caine1980", "alpha": 3, "durations": [600]}, "not both"),
    ({"preset": "caine1980", "durations": []}, "durations"),
    ({"preset": "caine1980", "durations": [600], "antecedent": {"k": 0.9}}, "antecedent"),
    ({"preset": "caine1980", "durations": [600], "antecedent": {"k": 1.2, "saturation_mm": 9}},
     "antecedent"),
    ({"preset": "caine1980", "durations": [600], "k": 2}, "not a parameter"),
])
def test_bad_curve_rules_name_the_field(params, field):
    with pytest.raises(rules.RuleError, match=field):
        rules.Rule("c", "intensity-duration", {"warning": 1.0}, params=params)


def test_a_reading_from_the_future_does_not_pin_the_curve(tmp_path):
    """A reading stored 30 days ahead (by a gateway whose clock was wrong)
    is forgotten by the tracker, its window and its daily totals: the burst
    that follows raises as if it had never been there."""
    adb = AlertDb(tmp_path / "huaico.db")
    device = adb.add_device("0a0b0c0d", "g1")
    adb.add_rule(rules.Rule(
        "curve", "intensity-duration", {"watch": 0.75, "emergency": 1.5},
        params={"preset": "caine1980", "durations": [600, 3600],
                "antecedent": {"k": 0.9, "saturation_mm": 150}}))
    adb.store(None, device, [(RAIN, 0, T0 + 30 * DAY, 500, 0)], T0)
    seen = []
    engine = rules.RuleEngine(adb.database, CONFIG, observer=lambda rule, device_id, index, t,
                              tracker: seen.append((t, tracker.value, tracker.level)))
    for minute in range(1, 6):
        adb.store(engine, device, [(RAIN, 0, T0 + 60 * minute, 24, 0)], T0 + 60 * minute)
    # 12 mm in the last 10 minutes: 2.42 times the curve, dry ground (factor 1).
    assert seen[-1] == (T0 + 300, pytest.approx(72.0 / (14.82 * 6 ** 0.39)), 3)
    assert adb.rows("SELECT level FROM alerts") == [("emergency",)]
