"""The single writer: frames in, readings committed, then acks out.

Every reader (serial, UDP, MQTT) puts (source, raw, received, reply) on one
queue; this one thread owns the database connection. It takes what arrived
within batch_ms (group commit: one fsync for many frames), and in ONE
transaction decodes and verifies each frame, checks its replay window,
hands the new frames (never duplicates, replays or rejects) to the rule
engine in arrival order, inserts all their readings with one executemany,
writes the device rows those readings cannot stand for (none, for most
frames: huaico.store.db m010; the writer holds each device's newest state
and rebuilds it from the row and the readings after it when it loads the
device), adds the counters and the rejects; it commits, and only
then sends the acks, one write per port for the whole batch. The engine's
alerts thus enter the outbox in the same transaction as the readings that
raised them. A crash before the commit loses no acked frame: the board
still holds it and resends it.

Per frame the writer does only what must be per frame (decode, MAC, window,
building its rows); everything that can be per batch is: the readings
insert, the device updates, the engine's rule lookup, the port writes. At
20k frames/s that is the difference between meeting the budget and not.
At field rates (a frame a minute per device) nothing arrives together and
each frame is a commit of its own; what that writes to an SD card, and
the schema and settings that keep it down, are in huaico.store.db's docstring.

Clock handling: a frame flagged FLAG_CLOCK_UNSYNCED carries times from a
clock that was never set (seconds since boot). Its newest time (the base
time or the latest row, whichever is later) is taken to be the moment it
arrived, and every row keeps its offset from that: row time + (received -
newest). The relative spacing of a burst survives, the absolute time errs
late by the frame's transit and queueing delay, and the rows say so with
unsynced=1. A synced frame whose newest time is more than
clock.FUTURE_TOLERANCE_S ahead of the gateway's clock, while that clock is
trusted, is restamped the same way (counted restamped_future, logged): a
board's clock that ran ahead cannot put readings in the future, where they
would outrank every real reading in the rules. The gateway's clock
(huaico.clock) also gives the acks' time, none while it is not trusted,
and its offset (network time) is added to the readers' receive times.

A reading outside its channel's valid range (protocol.channels) is stored
with quality out_of_range, so no threshold rule acts on it (counted
out_of_range, logged).

Epochs (SPEC.md 1.3): a version 2 frame carries its board's epoch. A new
one (a re-flashed board) becomes the device's current epoch, the replay
window restarts and epoch_changes is counted; a frame of an epoch the
device has left is refused as "old_epoch", never acked. Version 1 frames
are epoch 0.

Sequence numbers (gateway/ingest/replay.py): a frame inside the window that was
stored already is a "duplicate" (a resend after a lost ack): acked again,
nothing stored, no rules. A frame older than the window that was stored
already is "replayed": rejected (counted, logged, recorded, no rules) but
still acked, because the board that resends it after a long-lost ack must
be able to drop it and an ack helps nobody else. Either is acked only when
its readings are the ones stored under that number: a frame whose number
was used for other readings is a board that started counting again (a
version 1 board that lost its flash), refused as "seq_reset" and never
acked, so the board keeps it until an operator runs `huaico device
reset-sequence`. A frame older than the window that was never stored is
authentic data whose first copy was lost while newer frames got through:
stored as a "late" frame rather than lost.

Bad input never stops the writer: each rejected frame gets a typed reason
(the decoder's, or "retired", "replayed", "old_epoch", "seq_reset"), a counter rejected_<reason>, a
log line naming the device, and a row in rejects.
"""
import logging
import queue
import threading
import time

from huaico import clock as clock_mod
from huaico.ingest import replay
from huaico.ingest.decoder import decode_frame
from huaico.protocol import channels
from huaico.protocol.cose import MacKey
from huaico.protocol.errors import FrameError, LinkError, ProtocolError
from huaico.protocol.frame import FLAG_CLOCK_UNSYNCED, Q_OK, Q_OUT_OF_RANGE, encode_ack
from huaico.store import db

