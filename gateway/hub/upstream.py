"""Committed frames forwarded to the city's broker, for `huaico hub`.

The writer keeps each stored frame's original signed bytes in the `frames`
table (db.m006_frames) while [upstream] is enabled; this thread follows that
table by id, publishes each frame QoS 1 on `<prefix>/<gateway_id>/frames`
as a small JSON envelope (the COSE_Mac0 bytes in base64 plus what only this
gateway knows: its id, the receive time, the link and the RSSI, and the
frame's number `n` here), in id order, which is commit order.

Two cursors. The sending cursor, in memory, moves only when the broker has
acked (PUBACK) every frame of a batch, as the readings feed's does. But a
broker's PUBACK only says the broker holds the frame in memory: a broker
killed before a worker took it loses it (DESIGN.md says the same of boards
and gateways). So the hub answers each stored (or already stored) frame
with a receipt on `<prefix>/<gateway_id>/receipts` (the `n`s it committed),
and the durable cursor, `upstream_confirmed` in the database, moves over
frames the hub has receipted, without gaps. A frame not receipted within
confirm_timeout_s, and every frame after the confirmed cursor at start-up
(a gateway killed between a PUBACK and the receipt, or before the cursor's
commit), is sent again in order; the hub stores it once (unique keys) and
receipts it again. At most `window` frames are out unconfirmed, so a hub
that is down is not flooded with copies. Forwarded bytes are deleted
keep_days after they were confirmed and received.

No commit is on the live path: a PUBACK moves only the sending cursor
(a durable copy of it would never be read: a restart must go back to the
confirmed one anyway), and the confirmed cursor is committed after the
next frame has gone out, when the thread is about to wait, or every
SAVE_S while frames keep coming. Its commit coming later costs a
restarted gateway nothing but a few more frames sent again.

The hub never trusts the envelope for what it verifies: the frame's MAC
under the device key covers the readings, and a changed kid selects a key
that does not verify. Boards are still acked by this gateway after its
local commit; forwarding runs beside the writer, never in its transaction.
"""
import base64
import collections
import json
import logging
import queue
import time

from huaico.mqtt.readings_feed import ReadingsFeed
from huaico.store import db

log = logging.getLogger("huaico.upstream")

CURSOR = "upstream"
CONFIRMED = "upstream_confirmed"
BATCH = 1000
FORMAT = 1
SAVE_S = 1.0


def topic(prefix, gateway_id, leaf="frames"):
    return "%s/%s/%s" % (prefix, gateway_id, leaf)


def receipt(numbers):
    """The hub's answer to a gateway: the envelope numbers it has committed."""
    return json.dumps({"n": sorted(numbers)}, separators=(",", ":")).encode()


def envelope(gateway_id, number, received, link, rssi, raw):
    """The message one frame travels in (JSON bytes)."""
    return json.dumps({"v": FORMAT, "gw": gateway_id, "n": number, "received": received,
                       "link": link, "rssi": rssi,
                       "frame": base64.b64encode(raw).decode("ascii")},
                      separators=(",", ":")).encode()


def pending(database, after, limit=BATCH):
    """Frames stored after id `after`: (id, received, link, rssi, raw)."""
    return database.execute(
        "SELECT id, received, link, rssi, raw FROM frames WHERE id > ? "
        "ORDER BY id LIMIT ?", [after, limit]).fetchall()


