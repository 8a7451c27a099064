"""The gateway's SQLite database: how it is opened and its ordered, named migrations.

Opened in WAL mode with synchronous=FULL because the gateway acks a frame
after its commit and the board then forgets it: in WAL mode NORMAL can lose
the last commits on a power cut, which solar sites see often. The Python
sqlite3 driver runs in autocommit mode (isolation_level=None) so that the
only transactions are the ones written out with `transaction()`.

SD cards wear out by the bytes written, and at field rates (a frame a
minute per device) every frame is a commit of its own. A WAL commit
appends a whole image of every page it changed, so the bytes per frame are
(pages changed) x (page size + 24), and each checkpoint writes every page
changed since the last one once more. Hence, measured by bench/ingest.py
and tests/test_sd_wear.py: 512-byte pages for new databases (a frame
changes about six and a half: the index's leaf with the neighbours and
parent its splits rewrite, about four; the readings table's last page and
its parent, about two; page 1 every other commit, when the file grows), a
checkpoint every CHECKPOINT_BYTES of WAL so that a page changed by
hundreds of commits (a device's index leaf) reaches the database file
once, one index on readings (m008; each index costs about four pages a
commit) with seq_times to find frames by number through it, frames_ok and
readings counted from the readings rather than written at each commit
(m009), and the device row written only when the readings cannot stand
for it (m010). Durability is untouched: every commit is still synced
before the acks go out. A database made before keeps its page size
(SQLite changes it only by a VACUUM outside WAL mode); it gets the rest.

m010, weighed against the other ways to take the device row's page (about
140 of 1,140 bytes a reading): last_seen, battery, RSSI and the replay
window only restate the device's newest frames, whose readings the same
commit writes anyway, so they are read from there (devices_live) and
every reader, in the gateway or not, sees the value of the last commit.
Keeping them in the gateway's memory instead would have left the CLI,
status, metrics and `doctor` (other processes) minutes behind, and
writing the row only when a value changes would still write it at every
frame (last_seen always changes). A per-frame column on a row already
written does not exist: the readings are that row.

Weighed and not done: readings WITHOUT ROWID, clustered by (device, time),
would drop the table's own b-tree, but the SenML feed, retention and Home
Assistant follow the readings by rowid. What is left is mostly SQLite's
b-tree itself: each device's newest index entries go between its own and
the next device's, into pages a split has packed full, so most commits
rewrite three sibling leaves and their parent; only fewer index entries
per frame would change that.

Migrations are (name, function) pairs applied in order, each in its own
transaction together with its row in _migrations: m001... here, then
huaico.alerts.schema.MIGRATIONS (rules, alerts, outbox).
"""
import contextlib
import os
import sqlite3
import time

import sqlite_utils

from huaico.alerts import schema as alert_schema
from huaico.protocol import channels
from huaico.store import retention

BUSY_TIMEOUT_MS = 5000
REJECTS_KEPT = 10000
PAGE_SIZE = 512  # new databases only; see the module docstring
# WAL bytes between automatic checkpoints (SQLite's default is 1000 pages).
# Longer coalesces more rewrites of the same page; the WAL file grows to
# about this size, and a crash replays at most this much on the next open.
# Measured over 90 minutes of 100 devices (bench/ingest.py's workload):
# 1,005 bytes a reading at 8 MiB, 985 at 16, 973 at 32; the pages each
# checkpoint writes (and the writer waits for, once every twenty minutes
# or so at that rate) grow with it.
CHECKPOINT_BYTES = 16 << 20
_BATTERY = channels.get("battery").code  # volts with exponent -3: the value is mV
_RSSI = channels.get("rssi").code


