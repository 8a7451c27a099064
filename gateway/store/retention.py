"""Retention: raw readings for [retention] raw_days, hourly aggregates after.

A gateway on an SD card cannot keep every raw reading for ever, and nobody
needs ten-second river levels from three years ago; the hourly count, sum,
minimum and maximum per device and channel keep what a hydrologist asks of
old data (rain totals, peak levels) in 1/60th of the rows or less.

Age is the gateway's receive time, not the board's clock: a board whose
clock was never set stamps its readings in 1970, and those must not be
aggregated away on arrival. Receive times grow with the rowid (the one
writer stores frames in arrival order), so the boundary is found by
bisecting the rowid, without an index on `received` that every reading
would pay for in bytes written.

Each step aggregates and deletes a chunk of rows in one transaction, so the
writer's busy_timeout waits out at most one chunk. The newest row is never
deleted: SQLite hands out max(rowid)+1, and the SenML feed's cursor must
never see a rowid twice.
"""
import time

from huaico.store import db

CHUNK_ROWS = 20000


def m200_readings_hourly(database):
    database.execute(
        "CREATE TABLE readings_hourly (device_id TEXT NOT NULL, channel INTEGER NOT NULL, "
        "idx INTEGER NOT NULL, hour INTEGER NOT NULL, n INTEGER NOT NULL, "
        "total INTEGER NOT NULL, minimum INTEGER NOT NULL, maximum INTEGER NOT NULL, "
        "PRIMARY KEY (device_id, channel, idx, hour)) WITHOUT ROWID")


MIGRATIONS = [("m200_readings_hourly", m200_readings_hourly)]

_AGGREGATE = (
    "INSERT INTO readings_hourly (device_id, channel, idx, hour, n, total, minimum, maximum) "
    "SELECT device_id, channel, idx, (time / 3600) * 3600, count(*), sum(value), min(value), "
    "max(value) FROM readings WHERE rowid > ? AND rowid <= ? "
    "GROUP BY device_id, channel, idx, (time / 3600) "
    "ON CONFLICT (device_id, channel, idx, hour) DO UPDATE SET n = n + excluded.n, "
    "total = total + excluded.total, minimum = min(minimum, excluded.minimum), "
    "maximum = max(maximum, excluded.maximum)")


def raw_days(config):
    return config["retention"]["raw_days"]


def _received_at(conn, rowid):
    row = conn.execute("SELECT rowid, received FROM readings WHERE rowid >= ? "
                       "ORDER BY rowid LIMIT 1", [rowid]).fetchone()
    return row


def boundary(conn, cutoff):
    """The largest rowid whose reading was received before `cutoff` (bisected
    on the rowid), or 0 when there is none."""
    low, high = conn.execute("SELECT min(rowid), max(rowid) FROM readings").fetchone()
    if low is None:
        return 0
    first = _received_at(conn, low)
    if first[1] is None or first[1] >= cutoff:
        return 0
    found = first[0]
    low = found + 1
    while low <= high:
        middle = (low + high) // 2
        row = _received_at(conn, middle)
        if row is None or row[1] >= cutoff:
            high = middle - 1
        else:
            found = row[0]
            low = row[0] + 1
    return found


def apply(database, config, now=None, stopping=None):
    """Aggregate and delete raw readings older than raw_days; returns what
    was done. raw_days = 0 keeps every raw reading. `stopping` (an Event)
    ends the pass between chunks: the first pass after an upgrade may have
    years to fold, and a SIGTERM must not wait for all of it."""
    now = time.time() if now is None else now
    days = raw_days(config)
    done = {"cutoff": 0, "readings_removed": 0, "hours_written": 0}
    if not days:
        return done
    cutoff = now - days * 86400.0
    done["cutoff"] = int(cutoff)
    conn = database.conn
    last = boundary(conn, cutoff)
    newest = conn.execute("SELECT max(rowid) FROM readings").fetchone()[0] or 0
    last = min(last, newest - 1)
    # Nor a reading a device's row does not show yet: devices_live reads
    # last_seen, battery and RSSI from those (huaico.store.db m010), and a
    # gateway that was down longer than raw_days still has some.
    unseen = db.first_unseen(conn)
    if unseen is not None:
        last = min(last, unseen - 1)
    start = conn.execute("SELECT min(rowid) FROM readings").fetchone()[0] or 0
    position = start - 1
    while position < last and not (stopping is not None and stopping.is_set()):
        upto = min(position + CHUNK_ROWS, last)
        with db.transaction(database) as tx:
            # Readings not yet in frames_ok and readings are counted first
            # (huaico.store.db m009): deleted, they could no longer be.
            db.fold_counters(tx)
            before = tx.total_changes
            tx.execute(_AGGREGATE, [position, upto])
            done["hours_written"] += tx.total_changes - before
            removed = tx.execute("DELETE FROM readings WHERE rowid > ? AND rowid <= ?",
                                 [position, upto]).rowcount
            done["readings_removed"] += removed
        position = upto
    return done


def hourly(database, device_id=None, channel=None, since=None, until=None):
    """Hourly aggregates as dicts, oldest first."""
    where, args = [], []
    for column, op, value in (("device_id", "=", device_id), ("channel", "=", channel),
                              ("hour", ">=", since), ("hour", "<", until)):
        if value is not None:
            where.append("%s %s ?" % (column, op))
            args.append(value)
    sql = "SELECT * FROM readings_hourly"
    if where:
        sql += " WHERE " + " AND ".join(where)
    return list(database.query(sql + " ORDER BY hour, device_id, channel, idx", args))
