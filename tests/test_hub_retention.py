"""Retention at the hub on a real PostgreSQL: whole months of readings and
raw frames older than the kept time are dropped, the month in progress and
newer ones stay, frames from unset clocks age by their receive time, and a
late backlog into a dropped month is stored and gets its month back."""
import calendar
import json
import time

import psycopg
from click.testing import CliRunner

from huaico.cli import main as cli
from huaico.hub import (devices as hub_devices, retention as hub_retention, schema as hub_schema,
                        store as hub_store, upstream)
from huaico.protocol import frame as wire
from huaico.protocol.cose import MacKey

from tests.fixtures.postgres import HUB_NOW as NOW
DAY = 86400


def _at(year, month, day):
    return calendar.timegm((year, month, day, 12, 0, 0))


def _store(conn, device, seq, time_s, received, flags=0):
    raw = wire.encode_frame(bytes.fromhex(device["id"]), MacKey(bytes.fromhex(device["key"])),
                            seq, time_s, flags, [(1, 0, 0, 4, 0), (19, 0, 0, 3900, 0)],
                            epoch=0)
    message = ("huaico-city/gw-a/frames",
               upstream.envelope("gw-a", seq, received, "udp:127.0.0.1", None, raw))
    outcomes, _ = hub_store.store_batch(conn, hub_store.Keys(), [message], now=received)
    assert outcomes == ["stored"]


def _rows(conn, sql):
    with conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetchall()


def _months(conn, table):
    return [name for name, _, _ in hub_schema.months(conn.cursor(), table)]


def test_old_months_are_dropped_whole(hub_db):
    device = hub_devices.add(hub_db, "rain-01", "pico", "test site")
    _store(hub_db, device, 1, _at(2026, 1, 15), _at(2026, 1, 15))
    _store(hub_db, device, 2, _at(2026, 5, 25), _at(2026, 5, 25))
    _store(hub_db, device, 3, _at(2026, 11, 10), _at(2026, 11, 10))
    # Unset clocks: base time near 1970, one received long ago, one lately.
    _store(hub_db, device, 4, 1000, NOW - 250 * DAY, flags=wire.FLAG_CLOCK_UNSYNCED)
    _store(hub_db, device, 5, 2000, NOW - 5 * DAY, flags=wire.FLAG_CLOCK_UNSYNCED)
    assert _rows(hub_db, "SELECT seq FROM frames_default ORDER BY seq") == [(4,), (5,)]

    done = hub_retention.apply(hub_db, 180, now=NOW)  # cutoff 2026-05-22

    assert not done["skipped"]
    for table in ("readings", "frames"):
        months = _months(hub_db, table)
        assert months[0] == "%s_y2026m05" % table  # ends after the cutoff: kept whole
        assert "%s_y2026m04" % table in done["dropped"]
        assert "%s_y2025m11" % table in done["dropped"]
    assert _rows(hub_db, "SELECT seq FROM frames ORDER BY seq") == [(2,), (3,), (5,)]
    assert _rows(hub_db, "SELECT DISTINCT seq FROM readings ORDER BY seq") == [(2,), (3,), (5,)]
    assert _rows(hub_db, "SELECT seq FROM heard ORDER BY seq") == [(2,), (3,), (5,)]
    assert done["deleted"]["frames_default"] == 1
    assert done["deleted"]["readings_default"] == 0  # unsynced readings take their received time
    assert hub_retention.apply(hub_db, 180, now=NOW)["dropped"] == []

    # A gateway's backlog from a dropped month is stored (DEFAULT partition)
    # and its month stays dropped.
    _store(hub_db, device, 6, _at(2026, 2, 3), NOW)
    hub_schema.migrate(hub_db, now=NOW)
    assert _rows(hub_db, "SELECT seq FROM frames_default ORDER BY seq") == [(5,), (6,)]
    assert _months(hub_db, "readings")[0] == "readings_y2026m05"
    # A board whose clock runs half a year ahead: DEFAULT partition, until
    # its month is made, which takes the rows over.
    _store(hub_db, device, 7, _at(2027, 5, 3), NOW)
    assert _rows(hub_db, "SELECT DISTINCT seq FROM readings_default ORDER BY 1") == [(6,), (7,)]
    hub_schema.migrate(hub_db, now=NOW + 120 * DAY)
    assert _rows(hub_db, "SELECT DISTINCT seq FROM readings_default") == [(6,)]
    assert _rows(hub_db, "SELECT count(*) FROM readings_y2027m05") == [(2,)]
    assert _rows(hub_db, "SELECT seq FROM frames_y2027m05") == [(7,)]


