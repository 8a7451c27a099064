"""`huaico storage estimate`: how much disk the readings take, and for how long
the disk lasts, with the retention of [retention] raw_days (huaico.store.retention).

The bytes per reading are measured, not guessed: a temporary SQLite file
gets the real schema (huaico.store.db migrations) and a sample of readings shaped
like real traffic (several devices, several channels per frame, increasing
sequence numbers and times), written the way the store writes them; the
growth in used pages, table, index and seq_times included, divided by the rows
inserted is the cost of one reading. SQLite's record format makes that cost
depend on the values (small integers take fewer bytes), hence the sample.

So are the bytes written per reading, which wear an SD card out long before
it is full: field_writes() runs the real writer (with the rule engine) one
frame per commit, as frames arrive at field rates, over a database that
already holds some history (an empty one would flatter the indexes), and
counts what the process hands to the kernel (wchar of /proc/self/io: WAL
frames, checkpoints into the database file, the WAL header). The kernel
writes whole 4 KB pages, and every commit's sync writes at least the WAL
page it ended on: that is the floor no schema can go under, 4096 bytes per
commit, shown beside the figure (fs_floor_per_reading).
"""
import hashlib
import os
import random
import shutil
import tempfile

from huaico import config as config_mod
from huaico.protocol.cose import MacKey
from huaico.protocol.frame import encode_frame
from huaico.rules import engine as rules
from huaico.store import db
from huaico.store.writer import Writer

