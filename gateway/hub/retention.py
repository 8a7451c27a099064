"""Retention at the hub: months of readings and raw frames older than the
configured time are dropped whole.

A city's hub gathers every reading of every gateway; deleting old rows one
by one would cost as much write-ahead log as storing them did and leave the
tables bloated. Readings and frames are partitioned by month
(huaico.hub.schema), so a month is dropped as one file. A month goes when
all of it is older than the cutoff, so a month in progress is never cut.

The DEFAULT partitions hold what no month takes: boards whose clock was
never set stamp their frames near 1970. Their rows are deleted by the hub's
receive time instead, as at the edge (huaico.store.retention), so a frame from an
unset clock is not thrown away on arrival. `heard` and `rejects` carry a
receive time and are deleted by it.

Dropping a partition locks its parent table against the workers' inserts
for a moment; lock_timeout bounds the wait behind a long read, and a month
not dropped this time is dropped by the next pass. One pass at a time,
whatever the number of workers: a transaction-scoped advisory lock.
"""
import time

from huaico.hub import schema as hub_schema

LOCK_TIMEOUT_MS = 2000
_DEFAULTS = (("readings_default", "received"), ("frames_default", "received"),
             ("heard", "received"), ("rejects", "time"))


class RetentionError(ValueError):
    """A retention that cannot be applied (a period of none or of less than a month)."""


def _hypertable(cur, table):
    cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
    if cur.fetchone() is None:
        return False
    cur.execute("SELECT 1 FROM timescaledb_information.hypertables "
                "WHERE hypertable_name = %s", [table])
    return cur.fetchone() is not None


def check(keep_days):
    """RetentionError unless `keep_days` keeps at least a whole month."""
    if keep_days < 31:
        raise RetentionError("keep at least 31 days (a whole month), not %r" % keep_days)


def apply(conn, keep_days, now=None):
    """Drop the months of readings and frames that ended more than
    `keep_days` ago and delete older rows of the DEFAULT partitions, heard
    and rejects; returns what was done ({"skipped": True} when another pass
    holds the lock)."""
    check(keep_days)
    now = time.time() if now is None else now
    cutoff = now - keep_days * 86400.0
    done = {"cutoff": int(cutoff), "dropped": [], "deleted": {}, "skipped": False}
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT pg_try_advisory_xact_lock(hashtext('huaico-hub-retention'))")
        if not cur.fetchone()[0]:
            done["skipped"] = True
            return done
        cur.execute("SET LOCAL lock_timeout = %d" % LOCK_TIMEOUT_MS)
        for table in hub_schema.PARTITIONED:
            for name, _, end in hub_schema.months(cur, table):
                if end <= cutoff:
                    cur.execute("DROP TABLE %s" % name)
                    done["dropped"].append(name)
        if _hypertable(cur, "readings"):
            # TimescaleDB's chunks are its months (not tested here: the
            # extension is not in Debian).
            cur.execute("SELECT drop_chunks('readings', older_than => %s::bigint)",
                        [int(cutoff)])
            done["dropped"] += [str(name) for (name,) in cur.fetchall()]
        for table, column in _DEFAULTS:
            cur.execute("SELECT to_regclass(%s)", [table])
            if cur.fetchone()[0] is None:
                continue  # readings_default: none beside a hypertable
            cur.execute("DELETE FROM %s WHERE %s < %%s" % (table, column), [cutoff])
            done["deleted"][table] = cur.rowcount
    return done
