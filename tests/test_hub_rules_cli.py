"""`huaico rules ...` and `huaico alerts ...` with --hub: every command runs at
a gateway (its SQLite) and at the hub (a real PostgreSQL) on the same data,
and prints the same.

The same data: the same devices, the rules added by the same commands, and
the same readings through the same rule engine (RuleEngine over each
store, as a gateway's writer and a hub worker run it), so both sides hold
the same alerts, states and messages with the same ids. The hub's side
runs from a data directory with a huaico.toml and no database: a command
that read the gateway's SQLite instead of the hub would fail there.

One server for the module; the commands run in order, as an operator's
session would.
"""
import json
import re
import shutil
import threading
import time

import psycopg
import pytest
from click.testing import CliRunner

from huaico.cli.main import main
from huaico.hub import schema as hub_schema
from huaico.hub.rules_store import PgEngineStore
from huaico.rules import engine as rules
from tests.fixtures import postgres as pg
from tests.fixtures.alerting import CONFIG, AlertDb

T0 = int(time.time()) - 6 * 3600  # inside the partitions hub init makes around now
RAIN = 1
LEVEL = 4
DEVICES = [("0a000001", "pluvio-alto", "Chosica"), ("0a000002", "pluvio-bajo", "Chosica"),
           ("0a000003", "rio-rimac", "Ñaña"), ("0a000004", "Quebrada-4", "Ñaña")]


class HubSide:
    """The hub's database fed as a worker feeds it: readings inserted, then the
    engine over PgEngineStore in the same transaction."""

    def __init__(self, dsn):
        self.conn = psycopg.connect(dsn)
        self.seq = {}

    def add_device(self, device_id, name, site):
        with self.conn.transaction():
            self.conn.execute("INSERT INTO devices (id, name, site, key, created) "
                              "VALUES (%s, %s, %s, '00', 0)", [device_id, name, site])
        return {"id": device_id, "name": name, "site": site}

    def store(self, engine, device, rows, now):
        seq = self.seq[device["id"]] = self.seq.get(device["id"], 0) + 1
        with self.conn.transaction():
            cur = self.conn.cursor()
            cur.executemany(
                "INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, "
                "received, unsynced) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, false)",
                [(device["id"], seq) + tuple(row) + (now,) for row in rows])
            cur.execute("UPDATE devices SET last_seen = %s WHERE id = %s", [now, device["id"]])
            engine.on_readings(PgEngineStore(cur), device, rows, now)

    def rows(self, sql, args=()):
        with self.conn.transaction():
            return self.conn.execute(sql, args).fetchall()


def _invoke(home, *args):
    return CliRunner().invoke(main, list(args) + ["--home", str(home)])


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    """(gateway home, AlertDb, hub home, HubSide, dsn, engines) with the same
    devices and an empty huaico.toml (spool SMS) on both sides."""
    server = pg.started()
    try:
        # A collation such as production servers have (en_US: "alpha" before
        # "Zeta"), not the byte order of the cluster's C.UTF-8 default.
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE city TEMPLATE template0 LOCALE_PROVIDER icu "
                         "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
        dsn = server.dsn.replace("dbname=postgres", "dbname=city")
        with psycopg.connect(dsn) as conn:
            hub_schema.migrate(conn)
        edge_home = tmp_path_factory.mktemp("gateway")
        assert _invoke(edge_home, "init").exit_code == 0
        config_path = edge_home / "huaico.toml"
        config_path.write_text(config_path.read_text().replace(
            'backend = "none"', 'backend = "spool"').replace(
            'spool_dir = ""', 'spool_dir = "spool"').replace(
            "numbers = []", 'numbers = ["+51987654321", "+51911111111"]'))
        hub_home = tmp_path_factory.mktemp("operator")
        shutil.copy(config_path, hub_home / "huaico.toml")
        edge, hub = AlertDb(edge_home / "huaico.db"), HubSide(dsn)
        devices = [(edge.add_device(*d), hub.add_device(*d)) for d in DEVICES]
        yield {"edge_home": edge_home, "edge": edge, "hub_home": hub_home, "hub": hub,
               "dsn": dsn, "devices": devices}
        edge.database.conn.close()
        hub.conn.close()
    finally:
        pg.discard(server)


def _both(sides, *args, code=0):
    """(gateway's output, hub's output) of one command, both exiting with `code`."""
    edge = _invoke(sides["edge_home"], *args)
    hub = _invoke(sides["hub_home"], *args, "--hub", sides["dsn"])
    for result in (edge, hub):
        assert result.exit_code == code, (args, result.output, result.exception)
        assert "Traceback" not in result.output
    return edge.output, hub.output


def _same(sides, *args, code=0):
    edge, hub = _both(sides, *args, code=code)
    assert edge == hub, args
    return hub


