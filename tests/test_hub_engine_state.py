"""The hub's rule state across workers, on a real PostgreSQL: two HubEngines
on two connections stand for two `huaico hub run` workers (each evaluates
its batches in store_batch's transaction and ticks in one of its own, as
gateway/hub/worker.py runs them), with `now` given so that a minimum
duration runs out when the test says.

- A minimum duration fires once and on time whichever worker evaluated
  the frames that started its clock, and when that worker is gone for good
  (its connection closed: what kill -9 leaves, since a worker's state is
  only what it committed) another worker's tick fires it.
- A worker forgets only the trackers of the subjects another worker moved
  since its last evaluation: its other trackers stay (no rebuild), and
  what it forgets it reads back right (a window, a basin's gauges).
"""
import psycopg
import pytest

from huaico.hub import devices as hub_devices, store as hub_store, upstream
from huaico.hub.rules import HubEngine
from huaico.protocol import frame as wire
from huaico.protocol.cose import MacKey
from huaico.rules import engine as rules
from tests.fixtures.alerting import CONFIG
from tests.fixtures.postgres import HUB_NOW as T0

EPOCH = 0x5A
LEVEL = 4  # water_level, mm
RAIN = 1  # 0.1 mm


class HubWorker:
    """One worker's engine on its own connection."""

    def __init__(self, dsn, config):
        self.conn = psycopg.connect(dsn)
        self.engine = HubEngine(config)
        self.keys = hub_store.Keys()

    def store(self, device, n, t, rows):
        """Frame n of `device` stamped t, as forwarded by a gateway; evaluated now = t."""
        raw = wire.encode_frame(bytes.fromhex(device["id"]), MacKey(bytes.fromhex(device["key"])),
                                n, t, 0, list(rows), epoch=EPOCH)
        message = ("huaico-city/gw-a/frames",
                   upstream.envelope("gw-a", n, t + 0.5, "udp:x", None, raw))
        try:
            outcomes, _ = hub_store.store_batch(self.conn, self.keys, [message], now=t,
                                                engine=self.engine)
        except BaseException:
            self.engine.rolled_back()
            raise
        self.engine.committed()
        assert outcomes == ["stored"]

    def tick(self, now):
        return self.engine.tick(self.conn, now)

    def tracker(self, rule_name, subject):
        return next(tracker for key, tracker in self.engine.engine._trackers.items()
                    if tracker.rule.name == rule_name and key[1] == subject)

    def close(self):
        self.conn.close()


@pytest.fixture
def hub(hub_db, postgres):
    """(add_device, add_rule, new_worker, rows) on the migrated hub."""
    workers = []

    def add_device(name, site="cuenca"):
        device = hub_devices.add(hub_db, name, "pico", site)
        # Frame 1 comes next: in order, so the rules take it at once rather
        # than hold a device's first frames (gateway/hub/rules.py).
        with hub_db.transaction():
            hub_db.execute("INSERT INTO engine_seq (device_id, seq) VALUES (%s, %s)",
                           [device["id"], EPOCH << 24])
        return device

    def add_rule(rule):
        row = dict(rule.to_row(), created=0.0, updated=0.0)
        with hub_db.transaction():
            hub_db.execute("INSERT INTO rules (%s) VALUES (%s)" % (
                ", ".join(row), ", ".join(["%s"] * len(row))), list(row.values()))

    def new_worker():
        workers.append(HubWorker(postgres.dsn, CONFIG))
        return workers[-1]

    def rows(sql, args=()):
        with hub_db.transaction():
            return hub_db.execute(sql, args).fetchall()

    yield add_device, add_rule, new_worker, rows
    for worker in workers:
        worker.close()


def _alerts(rows):
    return rows("SELECT device_id, level, raised FROM alerts ORDER BY id")


