"""A gateway's SMS policies and SMS replies at the hub: each scenario runs
through a gateway's Dispatcher (its SQLite) and through the hub's
HubDispatcher (a real PostgreSQL), from the same huaico.toml, with the pty
modem emulator, and the two are compared: quiet hours hold an advisory at
night at both, the default rate limit holds the 13th SMS of an hour at both,
a reply "OK 1" acknowledges alert 1 at both and `alerts show` prints the
same at both. Then the hub's crash cases: a reply read again after its
delete failed is a repeat, and after kill -9 of the SMS-lock holder in the
middle of a send the next holder sends that SMS once more, marked, and
nothing after that. Then the sending both tiers share
(huaico.alerts.sms_send, sms_health): the same Spanish alert is one part
with the shift table, a permanent failure of a warning escalates at once, a
multipart SMS resumes at its failed part, a number's later SMS waits behind
its retried one (at a gateway also when the retry could not be stored), and
an absent modem holds SMS, tells operators on MQTT and sends when back.

One PostgreSQL server for the module, a database of its own per test."""
import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import psycopg
import pytest
from click.testing import CliRunner

from huaico import config as config_mod
from huaico.alerts import lifecycle as alerts, templates
from huaico.alerts.dispatch import Dispatcher
from huaico.alerts.policy import Policy
from huaico.cli.main import main
from huaico.hub import operator as hub_operator, rules as hub_rules, schema as hub_schema
from huaico.hub.dispatch import BATCH, HubDispatcher
from huaico.hub.rules_store import PgEngineStore
from huaico.rules import engine as rules
from huaico.sms.modem import Modem
from huaico.sms.modem_emulator import decode_submit
from huaico.store import db
from tests.fixtures import postgres as pg
from tests.fixtures.alerting import AlertDb, rule as make_rule
from tests.test_hub_rules_cli import HubSide

LEADER = "+51987654321"
T0 = int(time.time()) - 3 * 3600  # inside the partitions migrate() makes around now
CONFIG = """
[alerts]
timezone = "UTC"
coalesce_s = 0
%s
[sms]
backend = "modem"
port = "%s"

[[groups]]
name = "leaders"
language = "es"
numbers = ["%s"]
min_level = "advisory"
quiet_hours = "%s"
%s"""
_names = itertools.count()


@pytest.fixture(scope="module")
def server():
    started = pg.started()
    try:
        yield started
    finally:
        pg.discard(started)


@pytest.fixture
def city(server):
    """The DSN of a new, migrated hub database."""
    name = "hub%d" % next(_names)
    with psycopg.connect(server.dsn, autocommit=True) as conn:
        conn.execute("CREATE DATABASE %s" % name)
    dsn = server.dsn.replace("dbname=postgres", "dbname=" + name)
    with psycopg.connect(dsn) as conn:
        hub_schema.migrate(conn, now=T0)
    return dsn


class Sides:
    """A gateway's home and the hub's (both with the same huaico.toml), and
    each side's dispatcher on the one modem."""

    def __init__(self, tmp_path, dsn, modem, emulator, alerts_keys="", quiet="", groups=""):
        self.homes = []
        for name in ("gateway", "operator"):
            home = tmp_path / name
            home.mkdir()
            (home / "huaico.toml").write_text(CONFIG % (alerts_keys, emulator.path, LEADER,
                                                        quiet, groups))
            self.homes.append(home)
        self.config = config_mod.load(self.homes[0])
        self.dsn = dsn
        self.modem = modem
        self.edge = AlertDb(self.homes[0] / "huaico.db")
        self.gateway = Dispatcher(self.edge.database, self.config, sms=modem)
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.hub = self.hub_dispatcher("hub-1")

    def hub_dispatcher(self, worker_id):
        dispatcher = HubDispatcher(lambda: psycopg.connect(self.dsn), worker_id,
                                   sms=self.modem, config=self.config)
        dispatcher.take_locks(self.conn)
        assert dispatcher.holding == ["sms"]
        return dispatcher

    def queue(self, levels, now, body="msg %s"):
        """The same SMS rows, one a level, in each side's outbox."""
        with db.transaction(self.edge.database) as conn:
            for level in levels:
                alerts._insert(conn, None, None, "sms", LEADER, "leaders", level, "es",
                               body.replace("%s", level), 0, now)
        with self.conn.transaction():
            for level in levels:
                alerts._insert(PgEngineStore(self.conn), None, None, "sms", LEADER, "leaders",
                               level, "es", body.replace("%s", level), 0, now)

    def step(self, now):
        """(gateway's outcomes, hub's) of one pass each."""
        return self.gateway.step(now), self.hub.step(self.conn, now)

    def rows(self, sql):
        return (self.edge.rows(sql), [tuple(row) for row in self.conn.execute(sql).fetchall()])

    def close(self):
        self.edge.database.conn.close()
        self.conn.close()