class Forwarder(ReadingsFeed):
    """A thread that publishes what the writer stored, in order, until the hub
    has receipted it (ReadingsFeed's thread, over frames, with receipts)."""

    cursor_name = CURSOR

    def __init__(self, database_path, mqtt, gateway_id, prefix, counters, keep_days=7,
                 poll_s=0.05, ack_timeout_s=10.0, confirm_timeout_s=30.0, window=20000):
        ReadingsFeed.__init__(self, database_path, mqtt, prefix, counters, poll_s=poll_s,
                              ack_timeout_s=ack_timeout_s)
        self.gateway_id = gateway_id
        self.topic = topic(prefix, gateway_id)
        self.keep_s = keep_days * 86400
        self.confirm_timeout_s = confirm_timeout_s
        self.window = window
        self.confirmed = 0
        self._saved = (0, 0.0)  # the confirmed cursor in the database, monotonic time of its commit
        self._out = collections.OrderedDict()  # n -> monotonic time of its PUBACK
        self._receipted = set()
        mqtt.subscribe(topic(prefix, gateway_id, "receipts"), qos=1)

    def _run(self):
        database = db.open_db(self.database_path)
        try:
            # Whatever the hub has not receipted goes again, in order.
            self.confirmed = after = db.cursor(database, CONFIRMED)
            self._saved = (after, time.monotonic())
            while not self._stop.is_set():
                # The next frame out first, then the receipts and their commit.
                before = after
                sent = self.step(database, after) if len(self._out) < self.window else after
                after = self.confirm(sent)
                if before == sent == after:  # nothing went out, nothing to send again
                    self.save(database)
                    self._idle()
                elif time.monotonic() - self._saved[1] >= SAVE_S:
                    self.save(database)
            self.save(database)
        finally:
            database.conn.close()

    def save(self, database):
        """Commit the confirmed cursor if it moved; drop the confirmed bytes
        older than keep_days."""
        if self.confirmed == self._saved[0]:
            return
        with db.transaction(database) as conn:
            db.set_cursor(conn, CONFIRMED, self.confirmed)
            # Confirmed bytes are kept a while (a hub restored from a
            # backup can be fed again by rewinding the cursor), then dropped.
            conn.execute("DELETE FROM frames WHERE id <= ? AND received < ?",
                         [self.confirmed, time.time() - self.keep_s])
        self._saved = (self.confirmed, time.monotonic())

    def confirm(self, after):
        """Take the receipts that arrived; move the confirmed cursor (in
        memory: save() commits it) over the receipted frames; the cursor to
        send from (rewound to the confirmed one when the oldest frame out
        waited confirm_timeout_s)."""
        while True:
            try:
                event = self.mqtt.events.get_nowait()
            except queue.Empty:
                break
            if event[0] == "message":
                self._receipt(event[2])
        confirmed = self.confirmed
        out = self._out
        while out:
            number = next(iter(out))
            if number not in self._receipted:
                break
            del out[number]
            self._receipted.discard(number)
            confirmed = number
        if confirmed != self.confirmed:
            self.confirmed = confirmed
            self._receipted = {n for n in self._receipted if n > confirmed}
        if out and time.monotonic() - next(iter(out.values())) > self.confirm_timeout_s:
            self.counters.add("upstream_resent", len(out))
            log.warning("event=upstream_resend frames=%d from=%d reason=no_receipt",
                        len(out), self.confirmed)
            out.clear()
            return self.confirmed
        return after

    def _receipt(self, payload):
        try:
            numbers = json.loads(payload)["n"]
            # Kept even before this thread has seen the PUBACK of n: a fast
            # hub's receipt can overtake it.
            self._receipted.update(n for n in numbers
                                   if isinstance(n, int) and n > self.confirmed)
        except (ValueError, KeyError, TypeError) as exc:
            self.counters.add("upstream_bad_receipts")
            log.warning("event=upstream_bad_receipt error=%r", str(exc))

    def step(self, database, after):
        """Publish one batch after id `after`; the new cursor (unchanged unless all acked)."""
        if not self.mqtt.connected:
            return after
        rows = pending(database, after, min(BATCH, self.window - len(self._out)))
        if not rows:
            return after
        deliveries = [self.mqtt.publish(self.topic, envelope(self.gateway_id, number, received,
                                                             link, rssi, raw), qos=1)
                      for number, received, link, rssi, raw in rows]
        if not all(delivery.wait(self.ack_timeout_s) for delivery in deliveries):
            # Sent again from the cursor, in order; the hub drops the copies.
            self.counters.add("upstream_retries")
            log.warning("event=upstream_retry frames=%d after=%d", len(rows), after)
            return after
        acked = time.monotonic()
        for row in rows:
            self._out[row[0]] = acked
        self.counters.add("upstream_frames", len(rows))
        return rows[-1][0]


def from_config(config, counters):
    """The upstream link and its forwarder from [upstream], or None when it is off.
    Raises huaico.mqtt.link.MqttConfigError for a link that cannot work."""
    upstream = config["upstream"]
    if not upstream["enabled"]:
        return None
    from huaico.mqtt.link import MqttLink
    gateway_id = config.gateway_id
    # Publish-only: no session to keep, the cursor is the durable state.
    link = MqttLink(upstream["host"], upstream["port"], "huaico-upstream-%s" % gateway_id,
                    username=upstream["username"] or None,
                    password=upstream["password"] or None, tls=config.upstream_tls(),
                    protocol="auto", clean=True, max_inflight=100)
    return Forwarder(config.database_path, link, gateway_id, upstream["topic_prefix"],
                     counters, keep_days=upstream["keep_days"],
                     confirm_timeout_s=upstream["confirm_timeout_s"])
