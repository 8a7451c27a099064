"""Issue 11: however frames arrive, the alerts are those of the readings in time order.

For any delivery of a board's frames (reordered, duplicated, cut into writer
batches anyhow, some flagged clock-unsynced, one stamped a month in the
future), the alert transitions and the messages written to the outbox equal
those of a second gateway that got the same readings one by one in time
order, as the first gateway timed them (an unsynced or future frame at its
receive time), except where the late-data policy says otherwise.

The late-data policy is one function here, `late_policy`: today a point rule
does not move back in time for a reading older than one it took in an
earlier writer batch (gateway/rules/engine.py). A policy that coalesces or defers
late transitions (issue 11, fault 8) changes that function and, if it
defers messages, `outbox_messages`; nothing else in this test.

Both gateways are the real writer and rule engine on real SQLite files.
"""
import itertools

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huaico.protocol import frame as wire
from huaico.rules.engine import Rule, RuleEngine
from huaico.store import db
from huaico.store.writer import Writer
from tests.fixtures.gateway import Home

T0 = 1_800_000_000
MONTH = 30 * 86400
# Water levels (mm) around the rule's thresholds (2.0 m and 2.5 m, hysteresis
# 0.1 m), and one no sensor can give (out of range: never a threshold's).
LEVELS_MM = [500, 1850, 1950, 2050, 2450, 2550, 3100, 10 ** 12]
CONFIG = """
[alerts]
quiet_hours = ""
rate_limit_per_hour = 100000

[[groups]]
name = "leaders"
language = "es"
numbers = ["+51987654321"]
escalate_to = ""
quiet_hours = ""
min_level = "watch"
"""


def gateway(path):
    path.mkdir(parents=True)
    (path / "huaico.toml").write_text(CONFIG)
    home = Home(path)
    rule = Rule("river-high", "above", {"warning": 2.0, "emergency": 2.5}, channel="water_level",
                hysteresis=0.1, place="Puente Huaycoloro")
    row = rule.to_row()
    row["created"] = row["updated"] = T0 - 86400
    with db.transaction(home.database) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)" % (", ".join(row), ", ".join("?" * len(row))),
                     list(row.values()))
    return home, home.add("river1")


def transitions(home):
    """Each alert event in order: (alert number, type, level, value), and the
    messages queued for it (transport, recipient, group, level)."""
    conn = home.open()
    numbers = {}
    out = []
    for event_id, alert_id, msg_type, level, value in conn.execute(
            "SELECT id, alert_id, msg_type, level, value FROM alert_events ORDER BY id"):
        number = numbers.setdefault(alert_id, len(numbers))
        out.append((number, msg_type, level, round(value, 6), outbox_messages(conn, event_id)))
    conn.close()
    return out


def outbox_messages(conn, event_id):
    return sorted(conn.execute("SELECT transport, recipient, grp, level FROM outbox "
                               "WHERE event_id = ?", [event_id]).fetchall())


def late_policy(batches):
    """The readings a point rule acts on, from [[(time, value, quality)] per
    writer batch] as stored: a batch's ok readings not older than the newest
    ok reading of an earlier batch."""
    kept = []
    newest = None
    for batch in batches:
        ok = [item for item in batch if item[2] == wire.Q_OK]
        kept += [item for item in ok if newest is None or item[0] >= newest]
        if ok:
            top = max(t for t, _, _ in ok)
            newest = top if newest is None else max(newest, top)
    return kept


@st.composite
def deliveries(draw):
    """(readings [(time, value)], arrivals [(reading index or "future", unsynced)]
    in the order they reach the gateway, batch sizes)."""
    count = draw(st.integers(1, 10))
    steps = draw(st.lists(st.integers(30, 900), min_size=count, max_size=count))
    times = list(itertools.accumulate(steps, initial=T0))[1:]
    values = draw(st.lists(st.sampled_from(LEVELS_MM), min_size=count, max_size=count))
    order = draw(st.permutations(range(count)))
    copies = draw(st.lists(st.integers(0, count - 1), max_size=4))
    arrivals = list(order)
    for index in copies:  # a resend (its ack was lost) at any later point
        arrivals.insert(draw(st.integers(arrivals.index(index) + 1, len(arrivals))), index)
    if draw(st.booleans()):
        arrivals.insert(draw(st.integers(0, len(arrivals))), "future")
    unsynced = draw(st.sets(st.integers(0, count - 1)))
    sizes = []
    left = len(arrivals)
    while left:
        sizes.append(draw(st.integers(1, left)))
        left -= sizes[-1]
    future_value = draw(st.sampled_from(LEVELS_MM[:-1]))
    return list(zip(times, values)), arrivals, unsynced, sizes, future_value


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=deliveries())
def test_alerts_do_not_depend_on_how_frames_arrive(tmp_path_factory, plan):
    readings, arrivals, unsynced, sizes, future_value = plan
    root = tmp_path_factory.mktemp("order")
    home, board = gateway(root / "field")
    frames = [wire.encode_frame(board.kid, board.key, at + 1, t,
                                wire.FLAG_CLOCK_UNSYNCED if at in unsynced else 0,
                                [(4, 0, 0, v, 0)])
              for at, (t, v) in enumerate(readings)]
    future = wire.encode_frame(board.kid, board.key, len(frames) + 1, readings[-1][0] + MONTH, 0,
                               [(4, 0, 0, future_value, 0)])
    # The backlog reaches the gateway after the last reading was taken, a batch
    # every ten seconds; unsynced and future frames are stamped on receipt.
    clock = [readings[-1][0] + 60]
    writer = Writer(home.database, engine=RuleEngine(home.database, home.config),
                    clock=lambda: clock[0])
    batches = []
    start = 0
    for size in sizes:
        items = [future if a == "future" else frames[a] for a in arrivals[start:start + size]]
        start += size
        before = home.open().execute("SELECT coalesce(max(rowid), 0) FROM readings").fetchone()[0]
        outcomes = writer.process([("test", raw, clock[0], None) for raw in items])
        assert set(outcomes) <= {"stored", "duplicate"}, outcomes
        batches.append(home.open().execute(
            "SELECT time, value, quality FROM readings WHERE rowid > ? ORDER BY rowid",
            [before]).fetchall())
        clock[0] += 10
    stored = [item for batch in batches for item in batch]
    assert len(stored) == len(readings) + ("future" in arrivals)
    assert all(t <= clock[0] for t, _, _ in stored), "a reading was kept in the future"

    reference, ref_board = gateway(root / "in-order")
    ref_writer = Writer(reference.database, engine=RuleEngine(reference.database, reference.config),
                        clock=lambda: now[0])
    now = [0]
    kept = sorted(late_policy(batches), key=lambda item: item[0])  # stable: arrival order for ties
    for seq, (t, v, _) in enumerate(kept, 1):
        now[0] = t
        raw = wire.encode_frame(ref_board.kid, ref_board.key, seq, t, 0, [(4, 0, 0, v, 0)])
        assert ref_writer.process([("test", raw, t, None)]) == ["stored"]
    assert transitions(home) == transitions(reference)
    for each in (home, reference):
        each.database.conn.close()