@pytest.fixture
def sides(tmp_path, city, modem_emulator):
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    opened = []

    def make(**options):
        opened.append(Sides(tmp_path, city, modem, modem_emulator, **options))
        return opened[-1]
    try:
        yield make
    finally:
        for made in opened:
            made.close()
        modem.close()


STATES = "SELECT level, status, hold FROM outbox ORDER BY id"


def test_quiet_hours_hold_an_advisory_at_night_at_both(sides):
    both = sides(quiet="22:00-06:00")
    night = T0 - T0 % 86400 + 23 * 3600  # 23:00 UTC
    morning = night + 7 * 3600 + 60       # 06:01
    both.queue(["advisory", "watch", "warning", "advisory"], night)
    assert both.step(night) == ({"quiet": 2, "sent": 2},) * 2
    held = [("advisory", "pending", "quiet"), ("watch", "sent", ""), ("warning", "sent", ""),
            ("advisory", "pending", "quiet")]
    assert both.rows(STATES) == (held, held)
    assert both.step(night + 3600) == ({"quiet": 2},) * 2
    assert both.step(morning) == ({"sent": 2},) * 2
    assert both.rows("SELECT id FROM outbox ORDER BY sent, id") == ([(2,), (3,), (1,), (4,)],) * 2


@pytest.mark.timeout(60)
def test_a_warning_behind_a_batch_of_held_advisories_goes_at_both(sides):
    """The hub claims due rows BATCH at a time: held rows must not be
    claimed again in the same pass, or those behind them would wait."""
    both = sides(quiet="22:00-06:00")
    night = T0 - T0 % 86400 + 23 * 3600
    both.queue(["advisory"] * (BATCH + 1) + ["warning"], night)
    assert both.step(night) == ({"quiet": BATCH + 1, "sent": 1},) * 2


def test_the_default_rate_limit_holds_the_13th_sms_of_an_hour_at_both(sides, modem_emulator):
    both = sides()  # no rate_limit_per_hour: the default
    assert config_mod.DEFAULTS["alerts"]["rate_limit_per_hour"] == 12
    assert Policy(both.config).rate_limit == 12
    both.queue(["watch"] * 13 + ["warning"], T0)
    assert both.step(T0) == ({"sent": 13, "rate": 1},) * 2
    states = [("watch", "sent", "")] * 12 + [("watch", "pending", "rate"),
                                             ("warning", "sent", "")]
    assert both.rows(STATES) == (states, states)
    assert both.step(T0 + 3599) == ({"rate": 1},) * 2
    assert both.step(T0 + 3601) == ({"sent": 1},) * 2
    assert len(modem_emulator.sent) == 2 * 14


def raise_warning(both):
    """The same rule and reading at both tiers: warning alert 1, its SMS queued."""
    hub = HubSide(both.dsn)
    try:
        device = ("0a0b0c0d", "g1", "chosica")
        rule = make_rule(kind="above", channel="water_level", levels={"warning": 1.0})
        both.edge.add_rule(rule)
        with hub.conn.transaction():
            row = rule.to_row()
            row.update(created=0.0, updated=0.0)
            hub.conn.execute("INSERT INTO rules (%s) VALUES (%s)" % (
                ", ".join(row), ", ".join(["%s"] * len(row))), list(row.values()))
        both.edge.store(rules.RuleEngine(both.edge.database, both.config),
                        both.edge.add_device(*device), [(4, 0, T0, 1500, 0)], T0)
        hub.store(rules.RuleEngine(None, both.config), hub.add_device(*device),
                  [(4, 0, T0, 1500, 0)], T0)
    finally:
        hub.conn.close()
    assert both.rows("SELECT id, level, acked FROM alerts") == ([(1, "warning", None)],) * 2


