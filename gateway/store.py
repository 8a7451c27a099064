"""The single writer: frames in, readings committed, then acks out.

Every reader (serial, UDP, MQTT) puts (source, raw, received, reply) on one
queue; this one thread owns the database connection. It takes what arrived
within batch_ms (group commit: one fsync for many frames), and in ONE
transaction decodes and verifies each frame, checks its replay window,
hands the new frames (never duplicates, replays or rejects) to the rule
engine in arrival order, inserts all their readings with one executemany,
updates the devices, adds the counters and the rejects; it commits, and only
then sends the acks, one write per port for the whole batch. The engine's
alerts thus enter the outbox in the same transaction as the readings that
raised them. A crash before the commit loses no acked frame: the board
still holds it and resends it.

Per frame the writer does only what must be per frame (decode, MAC, window,
building its rows); everything that can be per batch is: the readings
insert, the device updates, the engine's rule lookup, the port writes. At
20k frames/s that is the difference between meeting the budget and not.

Clock handling: a frame flagged FLAG_CLOCK_UNSYNCED carries times from a
clock that was never set (seconds since boot). Its newest time (the base
time or the latest row, whichever is later) is taken to be the moment it
arrived, and every row keeps its offset from that: row time + (received -
newest). The relative spacing of a burst survives, the absolute time errs
late by the frame's transit and queueing delay, and the rows say so with
unsynced=1.

Sequence numbers (gateway/replay.py): a frame inside the window that was
stored already is a "duplicate" (a resend after a lost ack): acked again,
nothing stored, no rules. A frame older than the window that was stored
already is "replayed": rejected (counted, logged, recorded, no rules) but
still acked, because the board that resends it after a long-lost ack must
be able to drop it and an ack helps nobody else. A frame older than the
window that was never stored is authentic data whose first copy was lost
while newer frames got through: stored as a "late" frame rather than lost.

Bad input never stops the writer: each rejected frame gets a typed reason
(the decoder's, or "retired", "replayed"), a counter rejected_<reason>, a
log line naming the device, and a row in rejects.
"""
import logging
import queue
import threading
import time

from gateway import db, replay
from gateway.decoder import decode_frame
from protocol import channels
from protocol.cose import MacKey
from protocol.errors import FrameError, LinkError, ProtocolError
from protocol.frame import FLAG_CLOCK_UNSYNCED, encode_ack

log = logging.getLogger("huaico.store")

MAX_BATCH = 2000
QUEUE_LIMIT = 100000
_BATTERY = channels.get("battery").code  # volts with exponent -3: the value is mV
_RSSI = channels.get("rssi").code
_STOP = object()