def test_a_minimum_duration_fires_once_on_time_from_whichever_worker_ticks(hub):
    add_device, add_rule, new_worker, rows = hub
    gauge = add_device("rio")
    add_rule(rules.Rule("crecida", "above", {"watch": 1.0}, device="rio", channel="water_level",
                        min_duration_s=60))
    a, b = new_worker(), new_worker()
    # The water stands above 1 m from T0; the frames fall to both workers.
    a.store(gauge, 1, T0, [(LEVEL, 0, 0, 1500, 0)])
    b.store(gauge, 2, T0 + 20, [(LEVEL, 0, 0, 1600, 0)])
    a.store(gauge, 3, T0 + 40, [(LEVEL, 0, 0, 1550, 0)])
    assert a.tick(T0 + 59) and b.tick(T0 + 59.5)
    assert _alerts(rows) == []  # not held for 60 s yet
    # a is killed: only what it committed is left. b never evaluated the
    # frame that a saw last, nor holds the tracker a's tick would have used.
    a.close()
    assert b.tick(T0 + 60.5)
    assert _alerts(rows) == [(gauge["id"], "watch", T0 + 60.5)]
    # Once: neither b again, nor a restarted a, nor a frame that follows.
    restarted = new_worker()
    assert b.tick(T0 + 61.5) and restarted.tick(T0 + 62)
    restarted.store(gauge, 4, T0 + 70, [(LEVEL, 0, 0, 1500, 0)])
    assert b.tick(T0 + 71)
    assert _alerts(rows) == [(gauge["id"], "watch", T0 + 60.5)]
    assert rows("SELECT msg_type FROM alert_events") == [("Alert",)]


def test_a_tick_behind_a_busy_lock_says_so(hub, postgres):
    add_device, add_rule, new_worker, rows = hub
    add_device("rio")
    add_rule(rules.Rule("crecida", "above", {"watch": 1.0}, device="rio", channel="water_level",
                        min_duration_s=60))
    worker = new_worker()
    with psycopg.connect(postgres.dsn) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(hashtext('huaico-hub-engine'))")
        assert worker.tick(T0) is False  # the worker tries again at its next turn
    assert worker.tick(T0) is True


def test_a_worker_rebuilds_only_what_another_moved(hub):
    add_device, add_rule, new_worker, rows = hub
    calm, busy, other = add_device("calm"), add_device("busy"), add_device("other")
    # 10-minute rain with a level every 0.5 mm, and the mean of the site's gauges.
    add_rule(rules.Rule("lluvia", "accumulation", {"advisory": 0.5, "watch": 1.0,
                                                   "warning": 1.5, "emergency": 2.0},
                        channel="rain", window_s=600))
    add_rule(rules.Rule("cuenca", "basin-mean", {"watch": 1.0}, site="cuenca", channel="rain",
                        window_s=600, params={"k": 3}))
    a, b = new_worker(), new_worker()
    a.store(calm, 1, T0, [(RAIN, 0, 0, 5, 0)])
    a.store(busy, 1, T0 + 1, [(RAIN, 0, 0, 5, 0)])
    a.store(other, 1, T0 + 2, [(RAIN, 0, 0, 5, 0)])
    kept = a.tracker("lluvia", calm["id"])
    # b moves busy's window, and the basin's value (0.67 mm) but not its
    # state: only busy is marked as changed.
    b.store(busy, 2, T0 + 3, [(RAIN, 0, 0, 5, 0)])
    a.store(busy, 3, T0 + 4, [(RAIN, 0, 0, 5, 0)])
    a.store(calm, 2, T0 + 5, [(RAIN, 0, 0, 5, 0)])
    # calm's window was a's own all along: kept, not read back.
    assert a.tracker("lluvia", calm["id"]) is kept
    # busy's was moved by b: read back with b's frame in it (1.5 mm, not 1.0),
    # as is the basin busy is a gauge of: (1.0 + 1.5 + 0.5) / 3, not 0.83.
    assert rows("SELECT device_id, level FROM alert_state s JOIN rules r ON r.id = s.rule_id "
                "WHERE r.name = 'lluvia' ORDER BY device_id") == sorted(
        [(calm["id"], "watch"), (busy["id"], "warning"), (other["id"], "advisory")])
    assert rows("SELECT level, value FROM alert_state WHERE device_id = 'basin:cuenca' "
                "AND idx = 0") == [("watch", 1.0)]