def test_a_reply_ok_acknowledges_at_both_and_alerts_show_prints_it(sides, modem_emulator):
    both = sides()
    raise_warning(both)
    modem_emulator.deliver(LEADER, "OK 1")
    assert both.gateway.poll_incoming(T0 + 60) == [("acked", 1)]
    assert modem_emulator.inbox == {}
    modem_emulator.deliver(LEADER, "OK 1")
    assert both.hub.poll_incoming(both.conn, T0 + 60) == [("acked", 1)]
    assert modem_emulator.inbox == {}
    assert both.rows("SELECT acked, acked_by FROM alerts") == (
        [(T0 + 60, LEADER + " (leaders)")],) * 2
    shown = [CliRunner().invoke(main, ["alerts", "show", "1", "--home", str(home)] + hub)
             for home, hub in zip(both.homes, ([], ["--hub", both.dsn]))]
    for result in shown:
        assert result.exit_code == 0, (result.output, result.exception)
    assert 'reply "OK 1" from %s' % LEADER in shown[1].output
    assert shown[0].output == shown[1].output


def test_a_reply_read_again_after_a_failed_delete_is_a_repeat_at_the_hub(sides,
                                                                         modem_emulator):
    both = sides()
    both.queue(["warning"], T0)
    with both.conn.transaction():
        alert_id = PgEngineStore(both.conn)._add("alerts", {
            "rule_name": "r", "kind": "above", "place": "chosica", "level": "warning",
            "peak_level": "warning", "status": "active", "raised": T0})
    modem_emulator.deliver(LEADER, "OK %d" % alert_id)
    modem_emulator.fail_deletes(1)
    assert both.hub.poll_incoming(both.conn, T0 + 60) == [("acked", alert_id)]
    assert sorted(modem_emulator.inbox) == [1]  # the delete failed after the commit
    # The next holder, as after a kill -9 between the commit and the delete.
    both.conn.close()
    both.conn = psycopg.connect(both.dsn, autocommit=True)
    again = both.hub_dispatcher("hub-2")
    assert again.poll_incoming(both.conn, T0 + 120) == [("repeat", alert_id)]
    assert modem_emulator.inbox == {}
    assert both.conn.execute("SELECT number, text, action, alert_id FROM incoming").fetchall() \
        == [(LEADER, "OK %d" % alert_id, "acked", alert_id)]
    assert both.conn.execute("SELECT acked FROM alerts").fetchall() == [(T0 + 60,)]


_HOLDER = textwrap.dedent("""
    import sys, psycopg
    from huaico import config as config_mod
    from huaico.hub.dispatch import BATCH, HubDispatcher
    from huaico.sms.modem import Modem
    dsn, home, now = sys.argv[1:]
    config = config_mod.load(home)
    dispatcher = HubDispatcher(lambda: psycopg.connect(dsn), "hub-killed",
                               sms=Modem(config["sms"]["port"], send_timeout=300),
                               config=config)
    conn = psycopg.connect(dsn, autocommit=True)
    dispatcher.take_locks(conn)
    assert dispatcher.holding == ["sms"], dispatcher.holding
    dispatcher.step(conn, float(now))
""")


