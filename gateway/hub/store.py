"""The hub's writes: forwarded frames verified, then stored once in PostgreSQL.

A worker hands a batch of envelopes (huaico.hub.upstream) to `store_batch`,
which in ONE transaction verifies each frame end to end with the device's
key from the hub's own devices table (protocol.frame's decoder, the same
one the edge uses), inserts the new frames and their readings with ON
CONFLICT DO NOTHING, records which gateway heard what, and adds counters and
rejects. The caller acks the MQTT messages only after this commit.

What a gateway can and cannot do: it can drop or delay frames (the board's
own gateway acks, so that is visible as a gap at the hub), but it cannot
forge or alter one: the payload is MACed under a key the board and the hub
share, and a kid changed to another device's makes the MAC check use that
device's key, which fails. Both are rejected as bad_mac and counted
(rejected_bad_mac), as is an envelope that is not one (rejected_envelope).

Rows go in by binary COPY into temporary staging tables of the worker's
session (no WAL, emptied at each commit: COPY cannot skip a duplicate),
then one INSERT ... SELECT per table (ON CONFLICT DO NOTHING for frames
and heard; readings see insert_readings), sorted by key, so that two
workers whose batches share frames (one board heard by two gateways) take
the unique index's locks in the same order and wait for each other rather
than deadlock. Against one array parameter per column (unnest), which
this replaced, the worker builds no arrays in Python and the server
spends less on each row (bench/hub.py's ingest figures).
"""
import base64
import binascii
import json
import logging
import time
import weakref

from huaico.ingest.decoder import decode_frame
from huaico.protocol import channels
from huaico.protocol.cose import MacKey
from huaico.protocol.errors import ProtocolError
from huaico.protocol.frame import FLAG_CLOCK_UNSYNCED, Q_OK, Q_OUT_OF_RANGE

log = logging.getLogger("huaico.hub")

KEYS_TTL_S = 10.0
_RANGES = {code: (channel.lo, channel.hi) for code, channel in channels.BY_CODE.items()}

# The staging tables, made once per session; ON COMMIT DELETE ROWS empties
# them at every commit (and a rollback takes their rows with it).
_STAGE = """
    CREATE TEMP TABLE IF NOT EXISTS stage_frames (
        at integer, device_id text, seq bigint, time bigint, received float8, gateway text,
        link text, rssi integer, raw bytea) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE IF NOT EXISTS stage_readings (
        device_id text, seq bigint, channel integer, idx integer, time bigint, value bigint,
        quality integer, received float8, unsynced boolean) ON COMMIT DELETE ROWS"""
_STAGE_FRAMES_TYPES = ["int4", "text", "int8", "int8", "float8", "text", "text", "int4", "bytea"]
_STAGE_READINGS_TYPES = ["text", "int8", "int4", "int4", "int8", "int8", "int4", "float8", "bool"]
# A frame heard twice in one batch: the first copy is stored.
_INSERT_FRAMES = """
    INSERT INTO frames (device_id, seq, time, received, gateway, link, rssi, raw)
    SELECT DISTINCT ON (device_id, seq) device_id, seq, time, received, gateway, link, rssi, raw
    FROM stage_frames ORDER BY device_id, seq, at
    ON CONFLICT DO NOTHING RETURNING device_id, seq"""
_INSERT_HEARD = """
    INSERT INTO heard (device_id, seq, gateway, received)
    SELECT device_id, seq, gateway, received FROM stage_frames ORDER BY device_id, seq, gateway
    ON CONFLICT DO NOTHING"""
# Readings go in only with a frame the same transaction found new, so they
# are new too, and a plain insert (a third cheaper for the server than one
# that checks each row for a conflict) is the rule. The exception: a frame
# whose month retention dropped before its readings' month (an unsynced
# clock restamped into the next month) and that a gateway then sends again.
_INSERT_READINGS = """
    INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, received, unsynced)
    SELECT * FROM stage_readings ORDER BY device_id, seq, channel, idx, time"""
_INSERT_READINGS_ONCE = _INSERT_READINGS + " ON CONFLICT DO NOTHING"
# Each device's newest frame, as the edge keeps it (huaico.store.writer): for
# `huaico status --hub` and `huaico device list --hub`. A frame older than
# the newest stored (a backlog from another gateway) moves nothing back.
_TOUCH_DEVICES = """
    UPDATE devices d SET last_seq = greatest(d.last_seq, u.seq),
        last_seen = greatest(d.last_seen, u.received),
        battery_mv = CASE WHEN d.last_seq IS NULL OR u.seq >= d.last_seq
                          THEN coalesce(u.battery_mv, d.battery_mv) ELSE d.battery_mv END,
        rssi = CASE WHEN d.last_seq IS NULL OR u.seq >= d.last_seq
                    THEN coalesce(u.rssi, d.rssi) ELSE d.rssi END
    FROM unnest(%s::text[], %s::bigint[], %s::float8[], %s::int[], %s::int[])
        AS u(id, seq, received, battery_mv, rssi)
    WHERE d.id = u.id"""
