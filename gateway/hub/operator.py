"""`huaico rules|alerts ... --hub`: the operator's rules and alerts commands on the hub's PostgreSQL.

The commands are written once over huaico.rules.store.EngineStore
(gateway/cli/alerts.py); here that store is PgEngineStore on a connection
of the operator's own. Reads autocommit, so a listing holds no transaction
open against the workers. A write (a rule added, changed or removed, an
alert acknowledged, a test message queued) is one transaction that first
takes the engine's advisory lock (gateway/hub/rules.py), as a worker's
evaluation does: it never lands in the middle of an evaluation that read
the rules before it (a removed rule's state written back by a worker that
still held it), and the next evaluation sees it whole. The workers pick up
a rule change by the rules' stamp, as a gateway's writer does.

A worker holds that lock for one evaluation (milliseconds), so a write that
has waited LOCK_WAIT_S for it is stuck behind something else (a session
left idle in its transaction, a wedged worker): it gives up with one line
naming the session that holds the lock, rather than hang the operator's
SSH session. The workers name their sessions (application_name
"huaico-hub <worker id>", gateway/hub/worker.py), so the line says which.
"""
import contextlib
import json

from huaico.hub import reader as hub_reader
from huaico.hub.rules import LOCK, LOCK_KEY
from huaico.hub.rules_store import PgEngineStore

LOCK_WAIT_S = 10.0
# Who holds the engine's advisory lock: pg_locks splits a bigint key into
# classid (high half) and objid (low half), objsubid 1.
_HOLDER = """
    SELECT a.pid, coalesce(nullif(a.application_name, ''), '?'), host(a.client_addr), a.state,
           extract(epoch FROM now() - coalesce(a.xact_start, a.query_start)), a.query
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
      AND ((l.classid::bigint << 32) | l.objid::bigint) = hashtext(%s)::bigint"""


class EngineBusy(hub_reader.HubReadError):
    """The engine's lock was not free within LOCK_WAIT_S."""


class HubRules:
    """The hub's rules and alerts for one command: store (reads), write()
    (a locked transaction) and database (the read interface, for plots)."""

    def __init__(self, conn):
        self.conn = conn
        self.store = PgEngineStore(conn)
        self.database = hub_reader.HubDatabase(conn)

    @contextlib.contextmanager
    def write(self):
        """The store inside one transaction holding the engine's lock;
        EngineBusy when it was not free within LOCK_WAIT_S."""
        import psycopg
        locked = False
        try:
            with self.conn.transaction():
                cur = self.conn.cursor()
                # Bounds this wait only: the write's own statements wait as usual.
                cur.execute("SELECT set_config('lock_timeout', %s, true)",
                            ["%dms" % (LOCK_WAIT_S * 1000)])
                cur.execute(LOCK)
                cur.execute("SET LOCAL lock_timeout TO DEFAULT")
                locked = True
                yield PgEngineStore(cur)
        except psycopg.errors.LockNotAvailable:
            if locked:
                raise
            raise EngineBusy(self._busy()) from None

    def _busy(self):
        """One line: the lock was not free, and who holds it."""
        holders = self.conn.execute(_HOLDER, [LOCK_KEY]).fetchall()
        if not holders:
            return ("the hub's rule engine was busy for %g s (its lock is free now): "
                    "try again" % LOCK_WAIT_S)
        pid, name, host, state, age, query = holders[0]
        return ("the hub's rule engine is busy: its lock was not free within %g s; held by "
                "pid %d (%s%s, %s for %.0f s, last statement: %s); try again, or end that "
                "session (SELECT pg_terminate_backend(%d))"
                % (LOCK_WAIT_S, pid, name, " at %s" % host if host else "", state, age or 0,
                   " ".join((query or "-").split())[:80], pid))

    def worker_config(self):
        """(worker id, host, started, config sections) of the worker whose
        config a test message should follow: of those that told the hub
        (hub_workers), the last started with an SMS backend (it is the one
        that sends SMS), else the last started; None when none did."""
        rows = self.conn.execute("SELECT worker_id, host, started, config FROM hub_workers "
                                 "ORDER BY started DESC, worker_id").fetchall()
        known = [(worker_id, host, started, json.loads(config))
                 for worker_id, host, started, config in rows]
        sending = [row for row in known if row[3]["sms"]["backend"] != "none"]
        return (sending or known or [None])[0]

    def close(self):
        self.conn.close()


def open_rules(dsn):
    """HubRules on `dsn`; HubReadError naming what is wrong."""
    try:
        import psycopg
    except ImportError:
        raise hub_reader.HubReadError(
            "the hub's rules and alerts need psycopg: pip install 'huaico[hub]'") from None
    try:
        conn = psycopg.connect(dsn, autocommit=True, application_name="huaico operator")
    except psycopg.Error as exc:
        # libpq's message runs over two lines ("Is the server running ...").
        raise hub_reader.HubReadError("cannot connect to the hub's PostgreSQL: %s"
                                      % " ".join(str(exc).split())) from None
    hub = HubRules(conn)
    tables = set(hub.database.table_names())
    if not {"rules", "alerts", "outbox"} <= tables:
        conn.close()
        raise hub_reader.HubReadError(
            "the hub's database has no %s: run `huaico hub init`"
            % ("huaico schema" if "readings" not in tables else "rules and alerts tables"))
    return hub