def test_kill_9_of_the_sms_lock_holder_mid_send_repeats_that_sms_once(sides, modem_emulator):
    both = sides()
    both.conn.close()  # the holder is the process below
    with psycopg.connect(both.dsn, autocommit=True) as conn, conn.transaction():
        alerts._insert(PgEngineStore(conn), None, None, "sms", LEADER, "leaders", "warning",
                       "es", "Alerta: nivel alto", 0, T0)
    modem_emulator.hang_sends(1)
    holder = subprocess.Popen([sys.executable, "-c", _HOLDER, both.dsn, str(both.homes[1]),
                               str(T0)], env=dict(os.environ, PYTHONPATH=os.getcwd()))
    try:
        deadline = time.monotonic() + 30
        # In flight (committed before the modem gets it) and its PDU taken
        # by the modem, which never answers: the holder waits in its send.
        with psycopg.connect(both.dsn, autocommit=True) as conn:
            while conn.execute("SELECT inflight FROM outbox").fetchone() != (1,) or \
                    modem_emulator._hang_sends:
                assert holder.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert modem_emulator.sent == []
    both.conn = psycopg.connect(both.dsn, autocommit=True)
    # The server ends the dead session, and its lock with it.
    deadline = time.monotonic() + 10
    while not both.conn.execute("SELECT pg_try_advisory_lock(hashtext("
                                "'huaico-hub-dispatch-sms'))").fetchone()[0]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    both.conn.execute("SELECT pg_advisory_unlock(hashtext('huaico-hub-dispatch-sms'))")
    successor = both.hub_dispatcher("hub-2")
    assert successor.step(both.conn, T0 + 10) == {"sent": 1}
    for later in (T0 + 20, T0 + 3600):
        assert successor.step(both.conn, later) == {}
    assert both.conn.execute("SELECT status, copies, inflight, sent_by FROM outbox").fetchall() \
        == [("sent", 2, 0, "hub-2")]
    assert [record["number"] for record in modem_emulator.sent] == [LEADER]
    assert decode_submit(modem_emulator.sent[0]["hex"])["text"] == templates.repeat(
        "es", "Alerta: nivel alto")


# Fits one part only with the Spanish single shift table (its accents cost
# two septets each); without it the text is UCS-2, 70 characters a part.
SPANISH = ("Huaico: nivel de alerta en la quebrada. Evacúe a zona segura, lejos del cauce; "
           "no cruce el río ni el puente. Atención a la sirena. %s")


def test_a_spanish_alert_with_the_shift_table_is_one_part_at_both(sides, modem_emulator):
    both = sides(groups='shift_table = "es"\n')
    both.queue(["warning"], T0, body=SPANISH)
    assert both.step(T0) == ({"sent": 1},) * 2
    assert [record["number"] for record in modem_emulator.sent] == [LEADER] * 2
    assert decode_submit(modem_emulator.sent[0]["hex"])["concat"] is None


CIVIL = """escalate_to = "civil"

[[groups]]
name = "civil"
language = "es"
numbers = ["+5114000000"]
min_level = "emergency"
"""


def test_a_permanent_failure_of_a_warning_escalates_at_once_at_both(sides, modem_emulator):
    both = sides(groups=CIVIL)
    raise_warning(both)
    outbox = "SELECT recipient, status, escalation FROM outbox WHERE transport = 'sms' " \
             "ORDER BY id"
    assert both.rows(outbox) == ([(LEADER, "pending", 0)],) * 2
    for step in (lambda: both.gateway.step(T0 + 1), lambda: both.hub.step(both.conn, T0 + 1)):
        modem_emulator.fail_sends(1)  # +CMS ERROR 1: unassigned number, not retryable
        assert step().get("failed") == 1
    escalated = [(LEADER, "failed", 0), ("+5114000000", "pending", 1)]
    assert both.rows(outbox) == (escalated, escalated)
    assert both.rows("SELECT escalation FROM alerts") == ([(1,)],) * 2
    assert both.step(T0 + 2)[1] == {"sent": 1}
    assert [record["number"] for record in modem_emulator.sent] == ["+5114000000"] * 2


