"""The gateway's rule engine at the hub: one evaluation at a time over every gateway's readings.

Each hub worker holds a huaico.rules.engine.RuleEngine over PostgreSQL
(gateway/hub/rules_store.py). A worker's batch is evaluated inside the
transaction that stores it (gateway/hub/store.py): the new frames are
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
  evaluations, and engine_changed keeps, for each subject (device, basin),
  the count at which one last moved it. A worker that finds the count
  moved since its own last evaluation forgets the trackers of the
  subjects moved since (RuleEngine.forget) and rebuilds just those from
  alert_state and the readings when next used, as a gateway does after a
  restart; the rest of its cache stays (before, it dropped all of it).
  A device whose consecutive frames fall to different workers is still
  rebuilt at each of them: feeding a kept window only what another worker
  added would need to know which readings those were (late and held
  frames come out of seq order), which nothing records.

Order: a gateway's stream of frames is dealt to the workers alternately,
so a worker's batch can commit before an older frame of the same device
in another worker's batch; a point rule would then take that older
reading as late and ignore it (seen: a day's catch-up whose flood onset
came one frame late). So the rules take each device's frames in sequence
order: a frame whose predecessor (seq - 1) has not been evaluated yet is
stored in frames but held back in engine_held, its readings out of
readings, until the predecessor comes (in any worker's later evaluation)
or it has waited HOLD_S (a frame lost for good, a new board epoch, a
killed worker's frames still with the broker): then the rules take it
and what follows, and a frame that comes after that is late data, as at
a gateway. A device's first frames at the hub wait HOLD_S too (nothing
tells which seq comes first: a gateway's catch-up of a new board arrives
at both workers at once), then go in seq order; a frame older than the
newest evaluated is taken at once. Frames in order are never held, so
live alerts wait for nothing.

Timers (silent devices, minimum durations, escalation, a basin's stale
gauges) run in tick(), by whichever worker gets the lock without waiting;
one that finds it taken tries again at its next turn (gateway/hub/worker.py),
not a tick later. A minimum-duration clock lives in alert_state (since),
and a tick loads a due tracker it does not hold (RuleEngine._load_timers),
so whichever worker ticks fires it, once: the level it commits is what
every other worker reads back. It does not matter which worker evaluated
the frames that started the clock, nor whether that worker still lives.
A tick that finds nothing due writes nothing: it does not count in
engine_runs (the other workers keep their windows) and its commit waits
for no disk, so a live frame that waits for the lock behind it waits
little.
The commit that queued messages also sends NOTIFY on CHANNEL, which wakes
the dispatcher (gateway/hub/dispatch.py) wherever it runs.
"""
import json
import logging

from huaico.hub import store as hub_store
from huaico.hub.rules_store import PgEngineStore
from huaico.rules import engine as rules

log = logging.getLogger("huaico.hub")

CHANNEL = "huaico_outbox"
# Also taken by the operator's writes (gateway/hub/operator.py).
LOCK_KEY = "huaico-hub-engine"
LOCK = "SELECT pg_advisory_xact_lock(hashtext('%s'))" % LOCK_KEY
_TRY_LOCK = "SELECT pg_try_advisory_xact_lock(hashtext('%s'))" % LOCK_KEY
# Long enough for a worker that is slow for a moment (starting, a loaded
# machine: 2 s was seen to be too short) or killed and restarted; a frame
# lost for good costs its successors this long, once.
HOLD_S = 10.0