_BATTERY = channels.get("battery").code
_RSSI = channels.get("rssi").code
_ADD_COUNTERS = """
    INSERT INTO counters (name, value) SELECT * FROM unnest(%s::text[], %s::bigint[])
    ON CONFLICT (name) DO UPDATE SET value = counters.value + excluded.value"""


_staged = weakref.WeakSet()  # the connections whose session has the staging tables


def prepare(conn):
    """Make the session's staging tables, in a transaction of their own
    (a batch that rolls back must not take them with it)."""
    if conn not in _staged:
        with conn.transaction():
            conn.execute(_STAGE)
        _staged.add(conn)


def _copy(cur, table, types, rows):
    with cur.copy("COPY %s FROM STDIN (FORMAT BINARY)" % table) as copy:
        copy.set_types(types)
        for row in rows:
            copy.write_row(row)


class EnvelopeError(ProtocolError):
    """A message on the frames topic that is no forwarded frame."""


class Keys:
    """Device keys from the hub's devices table, re-read every KEYS_TTL_S so
    that a rotated or retired key takes effect; a kid not in the cache is
    looked up at once, so a board provisioned a moment ago is not refused."""

    def __init__(self):
        self._keys = {}
        self._loaded = None
        self._cur = None

    def load(self, cur, now):
        self._cur = cur
        if self._loaded is not None and now - self._loaded < KEYS_TTL_S:
            return
        cur.execute("SELECT id, key, allow_unsigned, retired FROM devices")
        self._keys = {kid: (MacKey(bytes.fromhex(key), allow), retired)
                      for kid, key, allow, retired in cur.fetchall()}
        self._loaded = now

    def forget(self):
        self._loaded = None

    def key_for(self, kid):
        kid_hex = kid.hex()
        found = self._keys.get(kid_hex)
        if found is None and self._cur is not None:
            self._cur.execute("SELECT key, allow_unsigned, retired FROM devices WHERE id = %s",
                              [kid_hex])
            row = self._cur.fetchone()
            if row is not None:
                found = self._keys[kid_hex] = (MacKey(bytes.fromhex(row[0]), row[1]), row[2])
        return found[0] if found is not None and not found[1] else None


def parse(payload):
    """(gateway, n, received, link, rssi, raw) of an envelope; EnvelopeError if it is none."""
    try:
        message = json.loads(payload)
        raw = base64.b64decode(message["frame"], validate=True)
        gateway, number, received = message["gw"], message["n"], float(message["received"])
        link, rssi = message.get("link"), message.get("rssi")
        if not isinstance(gateway, str) or not isinstance(number, int) or not (
                rssi is None or isinstance(rssi, int)):
            raise TypeError("gw, n or rssi of the wrong type")
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise EnvelopeError("envelope", -1, "not a forwarded frame: %s" % exc) from None
    return gateway, number, received, link if isinstance(link, str) else None, rssi, raw


def _rows(frame, received):
    """The frame's readings as stored: unsynced times restamped to the
    gateway's receive time (as huaico.store.writer does), out-of-range values
    flagged; (rows, unsynced)."""
    rows = frame.rows
    unsynced = bool(frame.flags & FLAG_CLOCK_UNSYNCED)
    if rows and unsynced:
        newest = max(frame.time, max(row[2] for row in rows))
        shift = int(received) - newest
        rows = [(c, i, t + shift, v, q) for c, i, t, v, q in rows]
    out = []
    for c, i, t, v, q in rows:
        if q == Q_OK and c in _RANGES and not _RANGES[c][0] <= v <= _RANGES[c][1]:
            q = Q_OUT_OF_RANGE
        out.append((c, i, t, v, q))
    return out, unsynced