def open_db(path):
    """A sqlite_utils.Database on `path`, usable from the thread that owns it.
    A new database file is created 0600 (it holds the device keys); SQLite
    gives its -wal and -shm files the database file's mode."""
    path = str(path)
    if path != ":memory:" and not os.path.exists(path) and os.path.isdir(
            os.path.dirname(path) or "."):
        try:
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        except FileExistsError:  # another process made it first
            pass
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False,
                           timeout=BUSY_TIMEOUT_MS / 1000)
    database = sqlite_utils.Database(conn)
    # Only takes effect while the file is still empty: before journal_mode.
    conn.execute("PRAGMA page_size=%d" % PAGE_SIZE)
    conn.execute("PRAGMA journal_mode=WAL")
    page_size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.execute("PRAGMA wal_autocheckpoint=%d" % (CHECKPOINT_BYTES // page_size))
    # After a checkpoint the WAL is reused from its start, not truncated, so
    # that appends do not grow the file again (each growth is a metadata
    # write on the card too); one that a long reader (a backup) let grow past
    # twice the interval is cut back.
    conn.execute("PRAGMA journal_size_limit=%d" % (2 * CHECKPOINT_BYTES))
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=%d" % BUSY_TIMEOUT_MS)
    return database


@contextlib.contextmanager
def transaction(database):
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception.

    IMMEDIATE takes the write lock up front: a deferred transaction that
    reads first and writes later can fail with SQLITE_BUSY at once, without
    waiting, when a CLI command writes at the same time.
    """
    conn = database.conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def m001_initial(database):
    database["devices"].create({
        "id": str, "name": str, "site": str, "board": str, "transport": str,
        "lat": float, "lon": float, "key": str, "allow_unsigned": int, "retired": int,
        "last_seq": int, "seq_window": int, "last_seen": float, "battery_mv": int,
        "rssi": int, "created": float,
    }, pk="id", not_null={"name", "key"},
        defaults={"allow_unsigned": 0, "retired": 0, "seq_window": 0, "transport": "uart"})
    database["devices"].create_index(["name"], unique=True)
    database["readings"].create({
        "device_id": str, "seq": int, "channel": int, "idx": int, "time": int,
        "value": int, "quality": int, "received": float, "unsynced": int,
    })
    # The unique key is what makes a resend never a duplicate row.
    database["readings"].create_index(
        ["device_id", "seq", "channel", "idx", "time"], unique=True)
    database["readings"].create_index(["device_id", "channel", "time"])
    database["counters"].create({"name": str, "value": int}, pk="name")
    database["rejects"].create({
        "time": float, "device_id": str, "reason": str, "detail": str, "source": str,
    })


def m002_cursors(database):
    """Where each outgoing feed (SenML over MQTT) has got to in the readings."""
    database["cursors"].create({"name": str, "position": int}, pk="name")


def m003_epochs(database):
    """Sequence epochs (protocol/SPEC.md 1.3): each device's current epoch
    (NULL before its first frame; 0 for version 1 frames), the epochs it has
    left, and when an operator last reset its sequence numbers (readings
    stored before that do not make a frame a resend)."""
    conn = database.conn
    conn.execute("ALTER TABLE devices ADD COLUMN epoch INTEGER")
    conn.execute("ALTER TABLE devices ADD COLUMN old_epochs TEXT NOT NULL DEFAULT ''")
    conn.execute("ALTER TABLE devices ADD COLUMN seq_reset_at REAL")
    conn.execute("UPDATE devices SET epoch = 0 WHERE last_seq IS NOT NULL")


def m004_gateway_state(database):
    """What the running gateway says of itself for other processes (`huaico
    status`, `doctor`): its clock's trust, by name."""
    database["gateway_state"].create({"name": str, "value": str, "updated": float}, pk="name")


def m005_device_place(database):
    """The place residents read in alert messages for this device's
    readings ("Quebrada Santo Domingo, parte alta"); NULL: the site's."""
    database.conn.execute("ALTER TABLE devices ADD COLUMN place TEXT")


def m006_frames(database):
    """The boards' original signed frames, as they arrived, for the upstream
    forwarder (gateway/hub/upstream.py): the hub verifies each with the device's
    key, so it needs the bytes the board MACed, not readings rebuilt from
    them. Written only while [upstream] is enabled; id is commit order and
    the forwarder's cursor, AUTOINCREMENT because forwarded rows are deleted
    and a plain rowid would count again from 1 once the table is empty.
    link is the reader's source ("serial:...", "udp:...", "mqtt"), rssi the
    frame's own RSSI reading where it has one."""
    database.conn.execute(
        "CREATE TABLE frames (id INTEGER PRIMARY KEY AUTOINCREMENT, "
        "device_id TEXT NOT NULL, seq INTEGER NOT NULL, "
        "received REAL NOT NULL, link TEXT, rssi INTEGER, raw BLOB NOT NULL)")


def m007_readings_time_index(database):
    """Readings by device, then time, then channel, instead of by device,
    channel, then time: a frame's readings (one device, one time, several
    channels) are neighbours in the new index, so storing a frame changes
    one leaf page where the old one changed one per channel, and that is
    the larger part of what a one-frame commit writes to the card
    (huaico.store.db's docstring). The rules' and the CLI's queries (a device and
    channel over a time range, the newest time of a channel) read the same
    time range of the device and skip the other channels inside the index."""
    conn = database.conn
    conn.execute("DROP INDEX IF EXISTS idx_readings_device_id_channel_time")
    conn.execute("CREATE INDEX idx_readings_device_id_time_channel "
                 "ON readings (device_id, time, channel)")


# seq_times buckets hold 2**SEQ_BUCKET_BITS sequence numbers; a bucket's
# time bounds widen by at least SEQ_TIMES_MARGIN_S (and by their own span
# when that is longer), so that a board a frame a minute rewrites its bucket
# about twice in 64 frames rather than at each one.
SEQ_BUCKET_BITS = 6
SEQ_TIMES_MARGIN_S = 3600
# Bounds that began before the device's sequence numbers were reset (`huaico
# device reset-sequence`: the readings before it no longer count, seq_rows)
# begin again at the first reading after it, so that a board counting from
# 1 again does not stretch them over all its history.
_SEQ_TIMES_TRIGGER = (
    "CREATE TRIGGER readings_seq_times AFTER INSERT ON readings BEGIN "
    "INSERT INTO seq_times (device_id, bucket, lo, hi, since) "
    "VALUES (NEW.device_id, NEW.seq >> {bits}, NEW.time - {margin}, NEW.time + {margin}, "
    "NEW.received) ON CONFLICT (device_id, bucket) DO UPDATE SET "
    "lo = CASE WHEN since < {reset} THEN excluded.lo "
    "WHEN NEW.time < lo THEN NEW.time - max({margin}, hi - lo) ELSE lo END, "
    "hi = CASE WHEN since < {reset} THEN excluded.hi "
    "WHEN NEW.time > hi THEN NEW.time + max({margin}, hi - lo) ELSE hi END, "
    "since = CASE WHEN since < {reset} THEN excluded.since ELSE since END "
    "WHERE since < {reset} OR NEW.time < lo OR NEW.time > hi; END"
).format(bits=SEQ_BUCKET_BITS, margin=SEQ_TIMES_MARGIN_S,
         reset="(SELECT seq_reset_at FROM devices WHERE id = NEW.device_id)")


def m008_readings_one_index(database):
    """One index on readings instead of two: unique on (device, time, seq,
    channel, idx), the same columns as m001's unique key, led like m007's
    by device and time, so it is both what makes a resend never a duplicate
    row and what the time-range queries use. Each index a one-frame commit
    touches costs about four 512-byte pages on the card (huaico.store.db's
    docstring).

    The writer still looks a frame up by its sequence number (a resend, a
    replay, a board counting again: huaico.store.writer): seq_times keeps,
    per device and bucket of 64 numbers, bounds on the times of every
    reading stored under those numbers, maintained by a trigger on every
    insert (whoever inserts), and seq_rows seeks (device, time, seq) for
    each distinct time of the device between those bounds. The bounds are
    loose on purpose: they are rewritten only when a reading falls outside
    them."""
    conn = database.conn
    # since: the receive time of the reading the bounds began with.
    conn.execute("CREATE TABLE seq_times (device_id TEXT NOT NULL, bucket INTEGER NOT NULL, "
                 "lo INTEGER NOT NULL, hi INTEGER NOT NULL, since REAL, "
                 "PRIMARY KEY (device_id, bucket)) WITHOUT ROWID")
    conn.execute("INSERT INTO seq_times (device_id, bucket, lo, hi, since) "
                 "SELECT device_id, seq >> ?, min(time), max(time), min(received) FROM readings "
                 "GROUP BY device_id, seq >> ?", [SEQ_BUCKET_BITS, SEQ_BUCKET_BITS])
    conn.execute(_SEQ_TIMES_TRIGGER)
    conn.execute("CREATE UNIQUE INDEX idx_readings_device_id_time_seq_channel_idx "
                 "ON readings (device_id, time, seq, channel, idx)")
    conn.execute("DROP INDEX IF EXISTS idx_readings_device_id_seq_channel_idx_time")
    conn.execute("DROP INDEX IF EXISTS idx_readings_device_id_time_channel")


def seq_rows(conn, device_id, seq, since, columns, limit=None):
    """The readings stored under device_id's seq and received at or after
    `since`, as tuples of `columns`: through seq_times' bounds and the
    (device, time, seq, ...) index (m008)."""
    span = conn.execute("SELECT lo, hi FROM seq_times WHERE device_id = ? AND bucket = ?",
                        [device_id, seq >> SEQ_BUCKET_BITS]).fetchone()
    if span is None:
        return []
    # A skip scan: from one distinct time to the next in the index, and at
    # each a seek on (device, time, seq), so that frames sharing their times
    # (a board whose clock stands still) cost a seek each, not a scan.
    return conn.execute(
        "WITH RECURSIVE times(t) AS (SELECT min(time) FROM readings "
        "WHERE device_id = ?1 AND time >= ?2 UNION ALL SELECT (SELECT min(time) "
        "FROM readings WHERE device_id = ?1 AND time > t) FROM times WHERE t < ?3) "
        "SELECT %s FROM times JOIN readings ON device_id = ?1 AND time = t AND seq = ?4 "
        "WHERE t <= ?3 AND received >= ?5%s" % (columns, " LIMIT %d" % limit if limit else ""),
        [device_id, span[0], span[1], seq, since]).fetchall()


# Counters that each stored frame adds to, kept apart from the counters
# table's rows until a fold (fold_counters): see m009.
DERIVED_COUNTERS = frozenset(("frames_ok", "readings"))
# The counters row that holds the readings rowid the others are counted up
# to; names that start with "_" are not counters (counters() leaves them out).
_COUNTED = "_readings_counted"
# At most this long between folds while frames arrive: bounds the readings
# that counters() counts on each call.
FOLD_S = 60.0


def m009_counted_readings(database):
    """frames_ok and readings are not written at each commit: on a card,
    the counters page is one of the eight pages a one-frame commit writes.
    They are the counters table's rows plus what the readings stored after
    the rowid in its _readings_counted row say (readings: the rows; frames:
    their distinct device, seq and receive time), and the writer folds that
    tail into the rows (fold_counters) when it writes other counters anyway
    or FOLD_S after the last fold. Exact at every commit, so a kill -9
    loses no count, and the same from any process. Existing readings are
    counted already: the mark starts after them."""
    database.execute("INSERT INTO counters (name, value) SELECT ?, coalesce(max(rowid), 0) "
                     "FROM readings", [_COUNTED])


def _tail(conn):
    """(mark, readings, frames, newest rowid) of the readings after the mark;
    none before m009, whose counters rows count every reading."""
    row = conn.execute("SELECT value FROM counters WHERE name = ?", [_COUNTED]).fetchone()
    if row is None:
        return None, 0, 0, None
    mark = row[0]
    count, newest = conn.execute("SELECT count(*), max(rowid) FROM readings WHERE rowid > ?",
                                 [mark]).fetchone()
    return mark, count, frames_after(conn, mark) if count else 0, newest


def frames_after(conn, rowid):
    """The frames the readings after `rowid` belong to (a frame's rows share
    device, seq and receive time)."""
    return conn.execute("SELECT count(*) FROM (SELECT DISTINCT device_id, seq, received "
                        "FROM readings WHERE rowid > ?)", [rowid]).fetchone()[0]


def fold_counters(conn):
    """Add the readings stored since the mark to frames_ok and readings, and
    move the mark past them, in the caller's transaction (m009)."""
    _, count, frames, newest = _tail(conn)
    if count:
        add_counters(conn, {"readings": count, "frames_ok": frames})
        conn.execute("INSERT INTO counters (name, value) VALUES (?, ?) ON CONFLICT(name) "
                     "DO UPDATE SET value = excluded.value", [_COUNTED, newest])


# The counters row that holds the readings rowid every device row is written
# up to (m010); a "_" name, so not a counter.
DEVICES_SEEN = "_devices_seen"
# At most this many readings, or this long, between two writes of the
# device rows a tail touches. The readings bound the tail every reader of
# devices_live scans (2-3 ms at 4096); at 100 devices a frame a minute it
# comes every ten minutes, and writing the rows then (a few dozen pages)
# costs a few bytes a reading (every 1024 readings: 11 more). The time
# bound is for quiet networks (20 devices every 5 minutes fill 4096 in
# four hours): an hour keeps that cost as low while bounding how old a
# reading retention must keep for the rows can be.
FOLD_SEEN_ROWS = 4096
FOLD_SEEN_S = 3600.0
# What readers see of a device: the row, with what the readings stored after
# it was written say of the device's newest frame (m010). Neither the
# writer's replay window nor seen_rowid is shown: only the writer uses them.
_HIDDEN = ("seq_window", "seen_rowid")


def _live_view_sql(conn):
    """devices_live over the devices table's present columns (a migration
    that adds one recreates the view with this)."""
    derived = {
        "last_seq": "CASE WHEN t.seq IS NULL THEN d.last_seq "
                    "ELSE max(coalesce(d.last_seq, t.seq), t.seq) END",
        "last_seen": "coalesce((SELECT received FROM readings WHERE rowid = t.seen_at), "
                     "d.last_seen)",
        "battery_mv": "coalesce((SELECT value FROM readings WHERE rowid = t.battery_at), "
                      "d.battery_mv)",
        "rssi": "coalesce((SELECT value FROM readings WHERE rowid = t.rssi_at), d.rssi)",
    }
    columns = [row[1] for row in conn.execute("PRAGMA table_info(devices)")]
    shown = ["%s AS %s" % (derived[name], name) if name in derived else "d." + name
             for name in columns if name not in _HIDDEN]
    # Readings NOT INDEXED and the outer loop (CROSS JOIN): read by rowid
    # from the mark, the tail only; through the index (which covers these
    # columns) the planner would scan every reading stored.
    return (
        "CREATE VIEW devices_live AS WITH t AS (SELECT r.device_id AS id, "
        "max(r.rowid) AS seen_at, max(r.seq) AS seq, "
        "max(CASE WHEN r.channel = {battery} AND r.idx = 0 THEN r.rowid END) AS battery_at, "
        "max(CASE WHEN r.channel = {rssi} AND r.idx = 0 THEN r.rowid END) AS rssi_at "
        "FROM readings r NOT INDEXED CROSS JOIN devices e ON e.id = r.device_id "
        "WHERE r.rowid > (SELECT value FROM counters WHERE name = '{mark}') "
        "AND r.rowid > coalesce(e.seen_rowid, 0) GROUP BY r.device_id) "
        "SELECT {shown} FROM devices d LEFT JOIN t ON t.id = d.id"
    ).format(battery=_BATTERY, rssi=_RSSI, mark=DEVICES_SEEN, shown=", ".join(shown))


def m010_devices_seen(database):
    """A one-frame commit no longer writes its device's row: on a card that
    row's page is one of the seven a commit writes (about 140 bytes a
    reading, huaico.store.db's docstring). last_seen, battery_mv, rssi,
    last_seq and the replay window are what the device's newest frames say,
    and those frames' readings are in the same commit: readers read them
    from devices_live, the row overlaid with the readings stored after it
    was written. Such a reading is one after the _devices_seen mark (every
    row is written up to it) and after the row's own seen_rowid (a row
    written alone: a frame the readings do not show, an epoch, a sequence
    reset). The writer rebuilds the same from the same rows when it loads a
    device (huaico.store.writer), writes every row the tail touches and
    moves the mark every FOLD_SEEN_ROWS readings or FOLD_SEEN_S, so the
    tail a reader scans stays short. Exact at every commit, from any
    process, after kill -9."""
    conn = database.conn
    conn.execute("ALTER TABLE devices ADD COLUMN seen_rowid INTEGER")
    conn.execute("INSERT INTO counters (name, value) SELECT ?, coalesce(max(rowid), 0) "
                 "FROM readings", [DEVICES_SEEN])
    conn.execute(_live_view_sql(conn))


def first_unseen(conn):
    """The rowid of the oldest reading that a device's row does not show
    yet (m010), or None."""
    return conn.execute(
        "SELECT min(r.rowid) FROM readings r NOT INDEXED CROSS JOIN devices d "
        "ON d.id = r.device_id "
        "WHERE r.rowid > ? AND r.rowid > coalesce(d.seen_rowid, 0)", [seen_mark(conn)]
    ).fetchone()[0]


def seen_mark(conn):
    """The readings rowid every device row is written up to (m010)."""
    row = conn.execute("SELECT value FROM counters WHERE name = ?", [DEVICES_SEEN]).fetchone()
    return row[0] if row else 0


MIGRATIONS = [("m001_initial", m001_initial), ("m002_cursors", m002_cursors),
              ("m003_epochs", m003_epochs), ("m004_gateway_state", m004_gateway_state),
              ("m005_device_place", m005_device_place), ("m006_frames", m006_frames),
              ("m007_readings_time_index", m007_readings_time_index),
              ("m008_readings_one_index", m008_readings_one_index),
              ("m009_counted_readings", m009_counted_readings),
              ("m010_devices_seen", m010_devices_seen)]


def all_migrations():
    """The store's migrations, then the alert schema's, then retention's."""
    return list(MIGRATIONS) + list(alert_schema.MIGRATIONS) + list(retention.MIGRATIONS)


def applied(database):
    if "_migrations" not in database.table_names():
        return set()
    return {row[0] for row in database.execute("SELECT name FROM _migrations")}


def migrate(database):
    """Apply the migrations not yet recorded; returns the names applied now."""
    database.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied REAL)")
    done = applied(database)
    ran = []
    for name, function in all_migrations():
        if name in done:
            continue
        with transaction(database):
            function(database)
            database.execute("INSERT INTO _migrations (name, applied) VALUES (?, ?)",
                             [name, time.time()])
        ran.append(name)
    return ran


def add_counters(conn, deltas):
    """Add counter deltas in the caller's transaction."""
    conn.executemany(
        "INSERT INTO counters (name, value) VALUES (?, ?) "
        "ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
        list(deltas.items()))


def add_rejects(conn, rows):
    """Record rejects (time, device_id, reason, detail, source), keeping the newest 10k."""
    conn.executemany(
        "INSERT INTO rejects (time, device_id, reason, detail, source) VALUES (?, ?, ?, ?, ?)",
        rows)
    conn.execute("DELETE FROM rejects WHERE rowid <= (SELECT max(rowid) FROM rejects) - ?",
                 [REJECTS_KEPT])


def cursor(database, name):
    """The readings rowid a feed has delivered up to (0 before its first)."""
    row = database.execute("SELECT position FROM cursors WHERE name = ?", [name]).fetchone()
    return row[0] if row else 0


def set_cursor(conn, name, position):
    conn.execute("INSERT INTO cursors (name, position) VALUES (?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET position = excluded.position", [name, position])


def counters(database):
    """The counters by name, frames_ok and readings with the readings stored
    since their last fold (m009)."""
    found = {name: value for name, value in
             database.execute("SELECT name, value FROM counters ORDER BY name")
             if not name.startswith("_")}
    _, count, frames, _ = _tail(database.conn)
    if count:
        found["readings"] = found.get("readings", 0) + count
        found["frames_ok"] = found.get("frames_ok", 0) + frames
    return found