SAMPLE_DEVICES = 20
SAMPLE_FRAMES_PER_DEVICE = 250
_INSERT = ("INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, "
           "received, unsynced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
# Channels a typical site reports: rain, water level, battery, rssi, then more.
_CHANNELS = (1, 4, 19, 20, 5, 6, 3, 7, 8, 9, 11, 12)
FS_PAGE = 4096  # what the kernel writes for a sync that touched any byte of a page
# The field workload's clock: a fixed, trusted, past moment (deterministic
# bytes; frames stamped by it are never "from the future").
_FIELD_START = 1_760_000_000


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
    """Bytes one hourly aggregate (huaico.store.retention) adds, measured the same way."""
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


def measure_written_per_reading(devices, interval_s, readings_per_frame=4):
    """Bytes SQLite writes per reading for this many devices at this
    interval, one commit per frame (field_writes, a short run: ten frames per
    device, at most 100 devices, after sixty frames of history); None where
    the kernel does not count a process's writes (no /proc/self/io)."""
    if not os.path.exists("/proc/self/io"):
        return None
    minutes = max(1, int(-(-10 * interval_s // 60)))
    directory = tempfile.mkdtemp(prefix="huaico-writes-")
    try:
        return field_writes(directory, min(devices, 100), minutes, 6 * minutes,
                            readings_per_frame, interval_s)["bytes_per_reading"]
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def estimate(devices, interval_s, readings_per_frame=4, days=365, free_bytes=None,
             raw_days=0):
    """The answer as data: per reading, per day, for `days`, and how long the
    free space lasts (None when free_bytes is not given). With raw_days,
    readings older than that are hourly aggregates (one row per device,
    channel and hour; channels taken as readings_per_frame, an upper bound)."""
    per_reading = measure_bytes_per_reading(readings_per_frame, interval_s)
    per_hourly = measure_bytes_per_hourly_row()
    written = measure_written_per_reading(devices, interval_s, readings_per_frame)
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
        # Wear: what the store writes (not what it keeps), and the kernel's
        # floor of one whole 4 KB page per commit's sync.
        "written_bytes_per_reading": None if written is None else round(written, 1),
        "written_bytes_per_day": None if written is None else round(written * readings_per_day),
        "written_floor_per_reading": round(FS_PAGE / float(readings_per_frame), 1),
    }
    return result


def render(result, human_bytes, where=None):
    lines = [
        "measured: %.1f bytes per reading (readings table + its index, real schema)"
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
    if result["written_bytes_per_reading"] is not None:
        lines.append("card wear: %.0f bytes written per reading (one commit per frame: WAL and "
                     "checkpoints, measured), %s a day" % (
                         result["written_bytes_per_reading"],
                         human_bytes(result["written_bytes_per_day"])))
    lines.append("  the disk writes whole 4 KB pages: at least %.0f bytes per reading of "
                 "%d-reading frames" % (result["written_floor_per_reading"],
                                         result["readings_per_frame"]))
    lines.append("(plus a WAL file of up to %s, and bounded tables: rejects keep 10k rows)"
                 % human_bytes(2 * db.CHECKPOINT_BYTES))
    return lines


def _interval(seconds):
    for name, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size and seconds % size == 0:
            return "%d %s" % (seconds // size, name)
    return "%g s" % seconds


def _io():
    with open("/proc/self/io") as io:
        return {key: int(value) for key, value in (line.split(":") for line in io)}


# A station's frame (bench/ingest.py sends the same): rain, rain tips, water
# level, battery; more readings per frame repeat them at the next index.
_FIELD_FRAME = ((1, 0, 2), (2, 0, 1), (4, -30, 1520), (19, 0, 3712))


def _field_readings(per_frame, minute):
    """(channel, index, dt, value, quality) rows of one frame, all in range."""
    return [(_FIELD_FRAME[i % 4][0], i // 4, _FIELD_FRAME[i % 4][1],
             _FIELD_FRAME[i % 4][2] + minute % 7, 0) for i in range(per_frame)]


def field_writes(directory, devices=100, minutes=30, history_minutes=1440, per_frame=4,
                 interval_s=60):
    """Bytes written per reading at field rates: `devices` boards sending a
    frame of `per_frame` readings every interval_s, each frame its own
    commit through the real Writer and RuleEngine, after history_minutes of
    earlier frames bulk-loaded; measured in the calling process (run it in a
    process of its own: any other write of the process counts).

    Deterministic for given arguments: ids, keys, values and the writer's
    clock are derived, not drawn. Every byte is counted until it is in the
    database file (a checkpoint ends the run). Returns a dict: readings,
    commits, bytes (wchar: what SQLite handed to the kernel), kernel_bytes
    (write_bytes: whole pages; includes the -shm file's mmapped pages the
    flusher wrote back meanwhile), their per-reading figures, page_size
    and fs_floor_per_reading."""
    home = str(directory)
    config_mod.write_default(home)
    config = config_mod.load(home)
    database = db.open_db(config.database_path)
    db.migrate(database)
    boards = []
    for n in range(devices):
        seed = hashlib.sha256(b"huaico field board %d" % n).digest()
        boards.append((seed[:4], seed[4:20]))
    history = max(0, int(history_minutes * 60 // interval_s))
    with db.transaction(database) as conn:
        conn.executemany(
            "INSERT INTO devices (id, name, site, board, key, last_seq, epoch, created) "
            "VALUES (?, ?, 'field', 'pico', ?, ?, 0, ?)",
            [(kid.hex(), "field-%03d" % n, key.hex(), history or None, _FIELD_START)
             for n, (kid, key) in enumerate(boards)])
        for step in range(history):
            at = _FIELD_START + step * interval_s
            conn.executemany(_INSERT, [
                (kid.hex(), step + 1, c, i, at + dt, v, q, at + 1.0, 0)
                for kid, _ in boards for c, i, dt, v, q in _field_readings(per_frame, step)])
        # Counted, and the device rows written up to it, as the writer would
        # have (huaico.store.db m009, m010): the run measures the writes of
        # its own frames, not one fold of the history.
        db.fold_counters(conn)
        conn.execute("UPDATE counters SET value = (SELECT max(rowid) FROM readings) "
                     "WHERE name = ?", [db.DEVICES_SEEN])
    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    now = [0.0]
    writer = Writer(database, engine=rules.RuleEngine(database, config), clock=lambda: now[0])
    spacing = float(interval_s) / devices
    frames = []
    for step in range(history, history + int(minutes * 60 // interval_s)):
        for n, (kid, key) in enumerate(boards):
            at = _FIELD_START + step * interval_s + n * spacing
            frames.append((at, encode_frame(kid, MacKey(key), step + 1, int(at), 0,
                                            _field_readings(per_frame, step))))
    before = _io()
    for at, raw in frames:
        now[0] = at
        outcome = writer.process([("field", raw, at, None)])
        if outcome != ["stored"]:
            raise RuntimeError("field frame not stored: %s" % outcome)
    # The pages still only in the WAL reach the database file once more:
    # counted, so that a run shorter than a checkpoint interval is not
    # flattered (a short run coalesces less, so this errs high).
    database.execute("PRAGMA wal_checkpoint(PASSIVE)")
    after = _io()
    page_size = database.execute("PRAGMA page_size").fetchone()[0]
    database.conn.close()
    readings = len(frames) * per_frame
    written = after["wchar"] - before["wchar"]
    kernel = after["write_bytes"] - before["write_bytes"]
    return {"readings": readings, "commits": len(frames), "bytes": written,
            "kernel_bytes": kernel, "bytes_per_reading": written / readings,
            "kernel_bytes_per_reading": kernel / readings, "page_size": page_size,
            "fs_floor_per_reading": FS_PAGE / float(per_frame)}