def store_batch(conn, keys, messages, topic_gateway=None, now=None, engine=None):
    """Verify and store messages [(topic, payload)] in one transaction;
    returns (outcomes, receipts): one outcome per message ("stored",
    "duplicate" or a reject reason) and {gateway: [n]} of the envelopes
    handled for good (stored, stored before, or refused: sending a forged
    frame again cannot help). Raises only for database errors (nothing is
    committed then). engine (huaico.hub.rules.HubEngine) evaluates the new
    frames' readings in the same transaction, before they are inserted."""
    now = time.time() if now is None else now
    outcomes = [None] * len(messages)
    frames = {}  # (device_id, seq) -> (at, received, frame) of its first copy
    staged = []  # one row a verified frame, copies included: heard takes them all
    rejects = []
    delta = {}
    receipts = {}
    prepare(conn)
    with conn.transaction():
        cur = conn.cursor()
        keys.load(cur, now)
        for at, (topic, payload) in enumerate(messages):
            gateway = topic_gateway(topic) if topic_gateway else None
            try:
                gateway_said, number, received, link, rssi, raw = parse(payload)
                gateway = gateway or gateway_said
                receipts.setdefault(gateway, []).append(number)
                frame = decode_frame(raw, keys.key_for)
            except ProtocolError as exc:
                outcomes[at] = exc.reason
                delta["rejected_" + exc.reason] = delta.get("rejected_" + exc.reason, 0) + 1
                rejects.append((now, None, gateway, exc.reason, str(exc)))
                log.warning("event=hub_reject gateway=%s reason=%s detail=%r",
                            gateway or "-", exc.reason, str(exc))
                continue
            key = (frame.kid.hex(), frame.seq)
            staged.append((at, key[0], key[1], frame.time, received, gateway, link, rssi, raw))
            if key in frames:
                outcomes[at] = "duplicate"
                continue
            frames[key] = (at, received, frame)
        ordered = sorted(frames)
        new = set()
        if staged:
            _copy(cur, "stage_frames", _STAGE_FRAMES_TYPES, staged)
            cur.execute(_INSERT_FRAMES)
            new = {(device_id, seq) for device_id, seq in cur.fetchall()}
            # Before the engine's lock (gateway/hub/rules.py): a worker holding
            # it must never wait for these rows of a worker waiting for it.
            cur.execute(_INSERT_HEARD)
        items = []
        newest = {}  # device_id -> (seq, received, battery_mv, rssi) of its newest new frame
        for key in ordered:
            at, received, frame = frames[key]
            if key not in new:
                outcomes[at] = "duplicate"
                continue
            outcomes[at] = "stored"
            rows, unsynced = _rows(frame, received)
            items.append((key[0], key[1], received, unsynced, rows))
            status = {c: v for c, i, _, v, _ in rows if i == 0 and c in (_BATTERY, _RSSI)}
            newest[key[0]] = (key[1], received, status.get(_BATTERY), status.get(_RSSI))
        readings = sum(len(item[4]) for item in items)
        # The rules take the frames they can evaluate in order now; their
        # readings go in, the rest wait in engine_held (gateway/hub/rules.py).
        insert_readings(cur, items if engine is None else engine.evaluate(cur, items, now))
        if newest:
            # After the engine's lock, for the same reason as heard above.
            touched = sorted(newest)  # one lock order for every worker
            cur.execute(_TOUCH_DEVICES, [touched] + [[newest[d][n] for d in touched]
                                                      for n in range(4)])
        if rejects:
            cur.executemany("INSERT INTO rejects (time, device_id, gateway, reason, detail) "
                            "VALUES (%s, %s, %s, %s, %s)", rejects)
        delta["frames_ok"] = len(new)
        delta["duplicates"] = sum(1 for outcome in outcomes if outcome == "duplicate")
        delta["readings"] = readings
        names = sorted(name for name, n in delta.items() if n)
        if names:
            cur.execute(_ADD_COUNTERS, [names, [delta[name] for name in names]])
    return outcomes, receipts


_UNIQUE_VIOLATION = "23505"


def insert_readings(cur, items):
    """The readings of frames [(device id, seq, received, unsynced, rows)]
    (the session's staging tables made: prepare)."""
    if items:
        _copy(cur, "stage_readings", _STAGE_READINGS_TYPES,
              ((device_id, seq, c, i, t, v, q, received, unsynced)
               for device_id, seq, received, unsynced, rows in items
               for c, i, t, v, q in rows))
        try:
            with cur.connection.transaction():  # a savepoint
                cur.execute(_INSERT_READINGS)
        except Exception as error:
            # Told by SQLSTATE, not psycopg's class: the CLI imports this module
            # without the hub's extra (huaico[hub]).
            if getattr(error, "sqlstate", None) != _UNIQUE_VIOLATION:
                raise
            cur.execute(_INSERT_READINGS_ONCE)


def counters(conn):
    with conn.cursor() as cur:
        cur.execute("SELECT name, value FROM counters ORDER BY name")
        return dict(cur.fetchall())