def test_a_multipart_sms_whose_second_part_failed_resumes_there_at_both(sides,
                                                                        modem_emulator):
    both = sides()
    both.queue(["warning"], T0, body="Alerta " + "nivel alto en la quebrada, " * 10 + "%s")
    for step in (both.gateway.step, lambda now: both.hub.step(both.conn, now)):
        modem_emulator.fail_sends(38, after=1)  # part 2 refused once (retryable)
        assert step(T0) == {"retry": 1}
        assert step(T0 + 1000) == {"sent": 1}
    parts = [decode_submit(record["hex"])["concat"] for record in modem_emulator.sent]
    assert [part[2] for part in parts] == [1, 2, 1, 2]
    assert parts[0][0] == parts[1][0] and parts[2][0] == parts[3][0], "not joined"
    assert both.rows("SELECT status, parts FROM outbox") == ([("sent", None)],) * 2


def test_a_later_sms_to_the_same_number_waits_behind_a_retry_at_both(sides, modem_emulator):
    both = sides()
    both.queue(["watch", "advisory"], T0)
    for step, health in ((both.gateway.step, both.gateway.health),
                         (lambda now: both.hub.step(both.conn, now), both.hub.health)):
        modem_emulator.fail_sends(38)  # the first row's send fails (retryable)
        assert step(T0) == {"retry": 1}
        assert health.state(T0 + 1)[:2] == ("failing", 1)
        assert step(T0 + 1) == {}  # its retry is not due: the second waits behind it
        assert step(T0 + 1000) == {"sent": 2}
        assert health.state(T0 + 1000) == ("ok", None, None)
    texts = [decode_submit(record["hex"])["text"] for record in modem_emulator.sent]
    assert texts == ["msg watch", "msg advisory"] * 2


def test_a_retry_the_database_refused_still_holds_the_numbers_later_sms_at_a_gateway(
        sides, modem_emulator):
    """A gateway keeps a retry it could not commit in memory: the number's
    later SMS must wait behind it all the same."""
    both = sides()
    both.queue(["watch", "advisory"], T0)
    both.edge.database.conn.execute("PRAGMA busy_timeout=100")
    locker = sqlite3.connect(str(both.homes[0] / "huaico.db"), isolation_level=None)
    try:
        locker.execute("BEGIN IMMEDIATE")  # another writer holds the database
        modem_emulator.fail_sends(38)
        assert both.gateway.step(T0) == {"unrecorded": 1}
        assert modem_emulator.sent == []
    finally:
        locker.execute("COMMIT")
        locker.close()
    assert both.gateway.step(T0 + 1000) == {"retry": 1}  # the retry stored, now
    assert both.gateway.step(T0 + 2000) == {"sent": 2}
    assert [decode_submit(record["hex"])["text"] for record in modem_emulator.sent] == [
        "msg watch", "msg advisory"]


def test_an_absent_modem_holds_sms_tells_operators_and_sends_when_back_at_both(
        tmp_path, city, modem_emulator):
    """A USB modem that enumerates late: SMS wait with "sms_absent", operators
    are told on MQTT after [sms] alert_after_s (300 s by default) and again
    when it is back, and what waited goes then, at both tiers. The hub's
    worker gives the SMS lock up once operators are told, and takes it
    again when its modem is back."""
    link = tmp_path / "ttyUSB2"  # not there yet
    modem = Modem(str(link), command_timeout=2.0)
    both = Sides(tmp_path, city, modem, modem_emulator)
    try:
        both.config["mqtt"]["enabled"] = True  # the operators' notices go on MQTT

        def watch_and_step(now):
            both.gateway.watch_sms(now)
            both.hub.take_locks(both.conn)  # as the hub's run loop, before each pass
            if "sms" in both.hub.holding:
                both.hub.watch_sms(both.conn, now)
            return both.step(now)
        both.queue(["warning"], T0)
        assert watch_and_step(T0) == ({"sms_absent": 1},) * 2
        gateway, hub = watch_and_step(T0 + 300)
        assert (gateway, hub) == ({"sms_absent": 1, "no_mqtt": 1}, {})
        assert both.hub.holding == []  # handed over
        os.symlink(modem_emulator.path, link)  # udev made it
        deadline = time.monotonic() + 10
        while not modem.ensure_open():  # the modem's own backoff, 1 s at first
            assert time.monotonic() < deadline
            time.sleep(0.1)
        gateway, hub = watch_and_step(T0 + 400)
        assert (gateway, hub) == ({"sent": 1, "no_mqtt": 2}, {"sent": 1})
        states = [("sms", "sent", ""), ("mqtt", "pending", "no_mqtt"),
                  ("mqtt", "pending", "no_mqtt")]
        assert both.rows("SELECT transport, status, hold FROM outbox ORDER BY id") == (
            states, [(transport, status, "") for transport, status, _ in states])
        for bodies in both.rows("SELECT body FROM outbox WHERE transport = 'mqtt' ORDER BY id"):
            events = [json.loads(body) for body, in bodies]
            assert [event["event"] for event in events] == ["sms_delivery_failing",
                                                            "sms_delivery_restored"]
            assert events[0]["since"] == T0 and "absent" in events[0]["detail"]
    finally:
        both.close()
        modem.close()


