"""The gateway's rule engine at the hub: one evaluation at a time over every gateway's readings.

Each hub worker holds a gateway.rules.RuleEngine over PostgreSQL
(gateway/engine_store_pg.py). A worker's batch is evaluated inside the
transaction that stores it (gateway/hub_store.py): the new frames are
inserted first (ON CONFLICT DO NOTHING tells which are new, so a frame
heard by two gateways reaches the rules once), then the worker takes the
engine's transaction-scoped advisory lock, runs the rules over the new
frames' readings, inserts those readings and commits; the commit releases
the lock. So:

- evaluations never overlap, and every committed reading has been through
  the rules: what a worker reads as history under the lock is exactly
  what the engine has seen, as the gateway's writer sees its own table;
- alert_state, alerts and the outbox commit with the readings that moved
  them, or not at all (a worker killed before its commit leaves nothing:
  the broker redelivers its messages and another evaluation takes them);
- a worker's in-memory windows are only its cache: engine_runs counts
  evaluations, and a worker that finds the count moved by someone else
  since its own last one rebuilds them from alert_state and the readings
  (RuleEngine.rolled_back), as a gateway does after a restart.

Timers (silent devices, minimum durations, escalation, a basin's stale
gauges) run in tick(), by whichever worker gets the lock without waiting.
The commit that queued messages also sends NOTIFY on CHANNEL, which wakes
the dispatcher (gateway/hub_dispatch.py) wherever it runs.
"""
import logging

from gateway import rules
from gateway.engine_store_pg import PgEngineStore

log = logging.getLogger("huaico.hub")

CHANNEL = "huaico_outbox"
_LOCK = "SELECT pg_advisory_xact_lock(hashtext('huaico-hub-engine'))"
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('huaico-hub-engine'))"


class HubEngine:
    """The rules at one hub worker; evaluate() inside its store transaction,
    then committed() or rolled_back() after it."""

    def __init__(self, config):
        self.engine = rules.RuleEngine(None, config)
        self._seen = None  # engine_runs.generation after our last committed evaluation
        self._pending = None
        self.queued = 0  # outbox rows queued by the transaction in hand

    def _begin(self, store):
        """Under the lock: count this evaluation; forget the cache if another
        worker evaluated since ours."""
        generation = store.cur.execute("UPDATE engine_runs SET generation = generation + 1 "
                                       "WHERE id = 1 RETURNING generation").fetchone()[0]
        if generation - 1 != self._seen:
            self.engine.rolled_back()
        self._pending = generation

    def evaluate(self, cur, frames, now):
        """Run the rules over new frames [(device id, rows)] whose rows are
        not inserted yet; returns the outbox ids queued."""
        store = PgEngineStore(cur)
        if not frames or not self.engine.rules(store):
            return []
        cur.execute(_LOCK)
        self._begin(store)
        devices = {}
        batch = []
        for device_id, rows in frames:
            if device_id not in devices:
                devices[device_id] = store.device(device_id) or {
                    "id": device_id, "name": device_id, "site": None}
            batch.append((devices[device_id], rows))
        ids = self.engine.on_frames(store, batch, now)
        self._queued(cur, ids)
        return ids

    def tick(self, conn, now):
        """The timers, in a transaction of their own, if no other worker is
        evaluating; returns the outbox ids queued."""
        try:
            with conn.transaction():
                cur = conn.cursor()
                store = PgEngineStore(cur)
                if not self.engine.rules(store) or not cur.execute(_TRY_LOCK).fetchone()[0]:
                    return []
                self._begin(store)
                ids = self.engine.tick(store, now)
                self._queued(cur, ids)
        except BaseException:
            self.rolled_back()
            raise
        self.committed()
        return ids

    def _queued(self, cur, ids):
        if ids:
            self.queued += len(ids)
            cur.execute("NOTIFY %s" % CHANNEL)

    def committed(self):
        if self._pending is not None:
            self._seen, self._pending = self._pending, None

    def rolled_back(self):
        self._seen = self._pending = None
        self.engine.rolled_back()
