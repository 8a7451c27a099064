"""`huaico storage estimate`: how much disk the readings take, and for how long
the disk lasts, with the retention of [retention] raw_days (gateway.retention).

The bytes per reading are measured, not guessed: a temporary SQLite file
gets the real schema (gateway.db migrations) and a sample of readings shaped
like real traffic (several devices, several channels per frame, increasing
sequence numbers and times), written the way the store writes them; the
growth in used pages, table and both indexes included, divided by the rows
inserted is the cost of one reading. SQLite's record format makes that cost
depend on the values (small integers take fewer bytes), hence the sample.
"""
import os
import random
import shutil
import tempfile

from gateway import db

SAMPLE_DEVICES = 20
SAMPLE_FRAMES_PER_DEVICE = 250
_INSERT = ("INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, "
           "received, unsynced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Channels a typical site reports: rain, water level, battery, rssi, then more.
_CHANNELS = (1, 4, 19, 20, 5, 6, 3, 7, 8, 9, 11, 12)


def _used_bytes(conn):
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    free = conn.execute("PRAGMA freelist_count").fetchone()[0]
    return (pages - free) * page_size


def _measure(table_rows, insert):
    """Bytes per row that `insert` of table_rows() adds to a fresh database
    with the real schema, table and indexes included."""
    directory = tempfile.mkdtemp(prefix="huaico-estimate-")
    try:
        database = db.open_db(os.path.join(directory, "sample.db"))
        db.migrate(database)
        conn = database.conn
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        before = _used_bytes(conn)
        rows = table_rows()
        with db.transaction(database) as tx:
            tx.executemany(insert, rows)
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        after = _used_bytes(conn)
        conn.close()
        return (after - before) / len(rows)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def measure_bytes_per_reading(readings_per_frame=4, interval_s=300, seed=1):
    """Bytes one reading adds to the database (table and indexes), measured."""
    def sample():
        rng = random.Random(seed)
        start = 1_800_000_000
        rows = []
        channels = [_CHANNELS[i % len(_CHANNELS)] for i in range(readings_per_frame)]
        indexes = [i // len(_CHANNELS) for i in range(readings_per_frame)]
        for device in range(SAMPLE_DEVICES):
            kid = "%08x" % rng.getrandbits(32)
            for seq in range(1, SAMPLE_FRAMES_PER_DEVICE + 1):
                at = start + seq * interval_s + rng.randrange(30)
                for channel, index in zip(channels, indexes):
                    rows.append((kid, seq, channel, index, at, rng.randrange(0, 5000), 0,
                                 at + rng.random(), 0))
        return rows
    return _measure(sample, _INSERT)


def measure_bytes_per_hourly_row(seed=1):
    """Bytes one hourly aggregate (gateway.retention) adds, measured the same way."""
    def sample():
        rng = random.Random(seed)
        rows = []
        for device in range(SAMPLE_DEVICES):
            kid = "%08x" % rng.getrandbits(32)
            for hour in range(SAMPLE_FRAMES_PER_DEVICE):
                for channel in _CHANNELS[:4]:
                    low = rng.randrange(0, 5000)
                    rows.append((kid, channel, 0, 1_800_000_000 + hour * 3600, 60,
                                 low * 60 + rng.randrange(5000), low, low + rng.randrange(500)))
        return rows
    return _measure(sample, "INSERT INTO readings_hourly (device_id, channel, idx, hour, n, "
                            "total, minimum, maximum) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")


def estimate(devices, interval_s, readings_per_frame=4, days=365, free_bytes=None,
             raw_days=0):
    """The answer as data: per reading, per day, for `days`, and how long the
    free space lasts (None when free_bytes is not given). With raw_days,
    readings older than that are hourly aggregates (one row per device,
    channel and hour; channels taken as readings_per_frame, an upper bound)."""
    per_reading = measure_bytes_per_reading(readings_per_frame, interval_s)
    per_hourly = measure_bytes_per_hourly_row()
    readings_per_day = devices * readings_per_frame * 86400.0 / interval_s
    per_day = per_reading * readings_per_day
    hourly_per_day = per_hourly * devices * readings_per_frame * 24
    raw_kept = min(days, raw_days) if raw_days else days
    total = per_day * raw_kept + hourly_per_day * (days - raw_kept)
    if not free_bytes or not per_day:
        until_full = None
    elif not raw_days or free_bytes < per_day * raw_days:
        until_full = int(free_bytes / per_day)
    else:
        until_full = int(raw_days + (free_bytes - per_day * raw_days) / hourly_per_day)
    result = {
        "devices": devices, "interval_s": interval_s, "readings_per_frame": readings_per_frame,
        "bytes_per_reading": round(per_reading, 1),
        "readings_per_day": round(readings_per_day),
        "bytes_per_day": round(per_day), "days": days, "bytes_total": round(total),
        "raw_days": raw_days, "bytes_per_hourly_row": round(per_hourly, 1),
        "hourly_bytes_per_day": round(hourly_per_day),
        "free_bytes": free_bytes, "days_until_full": until_full,
    }
    return result


def render(result, human_bytes, where=None):
    lines = [
        "measured: %.1f bytes per reading (readings table + its 2 indexes, real schema)"
        % result["bytes_per_reading"],
        "%d device%s x %d reading%s every %s = %s readings a day" % (
            result["devices"], "" if result["devices"] == 1 else "s",
            result["readings_per_frame"], "" if result["readings_per_frame"] == 1 else "s",
            _interval(result["interval_s"]), format(result["readings_per_day"], ",")),
        "raw readings: %s a day, %s a month" % (
            human_bytes(result["bytes_per_day"]), human_bytes(result["bytes_per_day"] * 30)),
    ]
    if result["raw_days"]:
        lines.append("retention: raw for %d days (%s), then hourly aggregates at %.1f bytes "
                     "a row: %s a day" % (
                         result["raw_days"],
                         human_bytes(result["bytes_per_day"] * result["raw_days"]),
                         result["bytes_per_hourly_row"],
                         human_bytes(result["hourly_bytes_per_day"])))
    else:
        lines.append("retention: every raw reading kept ([retention] raw_days = 0)")
    lines.append("disk: %s in %d days" % (human_bytes(result["bytes_total"]), result["days"]))
    if result["free_bytes"] is not None:
        days = result["days_until_full"]
        lasts = "over %d years" % (days // 365) if days is not None and days > 3650 else \
            "%s days" % format(days, ",") if days is not None else "forever"
        lines.append("free %s%s: lasts %s at this rate" % (
            human_bytes(result["free_bytes"]), " at " + str(where) if where else "", lasts))
    lines.append("(plus a WAL file of a few MB, and bounded tables: rejects keep 10k rows)")
    return lines


def _interval(seconds):
    for name, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return "%d %s" % (seconds // size, name)
    return "%g s" % seconds
