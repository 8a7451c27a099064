"""The rule engine's incremental windows and level state against a
brute-force recomputation from every reading seen so far, over
hypothesis-generated sequences with late readings and restarts, fed one
frame per transaction (on_readings) or in writer batches (on_frames, before
the batch's readings are in the table).

The brute force has its own unit table (protocol/SPEC.md §1.3: rain
travels in 0.1 mm, water level in mm, and rules speak mm and metres), so a
wrong scale in protocol/channels.py or gateway/rules/engine.py cannot pass by
being on both sides; value and level are compared after every reading, not
only at the end."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from huaico.rules import engine as rules
from huaico.rules.engine import LEVELS
from tests.fixtures.alerting import AlertDb, CONFIG

RAIN = 1          # 0.1 mm
LEVEL = 4         # water_level, mm
T0 = 1_800_000_000
# The rule's unit per integer sent, written down from the spec and not read
# from the engine: 0.1 mm of rain, 1 mm of water level in metres.
UNIT = {RAIN: 0.1, LEVEL: 0.001}


def brute_value(rule, code, seen):
    """The rule's value after `seen` (arrival order), from scratch."""
    latest = max(t for t, _ in seen)
    ordered = sorted(seen, key=lambda item: item[0])  # stable: ties in arrival order
    if rule.kind == "above":
        return ordered[-1][1] * UNIT[code]
    inside = [(t, v) for t, v in ordered if latest - rule.window_s < t <= latest]
    if rule.kind == "accumulation":
        return sum(v for _, v in inside) * UNIT[code]
    return (inside[-1][1] - min(v for _, v in inside)) * UNIT[code]


def brute_levels(rule, evaluations):
    """Level after each evaluation (time, value), written as a search back
    over the run of evaluations meeting each threshold."""
    level = -1
    out = []
    for i, (t, value) in enumerate(evaluations):
        up = -1
        held = -1
        for index, name in enumerate(LEVELS):
            if name not in rule.levels:
                continue
            threshold = rule.sign * rule.levels[name]
            meets = [rule.sign * v >= threshold for _, v in evaluations[:i + 1]]
            if meets[-1]:
                start = i
                while start > 0 and meets[start - 1]:
                    start -= 1
                if t - evaluations[start][0] >= rule.min_duration_s:
                    up = index
            if index <= level and rule.sign * value >= threshold - rule.hysteresis:
                held = index
        level = max(up, held)
        out.append(level)
    return out


# Steps of 100 s so that readings fall exactly on window edges often.
readings = st.tuples(st.integers(-9, 7).map(lambda n: n * 100), st.integers(0, 40))
batches = st.lists(st.tuples(st.lists(readings, min_size=1, max_size=4), st.booleans()),
                   min_size=1, max_size=25)
rule_specs = st.one_of(
    st.tuples(st.just("accumulation"), st.sampled_from([600, 1800, 3600]),
              st.just({"watch": 3.0, "warning": 6.0, "emergency": 9.0})),
    st.tuples(st.just("rise"), st.sampled_from([600, 1800]),
              st.just({"advisory": 0.005, "warning": 0.02})),
    st.tuples(st.just("above"), st.just(0), st.just({"watch": 0.01, "emergency": 0.03})),
)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=rule_specs, hysteresis=st.sampled_from([0.0, 0.5, 0.002]),
       min_duration=st.sampled_from([0, 300, 900]), plan=batches,
       group=st.sampled_from([0, 1, 3, 8]))
def test_windows_and_levels_match_brute_force(tmp_path_factory, spec, hysteresis, min_duration,
                                              plan, group):
    kind, window, levels = spec
    adb = AlertDb(tmp_path_factory.mktemp("w") / "huaico.db")
    device = adb.add_device("0a0b0c0d", "g1")
    channel = "rain" if kind == "accumulation" else "water_level"
    code = RAIN if kind == "accumulation" else LEVEL
    rule = adb.add_rule(rules.Rule("r", kind, levels, channel=channel, window_s=window,
                                   hysteresis=hysteresis, min_duration_s=min_duration))
    observed = []  # (value, level) the engine holds after each reading

    def observe(rule, device_id, index, t, tracker):
        observed.append((tracker.value, tracker.level))

    engine = rules.RuleEngine(adb.database, CONFIG, observer=observe)
    seen = []
    expected = []  # brute-force value after each reading
    last_evaluation = []  # per reading: how many evaluations had happened by then
    evaluations = []
    clock = T0
    # The gateway's time: never behind a reading it has taken (the store
    # restamps one from the future), so late readings do not turn it back.
    wall = [T0]
    pending = []  # frames of the writer batch being gathered (group > 0)

    def model(rows):
        """What the engine does with the rows it evaluates together (one
        frame, or a writer batch's frames): in reading-time order."""
        newest = max((t for t, _ in seen), default=None)
        for _, _, t, v, _ in sorted(rows, key=lambda row: row[2]):
            late = newest is not None and t < newest
            seen.append((t, v))
            newest = max(newest or t, t)
            value = brute_value(rule, code, seen)
            expected.append(value)
            if not (late and kind == "above"):
                evaluations.append((newest, value))
            last_evaluation.append(len(evaluations))

    def flush():
        if pending:
            adb.store_frames(engine, device, list(pending), wall[0])
            model([row for rows in pending for row in rows])
            pending.clear()

    for batch, restart in plan:
        if restart:
            flush()
            engine = rules.RuleEngine(adb.database, CONFIG, observer=observe)
        rows = []
        times = set()
        for step, value in batch:
            clock += step
            if clock in times:
                continue
            times.add(clock)
            wall[0] = max(wall[0], clock)
            rows.append((code, 0, clock, value, 0))
        if group:
            pending.append(rows)
            if len(pending) >= group:
                flush()
        else:
            adb.store(engine, device, rows, wall[0])
            model(rows)
    flush()
    # A late point reading changes nothing: the level stays the one of the
    # last evaluation before it (-1 before any).
    levels = [-1] + brute_levels(rule, evaluations)
    want = [(value, levels[n]) for value, n in zip(expected, last_evaluation)]
    assert [(pytest.approx(v, rel=1e-12, abs=1e-15), lv) for v, lv in observed] == want
    level = adb.rows("SELECT level FROM alert_state")
    assert (level[0][0] if level else "") == rules.level_name(levels[-1])
    adb.database.conn.close()
