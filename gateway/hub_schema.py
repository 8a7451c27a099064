"""The hub's PostgreSQL schema: ordered, named migrations and monthly partitions.

Readings are partitioned by their time (declarative RANGE partitioning, one
partition a month, made ahead of time by ensure_partitions so that no insert
waits on DDL; a DEFAULT partition takes what falls outside, such as a board
whose clock was never set). With the TimescaleDB extension available,
readings is a hypertable instead (monthly chunks), which does the same and
compresses old chunks.

Idempotency lives in the keys: a frame is (device_id, seq) in `frames`, a
reading (device_id, seq, channel, idx, time) in `readings`; the workers
insert with ON CONFLICT DO NOTHING, so a frame heard by two gateways or
redelivered after a worker crash is stored once. `heard` keeps which
gateways brought it. `time` is seconds since 1970 (bigint), as at the edge.
"""
import calendar
import datetime

from gateway import hub_alert_schema

MONTH_S = 31 * 86400


def _m001_initial(cur, timescale):
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


MIGRATIONS = [("m001_initial", _m001_initial),
              ("m002_alerting", hub_alert_schema.m002_alerting)]


def timescale_available(cur):
    cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
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
                function(cur, timescale)
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


def ensure_partitions(cur, now=None, back=12, ahead=3):
    """Monthly partitions from `back` months before now to `ahead` after,
    where missing (a no-op under TimescaleDB, which makes its own chunks)."""
    import time as time_mod
    now = time_mod.time() if now is None else now
    cur.execute("SELECT partstrat FROM pg_partitioned_table p JOIN pg_class c "
                "ON c.oid = p.partrelid WHERE c.relname = 'readings'")
    if cur.fetchone() is None:
        return
    for year, month in _months(now, back, ahead):
        name = "readings_y%04dm%02d" % (year, month)
        nxt = (year + 1, 1) if month == 12 else (year, month + 1)
        cur.execute("SELECT 1 FROM pg_class WHERE relname = %s", [name])
        if cur.fetchone() is None:
            cur.execute("CREATE TABLE %s PARTITION OF readings FOR VALUES FROM (%d) TO (%d)"
                        % (name, month_start(year, month), month_start(*nxt)))
