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
"""
import contextlib

from huaico.hub import reader as hub_reader
from huaico.hub.rules import LOCK
from huaico.hub.rules_store import PgEngineStore


class HubRules:
    """The hub's rules and alerts for one command: store (reads), write()
    (a locked transaction) and database (the read interface, for plots)."""

    def __init__(self, conn):
        self.conn = conn
        self.store = PgEngineStore(conn)
        self.database = hub_reader.HubDatabase(conn)

    @contextlib.contextmanager
    def write(self):
        """The store inside one transaction holding the engine's lock."""
        with self.conn.transaction():
            cur = self.conn.cursor()
            cur.execute(LOCK)
            yield PgEngineStore(cur)

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
        conn = psycopg.connect(dsn, autocommit=True)
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
