"""The hub's PostgreSQL schema: ordered, named migrations and monthly partitions.

Readings and the raw frames are partitioned by their time (declarative
RANGE partitioning, one partition a month, made ahead of time by
ensure_partitions so that no insert waits on DDL; a DEFAULT partition takes
what falls outside, such as a board whose clock was never set), so that
retention drops a month whole (huaico.hub.retention). With the TimescaleDB extension available,
readings is a hypertable instead (monthly chunks), which does the same
(no compression policy is set). The tests run the plain path only: Debian 12 packages
no TimescaleDB (and PyPI's "timescaledb" is an unrelated SQLModel client), so
the hypertable branch of m001 and retention's drop_chunks are untested.

Idempotency lives in the keys: a frame is (device_id, seq, time) in `frames`, a
reading (device_id, seq, channel, idx, time) in `readings`; the workers
insert with ON CONFLICT DO NOTHING, so a frame heard by two gateways or
redelivered after a worker crash is stored once. `heard` keeps which
gateways brought it. `time` is seconds since 1970 (bigint), as at the edge.
"""
import calendar
import datetime
import re

from huaico.hub import alert_schema as hub_alert_schema

MONTH_S = 31 * 86400
_MONTH = re.compile(r"_y(\d{4})m(\d{2})\Z")


def _m001_initial(cur, timescale, now):
    cur.execute("""
        CREATE TABLE devices (
            id text PRIMARY KEY, name text NOT NULL UNIQUE, site text, board text,
            transport text, lat double precision, lon double precision, key text NOT NULL,
            allow_unsigned boolean NOT NULL DEFAULT false,
            retired boolean NOT NULL DEFAULT false, created double precision,
            last_seen double precision, battery_mv integer, rssi integer)""")
    cur.execute("""
        CREATE TABLE frames (
            device_id text NOT NULL, seq bigint NOT NULL, time bigint NOT NULL,
            received double precision NOT NULL, gateway text NOT NULL, link text,
            rssi integer, raw bytea NOT NULL, stored timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (device_id, seq))""")
    cur.execute("""
        CREATE TABLE heard (
            device_id text NOT NULL, seq bigint NOT NULL, gateway text NOT NULL,
            received double precision NOT NULL, PRIMARY KEY (device_id, seq, gateway))""")
    columns = """
            device_id text NOT NULL, seq bigint NOT NULL, channel integer NOT NULL,
            idx integer NOT NULL, time bigint NOT NULL, value bigint NOT NULL,
            quality integer NOT NULL, received double precision NOT NULL,
            unsynced boolean NOT NULL,
            PRIMARY KEY (device_id, seq, channel, idx, time)"""
    if timescale:
        cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        cur.execute("CREATE TABLE readings (%s)" % columns)
        cur.execute("SELECT create_hypertable('readings', 'time', "
                    "chunk_time_interval => %d)" % MONTH_S)
    else:
        cur.execute("CREATE TABLE readings (%s) PARTITION BY RANGE (time)" % columns)
        cur.execute("CREATE TABLE readings_default PARTITION OF readings DEFAULT")
    cur.execute("CREATE INDEX readings_device_channel_time ON readings (device_id, channel, time)")
    cur.execute("CREATE TABLE counters (name text PRIMARY KEY, value bigint NOT NULL)")
    cur.execute("""
        CREATE TABLE rejects (
            id bigserial PRIMARY KEY, time double precision NOT NULL, device_id text,
            gateway text, reason text NOT NULL, detail text)""")