class HubEngine:
    """The rules at one hub worker; evaluate() inside its store transaction,
    then committed() or rolled_back() after it."""

    def __init__(self, config):
        self.engine = rules.RuleEngine(None, config)
        self._seen = None  # engine_runs.generation after our last committed evaluation
        self._pending = None
        self._changed = set()  # subjects the transaction in hand moved
        self.queued = 0  # outbox rows queued by the transaction in hand

    def _catch_up(self, cur, generation):
        """Under the lock: forget the trackers of the subjects that other
        workers moved since our last evaluation (all of them when we know
        nothing, after a rollback or at start)."""
        if self._seen is None:
            self.engine.rolled_back()
        elif generation != self._seen:
            self.engine.forget(row[0] for row in cur.execute(
                "SELECT subject FROM engine_changed WHERE generation > %s",
                [self._seen]).fetchall())

    def _begin(self, store):
        """Under the lock: count this evaluation; catch up with the others."""
        generation = store.cur.execute("UPDATE engine_runs SET generation = generation + 1 "
                                       "WHERE id = 1 RETURNING generation").fetchone()[0]
        self._catch_up(store.cur, generation - 1)
        self._pending = generation

    def _look(self, store):
        """Under the lock, for a tick that may find nothing due: catch up
        with the others, and count nothing yet."""
        generation = store.cur.execute("SELECT generation FROM engine_runs "
                                       "WHERE id = 1").fetchone()[0]
        self._catch_up(store.cur, generation)
        self._seen = generation

    def _mark(self, store, generation):
        """Record the subjects this transaction moved, at `generation`, for
        the other workers' _catch_up."""
        changed = sorted(self._changed | store.saved)
        self._changed = set()
        if changed:
            store.cur.execute("INSERT INTO engine_changed (subject, generation) "
                              "SELECT unnest(%s::text[]), %s ON CONFLICT (subject) "
                              "DO UPDATE SET generation = excluded.generation",
                              [changed, generation])

    def evaluate(self, cur, frames, now):
        """Run the rules over new frames [(device id, seq, received,
        unsynced, rows)] whose readings are not inserted yet, in each
        device's sequence order; returns the frames whose readings go in
        now (the rest are held back)."""
        store = PgEngineStore(cur)
        if not frames or not self.engine.rules(store):
            return frames
        cur.execute(LOCK)
        self._begin(store)
        ready = self._evaluate(store, frames, sorted({f[0] for f in frames}), now)
        self._mark(store, self._pending)
        return ready

    def _evaluate(self, store, frames, device_ids, now):
        cur = store.cur
        last = dict(cur.execute("SELECT device_id, seq FROM engine_seq "
                                "WHERE device_id = ANY(%s)", [device_ids]).fetchall())
        waiting = {}
        for device_id, seq, received, unsynced, rows, held in cur.execute(
                "SELECT device_id, seq, received, unsynced, rows, held FROM engine_held "
                "WHERE device_id = ANY(%s)", [device_ids]).fetchall():
            rows = [tuple(row) for row in json.loads(rows)]
            waiting.setdefault(device_id, []).append(
                ((device_id, seq, received, unsynced, rows), held))
        for frame in frames:
            waiting.setdefault(frame[0], []).append((frame, None))
        ready, hold, taken, moved = [], [], [], {}
        for device_id, entries in waiting.items():
            entries.sort(key=lambda entry: entry[0][1])
            newest = last.get(device_id)
            for at, (frame, held) in enumerate(entries):
                seq = frame[1]
                if newest is None or seq > newest + 1:
                    oldest = min(now if h is None else h for _, h in entries[at:])
                    if now - oldest < HOLD_S:
                        hold += [(f, now) for f, h in entries[at:] if h is None]
                        break
                    if newest is not None:
                        log.warning("event=hub_rules_gap device=%s after=%d seq=%d",
                                    device_id, newest, seq)
                ready.append(frame)
                if held is not None:
                    taken.append((device_id, seq))
                newest = seq if newest is None else max(newest, seq)
            if newest is not None and newest != last.get(device_id):
                moved[device_id] = newest
        if ready:
            self._changed.update(f[0] for f in ready)
            devices = {}
            batch = []
            for device_id, _, _, _, rows in ready:
                if device_id not in devices:
                    devices[device_id] = store.device(device_id) or {
                        "id": device_id, "name": device_id, "site": None}
                batch.append((devices[device_id], rows))
            self._queued(cur, self.engine.on_frames(store, batch, now))
        if moved:
            cur.execute("INSERT INTO engine_seq (device_id, seq) SELECT * FROM "
                        "unnest(%s::text[], %s::bigint[]) ON CONFLICT (device_id) "
                        "DO UPDATE SET seq = excluded.seq",
                        [list(moved), list(moved.values())])
        if taken:
            cur.execute("DELETE FROM engine_held WHERE (device_id, seq) IN "
                        "(SELECT * FROM unnest(%s::text[], %s::bigint[]))",
                        [[t[0] for t in taken], [t[1] for t in taken]])
        if hold:
            cur.executemany("INSERT INTO engine_held (device_id, seq, received, unsynced, rows, "
                            "held) VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                            [(f[0], f[1], f[2], f[3], json.dumps(f[4]), h) for f, h in hold])
        return ready

    def tick(self, conn, now):
        """The timers and the frames held too long, in a transaction of
        their own, if no other worker is evaluating; False when one was
        (the caller tries again soon rather than a tick later)."""
        hub_store.prepare(conn)
        try:
            with conn.transaction():
                cur = conn.cursor()
                store = PgEngineStore(cur)
                if not self.engine.rules(store):
                    return True
                if not cur.execute(_TRY_LOCK).fetchone()[0]:
                    return False
                self._look(store)
                # Frames held past HOLD_S for a predecessor that did not come.
                due = [row[0] for row in cur.execute(
                    "SELECT DISTINCT device_id FROM engine_held WHERE held <= %s",
                    [now - HOLD_S]).fetchall()]
                if due:
                    hub_store.insert_readings(cur, self._evaluate(store, [], due, now))
                self._queued(cur, self.engine.tick(store, now))
                # Counted only if it changed something: a tick that found
                # nothing due writes nothing, so its commit waits for no disk
                # while it holds the lock a live frame may be waiting for,
                # and the other workers keep their windows.
                if cur.execute("SELECT pg_current_xact_id_if_assigned() IS NOT NULL"
                               ).fetchone()[0]:
                    self._pending = cur.execute(
                        "UPDATE engine_runs SET generation = generation + 1 WHERE id = 1 "
                        "RETURNING generation").fetchone()[0]
                    self._mark(store, self._pending)
        except BaseException:
            self.rolled_back()
            raise
        self.committed()
        return True

    def _queued(self, cur, ids):
        if ids:
            self.queued += len(ids)
            cur.execute("NOTIFY %s" % CHANNEL)

    def committed(self):
        if self._pending is not None:
            self._seen, self._pending = self._pending, None

    def rolled_back(self):
        self._seen = self._pending = None
        self._changed = set()
        self.engine.rolled_back()
