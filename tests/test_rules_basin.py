"""k-of-n and basin-mean rules in the engine against a brute-force
recomputation from every reading of every gauge: which gauges are known
(newest reading ok and younger than stale_s), their accumulations, the k-th
highest or the mean, the level (held while fewer than k gauges are known)
and the coverage alert; over hypothesis-generated readings of three gauges
with flagged ones, silences, ticks and restarts."""
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from huaico.rules import engine as rules
from huaico.rules.engine import LEVELS
from tests.fixtures.alerting import AlertDb, CONFIG

RAIN = 1  # 0.1 mm per integer (protocol/SPEC.md §1.3)
T0 = 1_800_000_000
WINDOW, STALE = 1800, 900
LEVELS_MM = {"watch": 1.0, "warning": 3.0}
GAUGES = ("0a000001", "0a000002", "0a000003")


def brute_value(kind, k, seen, at):
    """seen: (gauge, time, value, ok) in arrival order."""
    totals = []
    for gauge in GAUGES:
        mine = [(t, n, ok) for n, (g, t, _, ok) in enumerate(seen) if g == gauge and t <= at]
        if not mine or not max(mine)[2] or max(mine)[0] <= at - STALE:
            continue
        totals.append(sum(v * 0.1 for g, t, v, ok in seen
                          if g == gauge and ok and at - WINDOW < t <= at))
    if len(totals) < k:
        return None
    if kind == "basin-mean":
        return sum(totals) / len(totals)
    return sorted(totals, reverse=True)[k - 1]


def brute_level(rule, evaluations):
    """Level after each evaluation (time, value or None): a None holds the
    level and breaks every run of a threshold being met."""
    level, out = -1, []
    for i, (t, value) in enumerate(evaluations):
        if value is None:
            out.append(level)
            continue
        up = held = -1
        for index, name in enumerate(LEVELS):
            if name not in rule.levels:
                continue
            threshold = rule.levels[name]
            start = i
            while start >= 0 and evaluations[start][1] is not None \
                    and evaluations[start][1] >= threshold:
                start -= 1
            if start < i and t - evaluations[start + 1][0] >= rule.min_duration_s:
                up = index
            if index <= level and value >= threshold - rule.hysteresis:
                held = index
        level = max(up, held)
        out.append(level)
    return out


events = st.one_of(
    st.tuples(st.just("reading"), st.sampled_from(GAUGES), st.integers(-3, 6).map(lambda n: n * 100),
              st.integers(0, 30), st.sampled_from([0, 0, 0, 2])),
    st.tuples(st.just("tick"), st.just(None), st.sampled_from([0, 300, 1000]), st.just(0),
              st.just(0)),
    st.tuples(st.just("restart"), st.just(None), st.just(0), st.just(0), st.just(0)))


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=st.lists(events, min_size=1, max_size=40),
       kind=st.sampled_from(["k-of-n", "basin-mean"]), k=st.integers(1, 3),
       min_duration=st.sampled_from([0, 300]), hysteresis=st.sampled_from([0.0, 1.0]))
def test_basin_rules_match_brute_force(tmp_path_factory, plan, kind, k, min_duration,
                                       hysteresis):
    adb = AlertDb(tmp_path_factory.mktemp("b") / "huaico.db")
    devices = {g: adb.add_device(g, "g%d" % n, site=("Chosica", " chosica ", "CHOSICA")[n])
               for n, g in enumerate(GAUGES)}
    adb.add_device("0b000009", "elsewhere", site="lurigancho")
    rule = adb.add_rule(rules.Rule("basin", kind, LEVELS_MM, site="chosica", channel="rain",
                                   window_s=WINDOW, params={"k": k, "stale_s": STALE},
                                   min_duration_s=min_duration, hysteresis=hysteresis))
    observed = []

    def observe(rule, subject, index, t, basin):
        observed.append((basin.tracker.value, basin.tracker.level, basin.cover.level))

    engine = rules.RuleEngine(adb.database, CONFIG, observer=observe)
    seen, evaluations, expected = [], [], []
    clock = wall = T0
    at = None
    for what, gauge, step, value, quality in plan:
        if what == "restart":
            engine = rules.RuleEngine(adb.database, CONFIG, observer=observe)
            # The basin's time is rebuilt from the stored readings: the time
            # of a tick before the restart is not kept.
            at = max((t for _, t, _, _ in seen), default=None)
            continue
        clock += step
        wall = max(wall, clock)
        if what == "tick":
            adb.tick(engine, wall)
            # A tick evaluates every basin rule at the gateway's time, after
            # the history known so far.
            at = wall if at is None else max(at, wall)
            evaluations.append((at, brute_value(kind, k, seen, at)))
            continue
        if any(g == gauge and t == clock for g, t, _, _ in seen):
            continue
        adb.store(engine, devices[gauge], [(RAIN, 0, clock, value, quality)], wall)
        seen.append((gauge, clock, value, quality == 0))
        at = clock if at is None else max(at, clock)
        evaluations.append((at, brute_value(kind, k, seen, at)))
        levels = brute_level(rule, evaluations)
        short = 0 if evaluations[-1][1] is None else -1
        expected.append((evaluations[-1][1], levels[-1], short))
    assert [(None if v is None else pytest.approx(v, rel=1e-9, abs=1e-12), lv, c)
            for v, lv, c in observed] == expected
    adb.database.conn.close()