def test_one_pass_at_a_time(hub_db, postgres):
    with psycopg.connect(postgres.dsn) as other, other.transaction():
        other.execute("SELECT pg_advisory_xact_lock(hashtext('huaico-hub-retention'))")
        assert hub_retention.apply(hub_db, 180, now=NOW)["skipped"]
    assert not hub_retention.apply(hub_db, 180, now=NOW)["skipped"]


def test_retention_command(hub_db, postgres):
    runner = CliRunner()
    result = runner.invoke(cli.main, ["hub", "retention", "--dsn", postgres.dsn,
                                      "--keep-days", "10"])
    assert result.exit_code == 2 and "at least 31 days" in result.output
    result = runner.invoke(cli.main, ["hub", "retention", "--dsn", postgres.dsn,
                                      "--keep-days", "200", "--json"])
    assert result.exit_code == 0, result.output
    done = json.loads(result.stdout)
    # Partitions reach 12 months back from NOW: the oldest are past 200 days.
    assert "readings_y2025m11" in done["dropped"] and "frames_y2025m11" in done["dropped"]
    assert not any(name.endswith("y2026m11") for name in done["dropped"])
    result = runner.invoke(cli.main, ["hub", "run", "--dsn", postgres.dsn, "--worker-id", "w",
                                      "--keep-days", "7"])
    assert result.exit_code == 2 and "at least 31 days" in result.output


def test_workers_apply_retention_while_they_run(city):
    """`hub run --keep-days`: a running worker drops the months past it.
    Partitions reach 12 months back; with 200 days kept, the oldest go."""
    city.start_postgres()
    city.start_central()
    old = city.query("SELECT count(*) FROM pg_class WHERE relname LIKE 'readings_y%%'")[0][0]
    worker = city.add_worker("hub-1", ["--keep-days", "200"])
    deadline = time.monotonic() + 60
    while "event=hub_retention " not in worker.log() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "event=hub_retention " in worker.log(), worker.log()
    left = city.query("SELECT count(*) FROM pg_class WHERE relname LIKE 'readings_y%%'")[0][0]
    assert 0 < left < old


def test_a_frame_sent_again_after_retention_took_only_its_raw_bytes(hub_db):
    # An unset clock: the frame ages by its receive time (a day before the
    # cutoff) in frames_default, its restamped readings sit in the month of
    # the cutoff, which is kept. A gateway restored from a backup sends it
    # again: the frame is new to the hub, its readings are not.
    device = hub_devices.add(hub_db, "rain-01", "pico", "test site")
    received = NOW - 181 * DAY
    _store(hub_db, device, 7, 1000, received, flags=wire.FLAG_CLOCK_UNSYNCED)
    hub_retention.apply(hub_db, 180, now=NOW)
    assert _rows(hub_db, "SELECT count(*) FROM frames") == [(0,)]
    assert _rows(hub_db, "SELECT count(*) FROM readings") == [(2,)]
    _store(hub_db, device, 7, 1000, received, flags=wire.FLAG_CLOCK_UNSYNCED)
    assert _rows(hub_db, "SELECT count(*) FROM frames") == [(1,)]
    assert _rows(hub_db, "SELECT count(*) FROM readings") == [(2,)]