def _m002_frames_by_time(cur, timescale, now):
    """Frames partitioned by month like readings, so that retention
    (huaico.hub.retention) drops old months of raw bytes whole instead of
    deleting row by row; and devices' last frame for `huaico status --hub`.
    The key becomes (device_id, seq, time): `time` is the frame's base time
    from the signed payload, the same in every copy, so a frame is still
    stored once whoever brings it."""
    cur.execute("ALTER TABLE frames RENAME TO frames_m001")
    cur.execute("ALTER INDEX frames_pkey RENAME TO frames_m001_pkey")
    cur.execute("""
        CREATE TABLE frames (
            device_id text NOT NULL, seq bigint NOT NULL, time bigint NOT NULL,
            received double precision NOT NULL, gateway text NOT NULL, link text,
            rssi integer, raw bytea NOT NULL, stored timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (device_id, seq, time)) PARTITION BY RANGE (time)""")
    cur.execute("CREATE TABLE frames_default PARTITION OF frames DEFAULT")
    # The months must exist before the copy: rows in the DEFAULT partition
    # would forbid making their month's partition later.
    ensure_partitions(cur, now, tables=("frames",))
    cur.execute("INSERT INTO frames SELECT * FROM frames_m001")
    cur.execute("DROP TABLE frames_m001")
    cur.execute("ALTER TABLE devices ADD COLUMN last_seq bigint, ADD COLUMN place text")
    cur.execute("UPDATE devices d SET last_seq = f.seq FROM (SELECT device_id, max(seq) AS seq "
                "FROM frames GROUP BY device_id) f WHERE f.device_id = d.id")


def _m004_names_in_byte_order(cur, timescale, now):
    """Device and rule names sort as at a gateway: the operator's commands
    list them ORDER BY name, which SQLite compares byte by byte, and a
    server's default collation need not (en_US puts "alto" before "Zeta",
    SQLite "Zeta" first). "C" is PostgreSQL's byte order, the same in every
    server."""
    for table in ("devices", "rules"):
        cur.execute('ALTER TABLE %s ALTER COLUMN name TYPE text COLLATE "C"' % table)


def _m006_devices_live(cur, timescale, now):
    """The name the commands shared with a gateway read devices by
    (huaico.store.db m010: there the row is overlaid with the newest
    readings). Here each batch writes the row itself, so the view is the
    table; a migration that adds a devices column recreates it."""
    cur.execute("CREATE VIEW devices_live AS SELECT * FROM devices")


def _m007_engine_changed(cur, timescale, now):
    """Which subjects (device ids, basin subjects) each evaluation at the
    hub moved, by engine_runs generation: a worker that finds the
    generation moved forgets only those trackers (gateway/hub/rules.py),
    not all of them. One row a subject, so it does not grow with time."""
    cur.execute("CREATE TABLE engine_changed (subject text PRIMARY KEY, "
                "generation bigint NOT NULL)")
    cur.execute("CREATE INDEX engine_changed_generation ON engine_changed (generation)")


def _m008_hub_workers(cur, timescale, now):
    """What each worker started with a config told the hub of it: the
    [alerts] and [[groups]] it sends by and its SMS backend's kind (no port,
    no password), so that `huaico alerts test --hub` queues for the groups
    the workers know rather than those of the operator's own huaico.toml."""
    cur.execute("CREATE TABLE hub_workers (worker_id text PRIMARY KEY, host text NOT NULL, "
                "started double precision NOT NULL, config text NOT NULL)")


MIGRATIONS = [("m001_initial", _m001_initial), ("m002_frames_by_time", _m002_frames_by_time),
              ("m003_alerting", hub_alert_schema.m003_alerting),
              ("m004_names_in_byte_order", _m004_names_in_byte_order),
              ("m005_incoming", hub_alert_schema.m005_incoming),
              ("m006_devices_live", _m006_devices_live),
              ("m007_engine_changed", _m007_engine_changed),
              ("m008_hub_workers", _m008_hub_workers)]
PARTITIONED = ("readings", "frames")


def timescale_available(cur):
    """True when readings can be a hypertable: the extension is installed on
    the server and preloaded (CREATE EXTENSION refuses it otherwise, and
    the migration would fail rather than fall back to plain partitions)."""
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb' "
                "AND 'timescaledb' = ANY(string_to_array(replace(current_setting("
                "'shared_preload_libraries'), ' ', ''), ','))")
    return cur.fetchone() is not None


