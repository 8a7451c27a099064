"""SD card wear: the bytes the store writes per reading at field rates.

A count of bytes, not a timing: huaico.store.estimate.field_writes runs the real
writer and rule engine, one frame per commit, 100 devices a frame a minute
each, after six hours of history, with ids, keys, values and the clock
derived rather than drawn, in a process of its own, and counts what that
process hands to the kernel (wchar of /proc/self/io: WAL frames and
checkpoints). The same workload gives the same bytes on every run.

The issue asks for at most 1 KB per reading; the store writes about 1,002
bytes (bench/ingest.py prints the figures). The budget test holds what was
reached, a little under the issue's limit, so that a change that adds a
twentieth of a page to a one-frame commit fails it; each of the changes
that reached it (page size, checkpoint interval, m008's one index, m009's
counted counters, m010's device rows) undone alone goes far over both.
"""
import json
import os
import sqlite3
import subprocess
import sys

import pytest

from huaico.store import db, estimate as storage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ISSUE_LIMIT = 1024  # bytes per reading, issue 14
# What the store reached (1002 measured, the same on every run), with about
# a twentieth of a page a commit to spare; undoing any one step measured
# over it: m010 (the device row at each commit) 1137, m009 (the counters
# page at each commit) 1271, m008 (two indexes again) 1787, 1024-byte
# pages 1753, SQLite's 1000-page checkpoints 1531 (the 16 MiB ones of now
# against 8 MiB only show on longer runs: the same here).
BUDGET = 1012


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    directory = tmp_path_factory.mktemp("field")
    code = ("import json, sys; from huaico.store import estimate as storage; "
            "print(json.dumps(storage.field_writes(sys.argv[1], devices=100, minutes=20, "
            "history_minutes=360)))")
    done = subprocess.run([sys.executable, "-c", code, str(directory)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    # Nothing but the store may write in that process: a log line would count.
    assert done.stderr == ""
    return json.loads(done.stdout)


def test_the_workload_is_field_rates(field):
    assert field["commits"] == 100 * 20
    assert field["readings"] == 4 * field["commits"]
    assert field["page_size"] == db.PAGE_SIZE


def test_bytes_per_reading_within_the_budget(field):
    assert field["bytes_per_reading"] <= BUDGET, field


def test_bytes_per_reading_within_the_issue_limit(field):
    assert field["bytes_per_reading"] <= ISSUE_LIMIT, field


def test_storage_estimate_counts_the_writes():
    """`storage estimate` tells the card's wear beside the disk space: what
    is written per reading (more than what is kept), per day, and the 4 KB
    page floor."""
    result = storage.estimate(20, 60, readings_per_frame=4, days=30)
    assert result["bytes_per_reading"] < result["written_bytes_per_reading"] <= BUDGET
    assert result["written_bytes_per_day"] == pytest.approx(
        result["written_bytes_per_reading"] * result["readings_per_day"], rel=1e-3)
    assert result["written_floor_per_reading"] == 1024
    text = "\n".join(storage.render(result, lambda n: "%d B" % n))
    assert "card wear: %.0f bytes written per reading" % result["written_bytes_per_reading"] in text
    assert "at least 1024 bytes per reading of 4-reading frames" in text


def test_an_old_database_keeps_its_page_size_and_gets_the_one_index(tmp_path):
    """A database made before (4096-byte pages, m001's two indexes) opens,
    migrates, keeps its rows, counters and page size, and ends with the one
    index of m008 and seq_times bounds for the readings it had: an old frame
    resent after the upgrade is still found by its sequence number."""
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA page_size=4096")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    database = db.open_db(path)
    new = ("m007_readings_time_index", "m008_readings_one_index", "m009_counted_readings",
           "m010_devices_seen")
    database.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied REAL)")
    for name, function in db.all_migrations():
        if name in new:
            continue
        with db.transaction(database):
            function(database)
            database.execute("INSERT INTO _migrations (name, applied) VALUES (?, 0)", [name])
    database.conn.executemany(
        "INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, received, "
        "unsynced) VALUES ('abcd0123', ?, 4, 0, ?, 1520, 0, ?, 0)",
        [(n, 1_760_000_000 + n * 60, 1_760_000_001.0 + n * 60) for n in range(1, 101)])
    db.add_counters(database.conn, {"frames_ok": 100, "readings": 100})
    assert db.counters(database) == {"frames_ok": 100, "readings": 100}
    database.conn.close()
    database = db.open_db(path)
    assert db.migrate(database) == list(new)
    assert database.execute("PRAGMA page_size").fetchone()[0] == 4096
    indexes = {row[0]: row[1] for row in database.execute(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'readings'")}
    assert list(indexes) == ["idx_readings_device_id_time_seq_channel_idx"]
    assert "UNIQUE INDEX" in indexes["idx_readings_device_id_time_seq_channel_idx"]
    assert "(device_id, time, seq, channel, idx)" in indexes[
        "idx_readings_device_id_time_seq_channel_idx"]
    plan = " ".join(row[3] for row in database.execute(
        "EXPLAIN QUERY PLAN SELECT time, value FROM readings WHERE device_id = ? AND "
        "channel = ? AND idx = 0 AND time > ? ORDER BY time, rowid", ["abcd0123", 4, 0]))
    assert "idx_readings_device_id_time_seq_channel_idx (device_id=? AND time>?)" in plan
    assert database.execute("SELECT count(*) FROM readings").fetchone()[0] == 100
    assert db.counters(database) == {"frames_ok": 100, "readings": 100}  # counted once
    for seq in (1, 63, 64, 100):
        assert db.seq_rows(database.conn, "abcd0123", seq, 0, "time") == [
            (1_760_000_000 + seq * 60,)]
    assert db.seq_rows(database.conn, "abcd0123", 101, 0, "time") == []


def test_a_new_database_is_durable_and_small_paged(tmp_path):
    """The wear settings leave durability alone: WAL, synchronous=FULL (2)."""
    database = db.open_db(tmp_path / "new.db")
    db.migrate(database)
    conn = database.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    assert conn.execute("PRAGMA page_size").fetchone()[0] == db.PAGE_SIZE
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
        db.CHECKPOINT_BYTES // db.PAGE_SIZE)