def _feed(sides, steps):
    """The same readings, frame by frame, through an engine on each side."""
    engines = rules.RuleEngine(sides["edge"].database, CONFIG), rules.RuleEngine(None, CONFIG)
    for device_at, rows, now in steps:
        edge_device, hub_device = sides["devices"][device_at]
        sides["edge"].store(engines[0], edge_device, rows, now)
        sides["hub"].store(engines[1], hub_device, rows, now)


# "created" and "updated" of a rule are the moment each side's `rules add`
# or `rules edit` ran: the one thing that differs by right.
_RULE_TIMES = re.compile(r'"(created|updated)": [0-9.e+]+')


def test_rules_and_alerts_read_and_write_the_same_at_the_hub(sides):
    added = _same(sides, "rules", "add", "rain-1h", "--site", "chosica", "--channel", "rain",
                  "--kind", "accumulation", "--window", "1h",
                  "--levels", "watch=2,warning=4,emergency=6", "--hysteresis", "0.5",
                  "--min-duration", "0")
    assert "accumulation rain of site Chosica over 3600s" in added
    # Names that a locale's collation sorts otherwise than bytes do.
    _same(sides, "rules", "add", "Zeta-rio", "--device", "rio-rimac", "--channel",
          "water_level", "--kind", "above", "--levels", "watch=1,warning=2")
    _same(sides, "rules", "add", "alto-quiet", "--site", "chosica", "--kind", "silent",
          "--levels", "watch=30m")
    _same(sides, "rules", "edit", "alto-quiet", "--disable")
    _same(sides, "rules", "add", "rain-1h", "--kind", "above", "--channel", "rain",
          "--site", "chosica", "--levels", "watch=1", code=1)
    _same(sides, "rules", "add", "x", "--device", "pluvio-alta", "--kind", "above",
          "--channel", "rain", "--levels", "watch=1", code=1)
    _same(sides, "rules", "edit", "nothing", "--disable", code=1)
    listed = _same(sides, "rules", "list")
    assert [line.split()[0] for line in listed.splitlines()] == [
        "Zeta-rio", "alto-quiet", "rain-1h"]
    edge, hub = _both(sides, "device", "list")
    names = [line.split()[0] for line in hub.splitlines()[1:]]
    assert names == [line.split()[0] for line in edge.splitlines()[1:]]
    assert names == ["Quebrada-4", "pluvio-alto", "pluvio-bajo", "rio-rimac"]
    edge, hub = _both(sides, "rules", "list", "--json")
    assert _RULE_TIMES.sub("", edge) == _RULE_TIMES.sub("", hub)

    # pluvio-alto raises, then pluvio-bajo, which clears; pluvio-alto climbs
    # last (its alert_state row is the newest version at the hub).
    _feed(sides, [
        (0, [(RAIN, 0, T0, 30, 0)], T0),
        (1, [(RAIN, 0, T0 + 60, 25, 0)], T0 + 60),
        (2, [(LEVEL, 0, T0 + 130, 1500, 0)], T0 + 130),
        (1, [(RAIN, 0, T0 + 4000, 0, 0)], T0 + 4000),
        (0, [(RAIN, 0, T0 + 3500, 20, 0)], T0 + 4010),
    ])
    edge, hub = _both(sides, "rules", "show", "rain-1h")
    assert _RULE_TIMES.sub("", edge) == _RULE_TIMES.sub("", hub)
    assert "pluvio-alto: warning value=5.0" in hub and "pluvio-bajo: normal" in hub
    _same(sides, "rules", "show", "Zeta-rio")

    listed = _same(sides, "alerts", "list")
    assert len(listed.splitlines()) == 2 and "Zeta-rio=1.5 m" in listed
    cleared = _same(sides, "alerts", "list", "--all")
    assert "cleared" in cleared and len(cleared.splitlines()) == 3
    assert json.loads(_same(sides, "alerts", "list", "--all", "--json"))[0]["id"] == 3
    shown = _same(sides, "alerts", "show", "1")
    assert "event huaico.1.1 Alert watch" in shown and "message 1 sms +51987654321" in shown
    assert "\n    VIGILANCIA Chosica: 3 mm de lluvia en 1 hora" in shown  # the text sent
    _same(sides, "alerts", "show", "2")
    _same(sides, "alerts", "show", "9", code=1)
    assert "not in the range" in _same(sides, "alerts", "ack", str(2 ** 64), code=2)

    assert _same(sides, "alerts", "ack", "1", "--by", "Rosa") == "acknowledged 1\n"
    assert "already" in _same(sides, "alerts", "ack", "1")
    edge, hub = _both(sides, "alerts", "show", "1")
    # The moment of the acknowledgement is each side's own.
    acked = re.compile(r"^acked .*$", re.M)
    assert acked.sub("acked _", edge) == acked.sub("acked _", hub)
    assert "acked_by    Rosa" in hub
    assert "acked by Rosa" in _same(sides, "alerts", "list")

    since = time.strftime("%Y-%m-%d", time.localtime(T0 - 86400))
    replayed = _same(sides, "rules", "replay", "--since", since)
    assert "raise  watch" in replayed and "event(s)" in replayed
    _same(sides, "rules", "replay", "rain-1h", "--since", since, "--json")
    # The plot reads the readings through the hub's read interface too; the
    # two sides write to files of their own.
    pngs = [sides[side + "_home"] / "replay.png" for side in ("edge", "hub")]
    edge = _invoke(sides["edge_home"], "rules", "replay", "rain-1h", "--since", since,
                   "--png", str(pngs[0]))
    hub = _invoke(sides["hub_home"], "rules", "replay", "rain-1h", "--since", since,
                  "--png", str(pngs[1]), "--hub", sides["dsn"])
    assert edge.exit_code == hub.exit_code == 0, hub.output
    assert edge.output.replace(str(pngs[0]), "PNG") == hub.output.replace(str(pngs[1]), "PNG")
    assert pngs[0].read_bytes() == pngs[1].read_bytes(), hub.output

    refused = _same(sides, "rules", "remove", "rain-1h", code=1)
    assert "active alert(s) from rain-1h" in refused
    _same(sides, "rules", "remove", "rain-1h", "--force")
    _same(sides, "alerts", "list", "--all")
    _same(sides, "rules", "list")
    # No worker has told the hub its config: this huaico.toml's groups, and
    # the first line says so.
    edge, queued = _both(sides, "alerts", "test", "leaders")
    assert queued == "groups and [sms] of %s: no hub worker has told the hub its config " \
        "(`huaico hub run --config` does)\n%s" % (sides["hub_home"] / "huaico.toml", edge)
    assert "queued 2 test message(s) to leaders" in queued
    assert sides["hub"].rows("SELECT recipient, level FROM outbox WHERE alert_id IS NULL "
                             "ORDER BY id") == [("+51987654321", "test"), ("+51911111111", "test")]
    assert sides["hub"].rows("SELECT status FROM alerts WHERE rule_name = 'rain-1h' "
                             "ORDER BY id") == [("cancelled",), ("cleared",)]
    assert sides["hub"].rows("SELECT count(*) FROM alert_state") == [(1,)]