def test_a_worker_whose_modem_is_away_hands_the_sms_lock_to_one_whose_modem_works(
        tmp_path, city, modem_emulator):
    """hub-1 holds the SMS lock with its modem unplugged: once operators are
    told (alert_after_s), it gives the lock up, hub-2 (its modem works) takes
    it and sends what waited, and hub-1 does not take it back while its
    modem is still away, even once nobody holds it."""
    link = tmp_path / "ttyUSB2"
    away = Modem(str(link), command_timeout=2.0)
    both = Sides(tmp_path, city, away, modem_emulator)
    working = Modem(modem_emulator.path, command_timeout=2.0)
    conn = psycopg.connect(city, autocommit=True)
    other = HubDispatcher(lambda: psycopg.connect(city), "hub-2", sms=working,
                          config=both.config)
    try:
        both.config["mqtt"]["enabled"] = True  # the operators' notice goes on MQTT
        both.queue(["warning"], T0)
        both.hub.watch_sms(both.conn, T0)
        assert both.hub.step(both.conn, T0) == {"sms_absent": 1}
        other.take_locks(conn)
        assert other.holding == []
        both.hub.watch_sms(both.conn, T0 + 299)
        assert both.hub.holding == ["sms"]
        both.hub.watch_sms(both.conn, T0 + 300)
        assert both.hub.holding == []
        other.take_locks(conn)
        assert other.holding == ["sms"]
        assert other.step(conn, T0 + 301) == {"sent": 1}
        assert [record["number"] for record in modem_emulator.sent] == [LEADER]
        conn.close()  # hub-2 ends: the server drops its lock
        both.hub.take_locks(both.conn)
        assert both.hub.holding == []
        os.symlink(modem_emulator.path, link)  # hub-1's modem is back
        deadline = time.monotonic() + 10
        while not away.ensure_open():  # the modem's own backoff, 1 s at first
            assert time.monotonic() < deadline
            time.sleep(0.1)
        both.hub.take_locks(both.conn)
        assert both.hub.holding == ["sms"]
        events = [json.loads(body)["event"] for body, in both.conn.execute(
            "SELECT body FROM outbox WHERE transport = 'mqtt' ORDER BY id").fetchall()]
        assert events == ["sms_delivery_failing"]
    finally:
        both.close()
        conn.close()
        away.close()
        working.close()


def test_a_permanent_failure_while_the_engine_lock_is_stuck_still_fails_the_row_at_the_hub(
        sides, modem_emulator, monkeypatch):
    """Escalating takes the engine's lock; a session stuck in its transaction
    holding it must not leave the row in flight (it would go again, marked
    as a repeat): the row fails, the timer escalates later."""
    both = sides(groups=CIVIL)
    raise_warning(both)
    monkeypatch.setattr(hub_operator, "LOCK_WAIT_S", 0.2)
    with psycopg.connect(both.dsn) as stuck:
        stuck.execute(hub_rules.LOCK)  # and left idle in its transaction
        modem_emulator.fail_sends(1)
        assert both.hub.step(both.conn, T0 + 1) == {"failed": 1}
    assert both.conn.execute("SELECT recipient, status, inflight FROM outbox "
                             "WHERE transport = 'sms' ORDER BY id").fetchall() == [
        (LEADER, "failed", 0)]
    assert both.hub.step(both.conn, T0 + 2) == {}