log = logging.getLogger("huaico.store")

MAX_BATCH = 2000
LOG_EVERY_S = 60  # at most one restamped_future line per device in this time
QUEUE_LIMIT = 100000
_BATTERY = channels.get("battery").code  # volts with exponent -3: the value is mV
_RSSI = channels.get("rssi").code
_STOP = object()
# Valid ranges by channel code, as sent (scaled integers).
_RANGES = {code: (channel.lo, channel.hi) for code, channel in channels.BY_CODE.items()}

_INSERT_RAW = ("INSERT INTO frames (device_id, seq, received, link, rssi, raw) "
               "VALUES (?, ?, ?, ?, ?, ?)")
_INSERT = ("INSERT OR IGNORE INTO readings (device_id, seq, channel, idx, time, value, "
           "quality, received, unsynced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")


class RejectedFrame(FrameError):
    """A frame that decoded and verified but that policy refuses (retired, replayed)."""


class Counters:
    """Counts shared by readers and the writer; the writer flushes the deltas
    into the counters table inside its transactions. frames_ok and readings
    only add to the totals: the database counts them from the readings
    (huaico.store.db m009)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._delta = {}
        self.totals = {}

    def add(self, name, n=1):
        with self._lock:
            if name not in db.DERIVED_COUNTERS:
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

    __slots__ = ("row", "mac", "window", "old_epochs", "alone")

    def __init__(self, row, window_size):
        self.row = row
        self.mac = MacKey(bytes.fromhex(row["key"]), bool(row["allow_unsigned"]))
        self.window = replay.Window(window_size, row["last_seq"], replay.from_db(row["seq_window"]))
        self.old_epochs = replay.epochs_from_db(row["old_epochs"])
        # The row must be written at this commit: it changed in a way the
        # readings do not show (huaico.store.db m010).
        self.alone = False


class Writer:
    """The one thread that writes the database; see the module docstring.

    clock: a huaico.clock.GatewayClock (now(), trusted, offset), or a plain
    callable giving a time that is taken as trusted.
    engine: an object with on_frames(conn, frames, now) -> outbox ids,
    frames being [(device, rows)] of the batch's new frames in arrival order
    whose rows are inserted after the call in the same transaction, and
    tick(conn, now) (huaico.rules.engine.RuleEngine), or None. If it caches state
    between calls it may have rolled_back(), called after a transaction it
    took part in was rolled back, to drop that cache.
    on_commit(outbox_ids) runs after each commit that queued messages (the
    dispatcher's wake-up); on_stored() after each commit whose frames were
    acked (the upstream forwarder's wake-up: frames leave for the hub now,
    not at its next poll).

    A reply may have a send_all(acks) method (a serial port: one write for
    the batch's acks); otherwise it is called once per ack.
    """

    def __init__(self, database, *, engine=None, counters=None, window=64, batch_ms=5,
                 tick_s=5.0, on_commit=None, clock=time.time, keep_raw=False,
                 on_stored=None):
        self.database = database
        # The stored frames' original bytes into `frames`, for huaico.hub.upstream.
        self.keep_raw = keep_raw
        self.engine = engine
        self.counters = counters if counters is not None else Counters()
        self.window_size = window
        self.batch_s = batch_ms / 1000.0
        self.tick_s = tick_s
        self.on_commit = on_commit
        self.on_stored = on_stored
        self.clock = clock if hasattr(clock, "now") else clock_mod.TrustedClock(clock)
        self.queue = queue.Queue(QUEUE_LIMIT)
        self.last_frame = None  # receive time of the newest stored frame
        self._devices = {}
        self._clock_saved = None  # the clock state last written to gateway_state
        self._folded = None  # time.monotonic() of the last fold of the counters
        self._seen_folded = None  # ... and of the device rows (huaico.store.db m010)
        self._unfolded = 0  # readings stored since then
        self._future_logged = {}  # device id -> when a restamped frame of it was last logged
        self._data_version = None
        self._thread = None

    # Readers call these.

    def submit(self, source, raw, received, reply=None):
        """Queue one frame (bytes) or a reader's LinkError for the writer."""
        self.queue.put((source, raw, received, reply))

    @property
    def depth(self):
        return self.queue.qsize()

    @property
    def alive(self):
        """The writer thread is running (the systemd watchdog asks)."""
        return self._thread is not None and self._thread.is_alive()

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
        now = self.clock.now()
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
        if acks and self.on_stored is not None:
            self.on_stored()
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
        clock = self.clock
        batch.trusted = clock.trusted
        batch.offset = clock.offset
        batch.ack_time = int(now) if batch.trusted else None
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
                if batch.raw:
                    conn.executemany(_INSERT_RAW, batch.raw)
                for name, n in delta.items():
                    self.counters.add(name, n)
                pending = self.counters.take()
                try:
                    self._store_readings(conn, batch, delta.get("frames_ok", 0), pending)
                except BaseException:
                    self.counters.put_back(pending)
                    raise
                self._save_devices(conn)
                self._save_clock(conn, now)
                rejects = batch.rejects
                if rejects:
                    db.add_rejects(conn, rejects)
        except BaseException:
            self._devices.clear()  # windows must match the database again
            self._data_version = None
            self._folded = None
            self._seen_folded = None
            self._clock_saved = None
            forget = getattr(self.engine, "rolled_back", None)
            if forget is not None:
                forget()
            raise
        return outcomes, acks, outbox

    def _store_readings(self, conn, batch, frames, pending):
        """Insert the batch's readings and write the pending counters; fold
        frames_ok and readings (huaico.store.db m009) when the counters page
        is written anyway, or FOLD_S after the last fold. The fold comes
        before the insert: this batch's readings start the next tail."""
        if pending or self._folded is None or time.monotonic() - self._folded >= db.FOLD_S:
            db.fold_counters(conn)
            self._folded = time.monotonic()
        counted = 0
        rows = batch.readings
        if rows:
            newest = conn.execute("SELECT max(rowid) FROM readings").fetchone()[0] or 0
            # rowcount, not total_changes: that one counts the seq_times
            # trigger's rows too (huaico.store.db m008).
            inserted = conn.executemany(_INSERT, rows).rowcount
            self.counters.add("readings", inserted)
            self._unfolded += inserted
            counted = db.frames_after(conn, newest)
            if inserted < len(rows):
                # A reading that was there already is not in the tail: the
                # rows of the batch's devices cannot be derived (m010).
                for device in batch.touched:
                    device.alone = True
        # A stored frame whose readings do not count it (it had none, or all
        # were there already) is written as a count.
        written = dict(pending)
        if frames > counted:
            written["frames_ok"] = frames - counted
        if written:
            db.add_counters(conn, written)

    def _save_clock(self, conn, now):
        """The clock's state into gateway_state when it changed."""
        clock = self.clock
        state = (clock.trusted, clock.source, clock.detail)
        if state != self._clock_saved:
            clock_mod.save_state(conn, clock, now)
            self._clock_saved = state

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
            self._catch_up(conn, device)
            self._devices[kid_hex] = device
        return device

    def _catch_up(self, conn, device):
        """Take into the row the frames stored after it was written, as _one
        took them when it stored them (huaico.store.db m010): the tail is in
        rowid order, a frame's readings are neighbours and share its number
        and receive time."""
        row = device.row
        frame = None
        # NOT INDEXED: read the tail by rowid, not the device's whole history
        # through the index.
        for seq, received, channel, index, value in conn.execute(
                "SELECT seq, received, channel, idx, value FROM readings NOT INDEXED "
                "WHERE rowid > ? AND device_id = ? ORDER BY rowid",
                [max(db.seen_mark(conn), row["seen_rowid"] or 0), row["id"]]):
            if (seq, received) != frame:
                frame = (seq, received)
                _seen(device, seq, received, device.window.check(seq) == replay.NEW)
            _reading(row, channel, index, value)

    def _one(self, conn, source, raw, received, now, batch, delta):
        """One item inside the transaction: (outcome, ack bytes or None)."""
        rejects = batch.rejects
        received += batch.offset
        if isinstance(raw, LinkError):
            self._reject(rejects, delta, received, None, "link_" + raw.reason, str(raw), source)
            return "link_" + raw.reason, None
        asked = []
        resent = None

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
            self._epoch(device, frame.epoch, delta, source)
            verdict = device.window.check(frame.seq)
            if verdict == replay.SEEN:
                resent = "duplicate"
            elif verdict == replay.OLD and (not frame.rows or (kid_hex, frame.seq) in batch.stored
                                            or self._stored(conn, device, frame.seq)):
                resent = "replayed"
            if resent is not None and not self._same(conn, device, frame, batch):
                raise RejectedFrame(
                    "seq_reset", -1, "seq %d was stored with other readings: the board counts "
                    "again from a lower number (flash lost?); recover with `huaico device "
                    "reset-sequence %s`" % (frame.seq, device.row["name"]))
        except ProtocolError as exc:
            kid_hex = asked[-1].hex() if asked else None
            self._reject(rejects, delta, received, kid_hex, exc.reason, str(exc), source)
            return exc.reason, None
        ack = encode_ack(frame.kid, device.mac, frame.seq, batch.ack_time)
        if resent == "replayed":
            # Acked all the same: the ack is harmless to anyone but the board,
            # which may be resending it because an ack was lost long ago.
            self._reject(rejects, delta, received, kid_hex, "replayed",
                         "seq %d was stored already and is older than the window (last %d)"
                         % (frame.seq, device.window.last), source)
            return "replayed", ack
        if resent == "duplicate":
            delta["duplicates"] = delta.get("duplicates", 0) + 1
            return "duplicate", ack
        if verdict == replay.OLD:
            # Authentic and never stored (the first copy was lost while newer
            # frames got through): stored late rather than lost.
            delta["late_frames"] = delta.get("late_frames", 0) + 1
        rows = frame.rows
        unsynced = 1 if frame.flags & FLAG_CLOCK_UNSYNCED else 0
        if rows:
            newest = max(frame.time, max(row[2] for row in rows))
            if not unsynced and batch.trusted and newest > now + clock_mod.FUTURE_TOLERANCE_S:
                unsynced = 1
                delta["restamped_future"] = delta.get("restamped_future", 0) + 1
                # A board whose clock runs ahead sends every frame so: a line a
                # minute per device, the counter has them all.
                if now - self._future_logged.get(kid_hex, -LOG_EVERY_S) >= LOG_EVERY_S:
                    self._future_logged[kid_hex] = now
                    log.warning("event=restamped_future device=%s seq=%d ahead_s=%d source=%s",
                                device.row["name"], frame.seq, newest - now, source)
            if unsynced:
                shift = int(received) - newest
                rows = [(c, i, t + shift, v, q) for c, i, t, v, q in rows]
            rows = self._ranged(rows, device, frame.seq, delta)
        seq = frame.seq
        batch.readings += [(kid_hex, seq, c, i, t, v, q, received, unsynced)
                           for c, i, t, v, q in rows]
        batch.stored[(kid_hex, seq)] = frame.rows
        delta["frames_ok"] = delta.get("frames_ok", 0) + 1
        _seen(device, seq, received, verdict == replay.NEW)
        row = device.row
        rssi = None
        for channel, index, _, value, _ in rows:
            if _reading(row, channel, index, value) == "rssi":
                rssi = value
        if self.keep_raw:
            batch.raw.append((kid_hex, seq, received, source, rssi, bytes(raw)))
        batch.touched.add(device)
        if not rows:
            device.alone = True  # a frame without readings leaves no trace in them
        if received > (self.last_frame or 0):
            self.last_frame = received
        if self.engine is not None:
            batch.frames.append((_public(row), rows))
        return "stored", ack

    def _epoch(self, device, epoch, delta, source):
        """Take a frame's epoch (SPEC.md 1.3): a new one restarts the window,
        one the device has left raises RejectedFrame."""
        row = device.row
        current = row["epoch"]
        if current == epoch:
            return
        if current is not None:
            # Epoch 0 (version 1) after epochs is a downgrade or old traffic:
            # refused like a left epoch until an operator resets the device.
            if epoch in device.old_epochs or epoch == 0:
                raise RejectedFrame("old_epoch", -1, "epoch %d of device %s was replaced by %d"
                                    % (epoch, row["name"], current))
            device.old_epochs.add(current)
            device.window = replay.Window(self.window_size)
            delta["epoch_changes"] = delta.get("epoch_changes", 0) + 1
            log.warning("event=epoch_new device=%s epoch=%d previous=%d last_seq=%s source=%s",
                        row["name"], epoch, current, row["last_seq"], source)
        row["epoch"] = epoch
        row["old_epochs"] = replay.epochs_to_db(device.old_epochs)
        device.alone = True

    @staticmethod
    def _ranged(rows, device, seq, delta):
        """rows with quality out_of_range on each ok reading outside its
        channel's valid range; the same list when there is none."""
        ranges = _RANGES
        bad = [at for at, (c, _, _, v, q) in enumerate(rows)
               if q == Q_OK and c in ranges and not ranges[c][0] <= v <= ranges[c][1]]
        if not bad:
            return rows
        rows = list(rows)
        for at in bad:
            c, i, t, v, _ = rows[at]
            rows[at] = (c, i, t, v, Q_OUT_OF_RANGE)
            log.warning("event=out_of_range device=%s seq=%d channel=%s idx=%d value=%d "
                        "valid=%d..%d", device.row["name"], seq, channels.get(c).name, i, v,
                        ranges[c][0], ranges[c][1])
        delta["out_of_range"] = delta.get("out_of_range", 0) + len(bad)
        return rows

    @staticmethod
    def _stored(conn, device, seq):
        row = device.row
        return bool(db.seq_rows(conn, row["id"], seq, row["seq_reset_at"] or 0, "1", limit=1))

    @staticmethod
    def _same(conn, device, frame, batch):
        """Whether a resent frame holds the readings stored under its seq: a
        true duplicate, not a board counting again. Times are compared only
        where both copies carry the board's own (synced) time."""
        kid_hex = device.row["id"]
        pending = batch.stored.get((kid_hex, frame.seq))
        if pending is not None:
            return pending == frame.rows
        stored = db.seq_rows(conn, kid_hex, frame.seq, device.row["seq_reset_at"] or 0,
                             "channel, idx, time, value, unsynced")
        timed = not frame.flags & FLAG_CLOCK_UNSYNCED and all(not r[4] for r in stored)
        if timed:
            return (sorted((c, i, t, v) for c, i, t, v, _ in stored)
                    == sorted((c, i, t, v) for c, i, t, v, _ in frame.rows))
        return (sorted((c, i, v) for c, i, _, v, _ in stored)
                == sorted((c, i, v) for c, i, _, v, _ in frame.rows))

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
        """Write the device rows the readings cannot stand for, and every
        FOLD_SEEN_S or FOLD_SEEN_ROWS readings all the rows the tail touches,
        moving the mark past it (huaico.store.db m010)."""
        newest = None
        changed = {}
        for device in self._devices.values():
            if device.alone:
                newest = newest or conn.execute("SELECT max(rowid) FROM readings").fetchone()[0]
                device.row["seen_rowid"] = newest or 0
                device.alone = False
                changed[device.row["id"]] = device
        fold = (self._seen_folded is None or self._unfolded >= db.FOLD_SEEN_ROWS
                or time.monotonic() - self._seen_folded >= db.FOLD_SEEN_S)
        if fold:
            mark = db.seen_mark(conn)
            for kid_hex, in conn.execute("SELECT DISTINCT device_id FROM readings NOT INDEXED "
                                         "WHERE rowid > ?", [mark]).fetchall():
                device = self._device(conn, kid_hex)
                if device is not None:
                    changed[kid_hex] = device
        if changed:
            for device in changed.values():
                device.row["seq_window"] = replay.to_db(device.window.bits)
            conn.executemany(
                "UPDATE devices SET last_seq = ?, seq_window = ?, last_seen = ?, "
                "battery_mv = ?, rssi = ?, epoch = ?, old_epochs = ?, seen_rowid = ? "
                "WHERE id = ?",
                [(r["last_seq"], r["seq_window"], r["last_seen"], r["battery_mv"], r["rssi"],
                  r["epoch"], r["old_epochs"], r["seen_rowid"], r["id"])
                 for r in (device.row for device in changed.values())])
        if fold:
            conn.execute("UPDATE counters SET value = coalesce((SELECT max(rowid) FROM "
                         "readings), 0) WHERE name = ?", [db.DEVICES_SEEN])
            self._seen_folded = time.monotonic()
            self._unfolded = 0

    def _reject(self, rejects, delta, received, kid_hex, reason, detail, source):
        name = reason if reason.startswith("link_") else "rejected_" + reason
        delta[name] = delta.get(name, 0) + 1
        rejects.append((received, kid_hex, reason, detail, source))
        log.warning("event=reject device=%s reason=%s source=%s detail=%r",
                    kid_hex or "-", reason, source, detail)

    def tick(self):
        """The engine's timers (silent devices, durations, escalation) in their
        own transaction."""
        now = self.clock.now()
        try:
            with db.transaction(self.database) as conn:
                self._save_clock(conn, now)
                outbox = list(self.engine.tick(conn, now) or ())
        except Exception:
            self._clock_saved = None
            log.exception("event=tick_failed")
            self.counters.add("tick_failed")
            return
        if outbox and self.on_commit is not None:
            self.on_commit(outbox)


class _Batch:
    """What one transaction gathers from its frames before writing it at once."""

    __slots__ = ("readings", "frames", "stored", "rejects", "trusted", "offset",
                 "ack_time", "raw", "touched")

    def __init__(self):
        self.readings = []  # rows for _INSERT
        self.raw = []  # rows for _INSERT_RAW (keep_raw only)
        self.frames = []  # (device, rows) of new frames, for the engine
        # (device id, seq) -> rows as decoded, of frames stored in this batch
        # (not yet in readings), to tell their resends.
        self.stored = {}
        self.rejects = []
        self.trusted = True  # the gateway's clock, for the whole batch
        self.offset = 0.0
        self.ack_time = None
        self.touched = set()  # the _Device of every frame stored


def _seen(device, seq, received, new):
    """A stored frame's number and receive time into the device's row."""
    if new:
        device.window.mark(seq)
    row = device.row
    row["last_seq"] = device.window.last
    row["last_seen"] = received


def _reading(row, channel, index, value):
    """A stored reading into the device's row: "battery" or "rssi" when it
    was the device's own (index 0), else None."""
    if index == 0 and channel == _BATTERY:
        row["battery_mv"] = value
        return "battery"
    if index == 0 and channel == _RSSI:
        row["rssi"] = value
        return "rssi"
    return None


def _public(row):
    """The device as the rule engine sees it: everything but the key and the
    writer's own bookkeeping (huaico.store.db m010)."""
    shown = dict(row)
    shown.pop("key", None)
    shown.pop("seen_rowid", None)
    return shown