_INSERT = ("INSERT OR IGNORE INTO readings (device_id, seq, channel, idx, time, value, "
           "quality, received, unsynced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


class RejectedFrame(FrameError):
    """A frame that decoded and verified but that policy refuses (retired, replayed)."""


class Counters:
    """Counts shared by readers and the writer; the writer flushes the deltas
    into the counters table inside its transactions."""

    def __init__(self):
        self._lock = threading.Lock()
        self._delta = {}
        self.totals = {}

    def add(self, name, n=1):
        with self._lock:
            self._delta[name] = self._delta.get(name, 0) + n
            self.totals[name] = self.totals.get(name, 0) + n

    def take(self):
        with self._lock:
            delta, self._delta = self._delta, {}
        return delta

    def put_back(self, delta):
        """Return deltas whose transaction rolled back (totals already have them)."""
        with self._lock:
            for name, n in delta.items():
                self._delta[name] = self._delta.get(name, 0) + n

    def snapshot(self):
        with self._lock:
            return dict(self.totals)


class _Device:
    """What the writer keeps of one device between batches."""

    __slots__ = ("row", "mac", "window", "dirty")

    def __init__(self, row, window_size):
        self.row = row
        self.mac = MacKey(bytes.fromhex(row["key"]), bool(row["allow_unsigned"]))
        self.window = replay.Window(window_size, row["last_seq"], replay.from_db(row["seq_window"]))
        self.dirty = False


class Writer:
    """The one thread that writes the database; see the module docstring.

    engine: an object with on_frames(conn, frames, now) -> outbox ids,
    frames being [(device, rows)] of the batch's new frames in arrival order
    whose rows are inserted after the call in the same transaction, and
    tick(conn, now) (gateway.rules.RuleEngine), or None. If it caches state
    between calls it may have rolled_back(), called after a transaction it
    took part in was rolled back, to drop that cache.
    on_commit(outbox_ids) runs after each commit that queued messages (the
    dispatcher's wake-up).

    A reply may have a send_all(acks) method (a serial port: one write for
    the batch's acks); otherwise it is called once per ack.
    """

    def __init__(self, database, *, engine=None, counters=None, window=64, batch_ms=5,
                 tick_s=5.0, on_commit=None, clock=time.time):
        self.database = database
        self.engine = engine
        self.counters = counters if counters is not None else Counters()
        self.window_size = window
        self.batch_s = batch_ms / 1000.0
        self.tick_s = tick_s
        self.on_commit = on_commit
        self.clock = clock
        self.queue = queue.Queue(QUEUE_LIMIT)
        self.last_frame = None  # receive time of the newest stored frame
        self._devices = {}
        self._data_version = None
        self._thread = None

    # Readers call these.

    def submit(self, source, raw, received, reply=None):
        """Queue one frame (bytes) or a reader's LinkError for the writer."""
        self.queue.put((source, raw, received, reply))

    @property
    def depth(self):
        return self.queue.qsize()

    # Life cycle.

    def start(self):
        self._thread = threading.Thread(target=self.run, name="writer", daemon=True)
        self._thread.start()

    def stop(self, timeout=30):
        """Process everything queued so far, commit, and end the thread."""
        if self._thread is None:
            return
        self.queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def run(self):
        next_tick = time.monotonic() + self.tick_s
        while True:
            wait = max(0.0, next_tick - time.monotonic()) if self.engine is not None else None
            try:
                first = self.queue.get(timeout=wait)
            except queue.Empty:
                first = None
            if first is not None:
                batch, stop = self._gather(first)
                if batch:
                    self.process(batch)
                if stop:
                    return
            if self.engine is not None and time.monotonic() >= next_tick:
                self.tick()
                next_tick = time.monotonic() + self.tick_s

    def _gather(self, first):
        """The batch that starts with `first`: all that is queued now, and what
        comes within batch_ms; (items, saw_stop)."""
        if first is _STOP:
            return [], True
        batch = [first]
        if self.queue.empty():
            # A lone frame (an alert on a quiet network) is not held for
            # company: under load the next batch gathers during this commit.
            return batch, False
        deadline = time.monotonic() + self.batch_s
        get = self.queue.get
        while len(batch) < MAX_BATCH:
            try:
                item = get(block=False)
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return batch, True
            batch.append(item)
        return batch, False

    # The transaction.

    def process(self, items):
        """Store a batch in one transaction, then ack; returns the outcomes
        ("stored", "duplicate" or a reject reason), one per item."""
        now = self.clock()
        try:
            outcomes, acks, outbox = self._transaction(items, now, isolate=False)
        except Exception:
            log.exception("event=batch_failed frames=%d retry=one_by_one", len(items))
            outcomes, acks, outbox = [], [], []
            for item in items:
                try:
                    result = self._transaction([item], now, isolate=True)
                except Exception as exc:
                    # Not acked: the board keeps the frame and sends it again.
                    log.error("event=frame_not_stored source=%s error=%r", item[0], exc)
                    self.counters.add("store_failed")
                    outcomes.append("store_failed")
                    continue
                outcomes += result[0]
                acks += result[1]
                outbox += result[2]
        self._send_acks(acks)
        if outbox and self.on_commit is not None:
            self.on_commit(outbox)
        return outcomes

    def _send_acks(self, acks):
        """Acks in order, grouped per reply target that can take them all at once."""
        grouped = {}
        for reply, ack, source in acks:
            if hasattr(reply, "send_all"):
                grouped.setdefault(reply, (source, []))[1].append(ack)
                continue
            self._reply(reply, ack, source, 1)
        for reply, (source, batch) in grouped.items():
            self._reply(reply.send_all, batch, source, len(batch))

    def _reply(self, send, data, source, count):
        try:
            send(data)
        except Exception as exc:  # a port that went away: the board will resend
            self.counters.add("ack_failed", count)
            log.warning("event=ack_failed source=%s acks=%d error=%r", source, count, exc)

    def _transaction(self, items, now, isolate):
        outcomes = []
        acks = []
        outbox = []
        batch = _Batch()
        delta = {}
        try:
            with db.transaction(self.database) as conn:
                self._refresh(conn)
                for source, raw, received, reply in items:
                    outcome, ack = self._one(conn, source, raw, received, now, batch, delta)
                    outcomes.append(outcome)
                    if ack is not None and reply is not None:
                        acks.append((reply, ack, source))
                if batch.frames and self.engine is not None:
                    outbox += self._rules(conn, batch.frames, now, isolate, delta)
                if batch.readings:
                    before = conn.total_changes
                    conn.executemany(_INSERT, batch.readings)
                    delta["readings"] = conn.total_changes - before
                self._save_devices(conn)
                rejects = batch.rejects
                if rejects:
                    db.add_rejects(conn, rejects)
                for name, n in delta.items():
                    self.counters.add(name, n)
                pending = self.counters.take()
                try:
                    if pending:
                        db.add_counters(conn, pending)
                except BaseException:
                    self.counters.put_back(pending)
                    raise
        except BaseException:
            self._devices.clear()  # windows must match the database again
            self._data_version = None
            forget = getattr(self.engine, "rolled_back", None)
            if forget is not None:
                forget()
            raise
        return outcomes, acks, outbox

    def _refresh(self, conn):
        """Forget cached devices when another connection (the CLI rotating a
        key or retiring a device) has committed since the last batch."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if version != self._data_version:
            self._devices.clear()
            self._data_version = version

    def _device(self, conn, kid_hex):
        device = self._devices.get(kid_hex)
        if device is None:
            cursor = conn.execute("SELECT * FROM devices WHERE id = ?", [kid_hex])
            row = cursor.fetchone()
            if row is None:
                return None
            names = [column[0] for column in cursor.description]
            device = _Device(dict(zip(names, row)), self.window_size)
            self._devices[kid_hex] = device
        return device

    def _one(self, conn, source, raw, received, now, batch, delta):
        """One item inside the transaction: (outcome, ack bytes or None)."""
        rejects = batch.rejects
        if isinstance(raw, LinkError):
            self._reject(rejects, delta, received, None, "link_" + raw.reason, str(raw), source)
            return "link_" + raw.reason, None
        asked = []
        replayed = False

        def key_for(kid):
            asked.append(kid)
            device = self._device(conn, kid.hex())
            return device.mac if device is not None else None

        try:
            frame = decode_frame(raw, key_for)
            kid_hex = frame.kid.hex()
            device = self._devices[kid_hex]
            if device.row["retired"]:
                raise RejectedFrame("retired", -1, "device %s" % device.row["name"])
            verdict = device.window.check(frame.seq)
            if verdict == replay.OLD and (not frame.rows
                                          or (kid_hex, frame.seq) in batch.seqs
                                          or self._stored(conn, kid_hex, frame.seq)):
                replayed = True
        except ProtocolError as exc:
            kid_hex = asked[-1].hex() if asked else None
            self._reject(rejects, delta, received, kid_hex, exc.reason, str(exc), source)
            return exc.reason, None
        ack = encode_ack(frame.kid, device.mac, frame.seq, int(now))
        if replayed:
            # Acked all the same: the ack is harmless to anyone but the board,
            # which may be resending it because an ack was lost long ago.
            self._reject(rejects, delta, received, kid_hex, "replayed",
                         "seq %d was stored already and is older than the window (last %d)"
                         % (frame.seq, device.window.last), source)
            return "replayed", ack
        if verdict == replay.SEEN:
            delta["duplicates"] = delta.get("duplicates", 0) + 1
            return "duplicate", ack
        if verdict == replay.OLD:
            # Authentic and never stored (the first copy was lost while newer
            # frames got through): stored late rather than lost.
            delta["late_frames"] = delta.get("late_frames", 0) + 1
        rows = frame.rows
        unsynced = 1 if frame.flags & FLAG_CLOCK_UNSYNCED else 0
        if unsynced and rows:
            newest = max(frame.time, max(row[2] for row in rows))
            shift = int(received) - newest
            rows = [(c, i, t + shift, v, q) for c, i, t, v, q in rows]
        seq = frame.seq
        batch.readings += [(kid_hex, seq, c, i, t, v, q, received, unsynced)
                           for c, i, t, v, q in rows]
        batch.seqs.add((kid_hex, seq))
        delta["frames_ok"] = delta.get("frames_ok", 0) + 1
        if verdict == replay.NEW:
            device.window.mark(frame.seq)
        row = device.row
        row["last_seq"] = device.window.last
        row["last_seen"] = received
        for channel, index, _, value, _ in rows:
            if index == 0 and channel == _BATTERY:
                row["battery_mv"] = value
            elif index == 0 and channel == _RSSI:
                row["rssi"] = value
        device.dirty = True
        if received > (self.last_frame or 0):
            self.last_frame = received
        if self.engine is not None:
            batch.frames.append((_public(row), rows))
        return "stored", ack

    @staticmethod
    def _stored(conn, kid_hex, seq):
        return conn.execute("SELECT 1 FROM readings WHERE device_id = ? AND seq = ? LIMIT 1",
                            [kid_hex, seq]).fetchone() is not None

    def _rules(self, conn, frames, now, isolate, delta):
        """The engine's outbox ids; when a frame is retried alone and the engine
        still fails on it, its readings are kept without rules (logged)."""
        if not isolate:
            return list(self.engine.on_frames(conn, frames, now) or ())
        conn.execute("SAVEPOINT rules")
        try:
            ids = list(self.engine.on_frames(conn, frames, now) or ())
        except Exception:
            conn.execute("ROLLBACK TO SAVEPOINT rules")
            conn.execute("RELEASE SAVEPOINT rules")
            log.exception("event=rules_failed device=%s", frames[0][0]["name"])
            delta["rules_failed"] = delta.get("rules_failed", 0) + 1
            return []
        conn.execute("RELEASE SAVEPOINT rules")
        return ids

    def _save_devices(self, conn):
        changed = [device for device in self._devices.values() if device.dirty]
        if not changed:
            return
        for device in changed:
            device.row["seq_window"] = replay.to_db(device.window.bits)
            device.dirty = False
        conn.executemany(
            "UPDATE devices SET last_seq = ?, seq_window = ?, last_seen = ?, battery_mv = ?, "
            "rssi = ? WHERE id = ?",
            [(d.row["last_seq"], d.row["seq_window"], d.row["last_seen"], d.row["battery_mv"],
              d.row["rssi"], d.row["id"]) for d in changed])

    def _reject(self, rejects, delta, received, kid_hex, reason, detail, source):
        name = reason if reason.startswith("link_") else "rejected_" + reason
        delta[name] = delta.get(name, 0) + 1
        rejects.append((received, kid_hex, reason, detail, source))
        log.warning("event=reject device=%s reason=%s source=%s detail=%r",
                    kid_hex or "-", reason, source, detail)

    def tick(self):
        """The engine's timers (silent devices, durations, escalation) in their
        own transaction."""
        now = self.clock()
        try:
            with db.transaction(self.database) as conn:
                outbox = list(self.engine.tick(conn, now) or ())
        except Exception:
            log.exception("event=tick_failed")
            self.counters.add("tick_failed")
            return
        if outbox and self.on_commit is not None:
            self.on_commit(outbox)


class _Batch:
    """What one transaction gathers from its frames before writing it at once."""

    __slots__ = ("readings", "frames", "seqs", "rejects")

    def __init__(self):
        self.readings = []  # rows for _INSERT
        self.frames = []  # (device, rows) of new frames, for the engine
        self.seqs = set()  # (device id, seq) stored in this batch, not yet in readings
        self.rejects = []


def _public(row):
    """The device as the rule engine sees it: everything but the key."""
    shown = dict(row)
    shown.pop("key", None)
    return shown