def test_alerts_test_at_the_hub_follows_the_workers_config(sides):
    """Workers started with a config tell the hub their groups and SMS
    backend; `alerts test --hub` queues by those (the worker with an SMS
    backend: it is the one that sends), whatever the local huaico.toml says."""
    from huaico import config as config_mod
    from huaico.hub.worker import register
    modem = config_mod.from_text('[sms]\nbackend = "spool"\nspool_dir = "s"\n'
                                 '[[groups]]\nname = "vecinos"\nnumbers = ["+51944444444"]\n',
                                 sides["hub_home"])
    plain = config_mod.from_text('[[groups]]\nname = "otros"\nnumbers = ["+51955555555"]\n',
                                 sides["hub_home"])
    with psycopg.connect(sides["dsn"]) as conn:
        register(conn, "hub-1", modem, 1000.0)
        register(conn, "hub-2", plain, 2000.0)  # started later, but sends no SMS
    before = sides["hub"].rows("SELECT max(id) FROM outbox")[0][0]
    result = _invoke(sides["hub_home"], "alerts", "test", "vecinos", "--hub", sides["dsn"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[0].startswith(
        "groups and [sms] of hub worker hub-1 on ")
    assert sides["hub"].rows("SELECT recipient, grp FROM outbox WHERE id > %s",
                             [before]) == [("+51944444444", "vecinos")]
    # The local huaico.toml's group is not the workers'.
    refused = _invoke(sides["hub_home"], "alerts", "test", "leaders", "--hub", sides["dsn"])
    assert refused.exit_code == 1 and "no group 'leaders' (have vecinos)" in refused.output
    with psycopg.connect(sides["dsn"]) as conn:
        conn.execute("DELETE FROM hub_workers")


def test_a_write_at_the_hub_waits_for_the_engine(sides):
    """A worker's evaluation holds the engine's lock until it commits; the
    operator's write waits for it rather than land in its middle."""
    _same(sides, "rules", "add", "wait", "--device", "rio-rimac", "--channel", "water_level",
          "--kind", "above", "--levels", "watch=9000")
    done = {}
    # pg_stat_activity is read from a connection of its own: inside a
    # transaction it is a snapshot taken at its first read.
    with psycopg.connect(sides["dsn"]) as worker, \
            psycopg.connect(sides["dsn"], autocommit=True) as watcher:
        with worker.transaction():
            worker.execute("SELECT pg_advisory_xact_lock(hashtext('huaico-hub-engine'))")
            command = threading.Thread(target=lambda: done.setdefault("result", _invoke(
                sides["hub_home"], "rules", "remove", "wait", "--hub", sides["dsn"])))
            command.start()
            deadline = time.monotonic() + 30
            while not watcher.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND wait_event = 'advisory'").fetchone()[0]:
                assert time.monotonic() < deadline and command.is_alive(), done
                time.sleep(0.02)
            assert worker.execute("SELECT count(*) FROM rules WHERE name = 'wait'"
                                  ).fetchone()[0] == 1
        command.join(30)
    assert done["result"].exit_code == 0 and done["result"].output == "removed wait\n"
    assert sides["hub"].rows("SELECT count(*) FROM rules WHERE name = 'wait'") == [(0,)]


def test_a_write_at_the_hub_waits_a_bounded_time_and_says_who_holds_the_engine(
        sides, monkeypatch):
    """A session that keeps the engine's lock (here a worker wedged in its
    transaction) makes the write give up after LOCK_WAIT_S, with one line
    naming it; nothing is written."""
    from huaico.hub import operator
    monkeypatch.setattr(operator, "LOCK_WAIT_S", 0.5)
    _same(sides, "rules", "add", "stuck", "--device", "rio-rimac", "--channel", "water_level",
          "--kind", "above", "--levels", "watch=9000")
    with psycopg.connect(sides["dsn"], application_name="huaico-hub hub-7") as worker:
        with worker.transaction():
            pid = worker.execute("SELECT pg_backend_pid()").fetchone()[0]
            worker.execute("SELECT pg_advisory_xact_lock(hashtext('huaico-hub-engine'))")
            done = {}
            command = threading.Thread(target=lambda: done.setdefault("result", _invoke(
                sides["hub_home"], "rules", "remove", "stuck", "--hub", sides["dsn"])))
            started = time.monotonic()
            command.start()
            command.join(10)  # not released by the test: the command must give up by itself
            waited = time.monotonic() - started
            assert not command.is_alive(), "the write still waits for the engine's lock"
    result = done["result"]
    assert result.exit_code == 1 and result.output.count("\n") == 1, result.output
    assert result.output.startswith("Error: the hub's rule engine is busy: its lock was not "
                                    "free within 0.5 s; held by pid %d (huaico-hub hub-7 at "
                                    "127.0.0.1, idle in transaction for " % pid), result.output
    assert "SELECT pg_terminate_backend(%d)" % pid in result.output
    assert 0.5 <= waited < 5
    assert sides["hub"].rows("SELECT count(*) FROM rules WHERE name = 'stuck'") == [(1,)]
    # Free again: the write goes through, and waits no longer than it must.
    assert _invoke(sides["hub_home"], "rules", "remove", "stuck", "--hub",
                   sides["dsn"]).output == "removed stuck\n"


def test_what_the_hub_cannot_answer(sides, tmp_path):
    home = sides["hub_home"]
    result = _invoke(home, "alerts", "list", "--hub", "host=127.0.0.1 port=1 dbname=x user=x")
    assert result.exit_code == 1
    assert result.output.startswith("Error: cannot connect to the hub's PostgreSQL")
    assert result.output.count("\n") == 1 and "Connection refused" in result.output
    with psycopg.connect(sides["dsn"], autocommit=True) as conn:
        conn.execute("CREATE DATABASE empty")
    empty = sides["dsn"].replace("dbname=city", "dbname=empty")
    result = _invoke(home, "rules", "list", "--hub", empty)
    assert result.exit_code == 1
    assert result.output == ("Error: the hub's database has no huaico schema: "
                             "run `huaico hub init`\n")
    # Tables of another shape (a half-done migration, a foreign schema):
    # the server's error in one line.
    with psycopg.connect(empty, autocommit=True) as conn:
        for table in ("readings", "rules", "alerts", "outbox"):
            conn.execute("CREATE TABLE %s (x integer)" % table)
    result = _invoke(home, "alerts", "list", "--hub", empty)
    assert result.exit_code == 1
    assert result.output == 'Error: hub database error: column "id" does not exist\n'
    (tmp_path / "huaico.toml").write_text('[hub]\ndsn = "%s"\n' % sides["dsn"])
    named = _invoke(tmp_path, "rules", "list")  # [hub] dsn as --hub
    assert named.exit_code == 0 and named.output == _invoke(home, "rules", "list", "--hub",
                                                            sides["dsn"]).output
    for args in (("rules", "list"), ("alerts", "ack")):
        assert "--hub DSN" in _invoke(home, *args, "--help").output
