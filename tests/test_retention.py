"""Retention on a real SQLite file: raw readings received more than raw_days
ago become hourly aggregates equal to what Python computes from the rows,
readings whose board clock lies (1970) but that arrived today stay raw, the
newest row is never removed, a second pass changes nothing, a late reading
for an aggregated hour merges into it; and `huaico run` does it at start-up."""
import os
import random
import socket
import subprocess
import time

from huaico import config as config_mod
from huaico.store import retention
from huaico.store.writer import Writer
from tests.test_run import CLI, WAIT

DAY = 86400
INSERT = ("INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, "
          "received, unsynced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


def _set_raw_days(home, days):
    path = home.path / "huaico.toml"
    path.write_text(path.read_text().replace("raw_days = 365", "raw_days = %d" % days))
    return config_mod.load(home.path)


def _rows(now, rng):
    """Three days of readings from two devices, two channels, one a minute;
    received in rowid order, as the one writer stores them, 2 s after."""
    rows = []
    for minute in range(3 * 24 * 60):
        at = int(now - 3 * DAY + minute * 60)
        for device in ("aaaa0001", "bbbb0002"):
            for channel in (1, 4):
                rows.append((device, minute, channel, 0, at, rng.randrange(-50, 5000), 0,
                             at + 2.0, 0))
    return rows


def _expected(rows, cutoff):
    hours = {}
    for device, _, channel, idx, at, value, _, received, _ in rows:
        if received >= cutoff:
            continue
        key = (device, channel, idx, at // 3600 * 3600)
        n, total, low, high = hours.get(key, (0, 0, value, value))
        hours[key] = (n + 1, total + value, min(low, value), max(high, value))
    return hours


def _hourly(database):
    return {(r["device_id"], r["channel"], r["idx"], r["hour"]):
            (r["n"], r["total"], r["minimum"], r["maximum"])
            for r in retention.hourly(database)}


def test_old_readings_become_exact_hourly_aggregates(gateway_home):
    config = _set_raw_days(gateway_home, 1)
    now = time.time()
    rows = _rows(now, random.Random(7))
    # A board whose clock was never set: stamped 1970, received just now.
    unsynced = [("cccc0003", n, 1, 0, 100 + n, n, 0, now - 60 + n, 1) for n in range(5)]
    conn = gateway_home.database.conn
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows + unsynced)
    conn.execute("COMMIT")
    cutoff = now - DAY
    done = retention.apply(gateway_home.database, config, now)
    old = [row for row in rows if row[7] < cutoff]
    assert done["readings_removed"] == len(old) > 0
    assert _hourly(gateway_home.database) == _expected(rows, cutoff)
    left = conn.execute("SELECT min(received), count(*) FROM readings WHERE unsynced = 0"
                        ).fetchone()
    assert left[0] >= cutoff and left[1] == len(rows) - len(old)
    assert conn.execute("SELECT count(*) FROM readings WHERE device_id = 'cccc0003'"
                        ).fetchone()[0] == 5
    # Idempotent: nothing more to do.
    again = retention.apply(gateway_home.database, config, now)
    assert again["readings_removed"] == 0 and again["hours_written"] == 0
    # A board's backlog: a reading stamped in an hour already folded, received
    # now; once it is old itself, it merges into that hour's row.
    key = sorted(_expected(rows, cutoff))[0]
    before = _hourly(gateway_home.database)[key]
    conn.execute(INSERT, [key[0], 99999, key[1], key[2], key[3] + 10, 100000, 0, now, 0])
    conn.execute(INSERT, [key[0], 99998, key[1], key[2], int(now), 1, 0, now + 1, 0])
    retention.apply(gateway_home.database, config, now + 1.5 * DAY)
    assert _hourly(gateway_home.database)[key] == (before[0] + 1, before[1] + 100000,
                                                  before[2], 100000)


def test_the_newest_row_is_never_removed(gateway_home):
    """SQLite reuses max(rowid)+1; the SenML feed's cursor must not see a rowid twice."""
    config = _set_raw_days(gateway_home, 1)
    now = time.time()
    conn = gateway_home.database.conn
    conn.executemany(INSERT, [("aaaa0001", n, 1, 0, 0, n, 0, now - 5 * DAY, 0) for n in range(3)])
    done = retention.apply(gateway_home.database, config, now)
    assert done["readings_removed"] == 2
    assert conn.execute("SELECT seq FROM readings").fetchall() == [(2,)]


def test_raw_days_zero_keeps_everything(gateway_home):
    config = _set_raw_days(gateway_home, 0)
    gateway_home.database.conn.execute(INSERT, ["aaaa0001", 1, 1, 0, 0, 1, 0, 1.0, 0])
    gateway_home.database.conn.execute(INSERT, ["aaaa0001", 2, 1, 0, 0, 1, 0, 2.0, 0])
    assert retention.apply(gateway_home.database, config)["readings_removed"] == 0


def test_run_applies_retention_at_start_and_logs_it(gateway_home):
    _set_raw_days(gateway_home, 2)
    now = time.time()
    hour = (int(now) - 10 * DAY) // 3600 * 3600
    conn = gateway_home.database.conn
    conn.execute("BEGIN")
    conn.executemany(INSERT, [("aaaa0001", n, 1, 0, hour + n * 60, 2, 0, hour + n * 60, 0)
                              for n in range(120)])
    conn.execute(INSERT, ["aaaa0001", 999, 1, 0, int(now), 2, 0, now, 0])
    conn.execute("COMMIT")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, HUAICO_HOME=str(gateway_home.path), PYTHONPATH=os.getcwd())
    done = subprocess.run(CLI + ["run", "--udp", "127.0.0.1:%d" % port, "--for", "1.5"],
                          env=env, capture_output=True, text=True, timeout=WAIT)
    assert done.returncode == 0, done.stderr
    assert "event=retention hours_written=2 readings_removed=120" in done.stderr, done.stderr
    assert conn.execute("SELECT count(*) FROM readings").fetchone()[0] == 1
    assert conn.execute("SELECT sum(n), sum(total) FROM readings_hourly").fetchone() == (120, 240)