def test_one_faulty_gauge_cannot_raise_alone_and_silence_is_told(tmp_path):
    adb = AlertDb(tmp_path / "huaico.db")
    g = [adb.add_device(gauge, "g%d" % n) for n, gauge in enumerate(GAUGES)]
    adb.add_rule(rules.Rule("basin", "k-of-n", LEVELS_MM, site="Chosica", channel="rain",
                            window_s=WINDOW, params={"k": 2, "stale_s": STALE}))
    engine = rules.RuleEngine(adb.database, CONFIG)
    adb.store(engine, g[0], [(RAIN, 0, T0, 0, 0)], T0)
    adb.store(engine, g[1], [(RAIN, 0, T0 + 10, 0, 0)], T0 + 10)
    # The first gauge alone is too few (k = 2): told to operators, then
    # cleared when the second is heard.
    assert adb.rows("SELECT kind, level, status FROM alerts") == [
        ("quality", "advisory", "cleared")]
    adb.store(engine, g[2], [(RAIN, 0, T0 + 20, 200, 0)], T0 + 20)  # 20 mm at one gauge
    assert adb.rows("SELECT count(*) FROM alerts WHERE kind = 'k-of-n'")[0][0] == 0
    adb.store(engine, g[1], [(RAIN, 0, T0 + 30, 40, 0)], T0 + 30)   # a second one agrees
    assert adb.rows("SELECT level FROM alerts WHERE kind = 'k-of-n'") == [("warning",)]
    # Two gauges fall silent: the warning holds and operators are told.
    adb.tick(engine, T0 + 30 + STALE + 1)
    assert adb.rows("SELECT kind, level, status FROM alerts WHERE id > 1 ORDER BY id") == [
        ("k-of-n", "warning", "active"), ("quality", "advisory", "active")]
    # A restart keeps both, and the gauges' return clears the coverage alert.
    engine = rules.RuleEngine(adb.database, CONFIG)
    for n, gauge in enumerate(g):
        adb.store(engine, gauge, [(RAIN, 0, T0 + 2000 + n, 0, 0)], T0 + 2000 + n)
    assert adb.rows("SELECT kind, status FROM alerts WHERE id > 1 ORDER BY id") == [
        ("k-of-n", "cleared"), ("quality", "cleared")]


def test_a_spell_without_enough_gauges_restarts_the_minimum_duration(tmp_path):
    adb = AlertDb(tmp_path / "huaico.db")
    g = [adb.add_device(gauge, "g%d" % n) for n, gauge in enumerate(GAUGES[:2])]
    adb.add_rule(rules.Rule("basin", "k-of-n", {"watch": 1.0}, site="chosica", channel="rain",
                            window_s=WINDOW, min_duration_s=600, params={"k": 2}))
    engine = rules.RuleEngine(adb.database, CONFIG)
    adb.store(engine, g[0], [(RAIN, 0, T0, 20, 0)], T0)
    adb.store(engine, g[1], [(RAIN, 0, T0 + 1, 20, 0)], T0 + 1)      # watch met from T0 + 1
    adb.store(engine, g[1], [(RAIN, 0, T0 + 100, 0, 2)], T0 + 100)   # flagged: one known
    adb.store(engine, g[1], [(RAIN, 0, T0 + 700, 20, 0)], T0 + 700)  # met again from here
    assert adb.rows("SELECT count(*) FROM alerts WHERE kind = 'k-of-n'")[0][0] == 0
    adb.store(engine, g[0], [(RAIN, 0, T0 + 1300, 0, 0)], T0 + 1300)
    assert adb.rows("SELECT level FROM alerts WHERE kind = 'k-of-n'") == [("watch",)]


def test_a_reading_from_the_future_does_not_pin_the_basin(tmp_path):
    """50 mm stored 30 days ahead would pin the basin's time (every gauge
    stale) and, left in a window, count as rain now."""
    adb = AlertDb(tmp_path / "huaico.db")
    g = [adb.add_device(gauge, "g%d" % n) for n, gauge in enumerate(GAUGES[:2])]
    adb.add_rule(rules.Rule("basin", "k-of-n", {"watch": 1.0, "warning": 10.0}, site="chosica",
                            channel="rain", window_s=WINDOW, params={"k": 1}))
    adb.store(None, g[0], [(RAIN, 0, T0 + 30 * 86400, 500, 0)], T0)
    engine = rules.RuleEngine(adb.database, CONFIG)
    adb.store(engine, g[0], [(RAIN, 0, T0, 20, 0)], T0)
    adb.store(engine, g[1], [(RAIN, 0, T0 + 1, 0, 0)], T0 + 1)
    assert adb.rows("SELECT level, status FROM alerts WHERE kind = 'k-of-n'") == [
        ("watch", "active")]