def migrate(conn, now=None):
    """Apply the migrations not yet recorded, then make the partitions around
    `now`; returns the names applied. Safe when several workers start at
    once: an advisory lock lets one of them migrate."""
    applied = []
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT pg_advisory_xact_lock(hashtext('huaico-hub-migrate'))")
        cur.execute("CREATE TABLE IF NOT EXISTS hub_migrations "
                    "(name text PRIMARY KEY, applied timestamptz NOT NULL DEFAULT now())")
        cur.execute("SELECT name FROM hub_migrations")
        done = {row[0] for row in cur.fetchall()}
        timescale = timescale_available(cur)
        for name, function in MIGRATIONS:
            if name not in done:
                function(cur, timescale, now)
                cur.execute("INSERT INTO hub_migrations (name) VALUES (%s)", [name])
                applied.append(name)
        ensure_partitions(cur, now)
    return applied


def month_start(year, month):
    return calendar.timegm((year, month, 1, 0, 0, 0))


def _months(now, back, ahead):
    day = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    index = day.year * 12 + day.month - 1
    for at in range(index - back, index + ahead + 1):
        yield at // 12, at % 12 + 1


def partition_name(table, year, month):
    return "%s_y%04dm%02d" % (table, year, month)


def months(cur, table):
    """[(name, start, end)] of `table`'s monthly partitions, oldest first
    (start and end in epoch seconds)."""
    cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s", [table])
    found = []
    for (name,) in cur.fetchall():
        match = _MONTH.search(name)
        if match:
            year, month = int(match.group(1)), int(match.group(2))
            nxt = (year + 1, 1) if month == 12 else (year, month + 1)
            found.append((name, month_start(year, month), month_start(*nxt)))
    return sorted(found, key=lambda item: item[1])


def ensure_partitions(cur, now=None, back=12, ahead=3, tables=PARTITIONED):
    """Monthly partitions of each table from `back` months before now to
    `ahead` after, where missing (none for a TimescaleDB hypertable, which
    makes its own chunks). Never older than the oldest there is: a month
    that retention (huaico.hub.retention) dropped stays dropped, and a
    late frame of it waits in the DEFAULT partition until it ages out."""
    import time as time_mod
    now = time_mod.time() if now is None else now
    for table in tables:
        cur.execute("SELECT partstrat FROM pg_partitioned_table p JOIN pg_class c "
                    "ON c.oid = p.partrelid WHERE c.relname = %s", [table])
        if cur.fetchone() is None:
            continue
        existing = months(cur, table)
        names = {name for name, _, _ in existing}
        for year, month in _months(now, back, ahead):
            name = partition_name(table, year, month)
            start = month_start(year, month)
            if name in names or (existing and start < existing[0][1]):
                continue
            nxt = (year + 1, 1) if month == 12 else (year, month + 1)
            _add_month(cur, table, name, start, month_start(*nxt))


def _add_month(cur, table, name, start, end):
    """Make the month's partition. Rows of that month already in the DEFAULT
    partition (a board whose clock runs months ahead) would make PostgreSQL
    refuse the partition, so they are moved into it first."""
    cur.execute("SELECT 1 FROM %s_default WHERE time >= %d AND time < %d LIMIT 1"
                % (table, start, end))
    if cur.fetchone() is None:
        cur.execute("CREATE TABLE %s PARTITION OF %s FOR VALUES FROM (%d) TO (%d)"
                    % (name, table, start, end))
        return
    cur.execute("CREATE TABLE %s (LIKE %s INCLUDING DEFAULTS)" % (name, table))
    cur.execute("WITH moved AS (DELETE FROM %s_default WHERE time >= %d AND time < %d "
                "RETURNING *) INSERT INTO %s SELECT * FROM moved" % (table, start, end, name))
    cur.execute("ALTER TABLE %s ATTACH PARTITION %s FOR VALUES FROM (%d) TO (%d)"
                % (table, name, start, end))