def test_a_stop_ends_the_pass_between_chunks(gateway_home):
    config = _set_raw_days(gateway_home, 1)
    now = time.time()
    rows = [("aaaa0001", n, 1, 0, 0, n, 0, now - 5 * DAY + n, 0)
            for n in range(retention.CHUNK_ROWS * 2 + 10)]
    conn = gateway_home.database.conn
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")

    class StopAfterFirstChunk:
        """An Event whose is_set() turns true once one chunk is done."""
        checks = 0

        def is_set(self):
            self.checks += 1
            return self.checks > 1

    done = retention.apply(gateway_home.database, config, now, StopAfterFirstChunk())
    assert done["readings_removed"] == retention.CHUNK_ROWS
    done = retention.apply(gateway_home.database, config, now)
    assert done["readings_removed"] == len(rows) - retention.CHUNK_ROWS - 1


def test_readings_hourly_shows_the_aggregates_in_units(gateway_home):
    import json as json_mod

    from click.testing import CliRunner

    from huaico.cli.main import main

    config = _set_raw_days(gateway_home, 1)
    board = gateway_home.add("pluvio")
    hour = (int(time.time()) - 3 * DAY) // 3600 * 3600
    # Rain in 0.1 mm: 12 readings of 0.5..6.0 mm; water level in mm.
    rows = [(board.row["id"], n, 1, 0, hour + n * 300, 5 * (n + 1), 0, hour + n * 300, 0)
            for n in range(12)]
    rows += [(board.row["id"], n, 4, 0, hour + n * 300, 1500 + n, 0, hour + n * 300 + 1, 0)
             for n in range(12)]
    rows.sort(key=lambda row: row[7])
    rows.append((board.row["id"], 99, 1, 0, int(time.time()), 1, 0, time.time(), 0))
    conn = gateway_home.database.conn
    conn.execute("BEGIN")
    conn.executemany(INSERT, rows)
    conn.execute("COMMIT")
    # The writer's first commit writes the device's row up to these readings
    # (huaico.store.db m010): until then retention keeps them.
    now = int(time.time())
    assert Writer(gateway_home.database, clock=time.time).process(
        [("test", board.frame(seq=100, time=now), now, None)]) == ["stored"]
    retention.apply(gateway_home.database, config)
    result = CliRunner().invoke(main, ["readings", "--hourly", "--device", "pluvio",
                                       "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    shown = json_mod.loads(result.stdout)
    rain = [item for item in shown if item["channel"] == "rain"][0]
    level = [item for item in shown if item["channel"] == "water_level"][0]
    assert (rain["n"], rain["total"], rain["min"], rain["max"], rain["unit"]) == \
        (12, 39.0, 0.5, 6.0, "mm")
    assert (level["n"], level["mean"], level["min"], level["max"]) == (12, 1.5055, 1.5, 1.511)
    assert rain["device"] == "pluvio" and rain["hour"].startswith(
        time.strftime("%Y-%m-%dT", time.localtime(hour)))
    table = CliRunner().invoke(main, ["readings", "--hourly", "--limit", "1"],
                               catch_exceptions=False)
    assert "(showing the newest 1 hours; more match" in table.stderr


def test_readings_a_device_row_does_not_show_yet_are_kept(gateway_home):
    """The readings after a device's row (huaico.store.db m010) are where
    devices_live reads its last_seen and battery from: a gateway started
    after being down longer than raw_days keeps them until the writer has
    written the rows; then they go like any other."""
    from huaico.devices import registry as devices

    config = _set_raw_days(gateway_home, 1)
    now = time.time()
    board = gateway_home.add("rg1")
    writer = Writer(gateway_home.database, clock=lambda: now - 5 * DAY)
    for _ in range(3):
        assert writer.process([("test", board.frame([(19, 0, 0, 3700 + board.seq, 0)]),
                                now - 5 * DAY + board.seq, None)]) == ["stored"]
    shown = devices.get(gateway_home.open(), "rg1")
    assert retention.apply(gateway_home.database, config, now)["readings_removed"] == 1
    assert devices.get(gateway_home.open(), "rg1") == shown
    writer = Writer(gateway_home.open(), clock=lambda: now)  # started again: its first
    assert writer.process([("test", board.frame(), now, None)]) == ["stored"]  # commit folds
    assert retention.apply(gateway_home.database, config, now)["readings_removed"] == 2
    assert devices.get(gateway_home.open(), "rg1")["battery_mv"] == 3702
