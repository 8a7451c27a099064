"""Committed frames forwarded to the city's broker, for `huaico hub`.

The writer keeps each stored frame's original signed bytes in the `frames`
table (db.m005_frames) while [upstream] is enabled; this thread follows that
table by rowid, publishes each frame QoS 1 on `<prefix>/<gateway_id>/frames`
as a small JSON envelope (the COSE_Mac0 bytes in base64 plus what only this
gateway knows: its id, the receive time, the link and the RSSI), and moves
its cursor (kept in the database) only after the broker has acked every
frame of the batch. So a gateway cut off for days catches up in rowid order,
which is commit order, and a crash between the PUBACK and the cursor write
sends a frame twice at most: the hub stores it once (unique keys).

The hub never trusts the envelope for what it verifies: the frame's MAC
under the device key covers the readings, and a changed kid selects a key
that does not verify. Boards are still acked by this gateway after its
local commit; forwarding runs beside the writer, never in its transaction.
"""
import base64
import json
import logging
import time

from gateway import db
from gateway.readings_feed import ReadingsFeed

log = logging.getLogger("huaico.upstream")

CURSOR = "upstream"
BATCH = 1000
FORMAT = 1


def topic(prefix, gateway_id):
    return "%s/%s/frames" % (prefix, gateway_id)


def envelope(gateway_id, number, received, link, rssi, raw):
    """The message one frame travels in (JSON bytes)."""
    return json.dumps({"v": FORMAT, "gw": gateway_id, "n": number, "received": received,
                       "link": link, "rssi": rssi,
                       "frame": base64.b64encode(raw).decode("ascii")},
                      separators=(",", ":")).encode()


def pending(database, after, limit=BATCH):
    """Frames stored after rowid `after`: (rowid, received, link, rssi, raw)."""
    return database.execute(
        "SELECT rowid, received, link, rssi, raw FROM frames WHERE rowid > ? "
        "ORDER BY rowid LIMIT ?", [after, limit]).fetchall()


class Forwarder(ReadingsFeed):
    """A thread that publishes what the writer stored, in order, at least once
    (ReadingsFeed's loop, over frames instead of readings)."""

    cursor_name = CURSOR

    def __init__(self, database_path, mqtt, gateway_id, prefix, counters, keep_days=7,
                 poll_s=0.05, ack_timeout_s=10.0):
        ReadingsFeed.__init__(self, database_path, mqtt, prefix, counters, poll_s=poll_s,
                              ack_timeout_s=ack_timeout_s)
        self.gateway_id = gateway_id
        self.topic = topic(prefix, gateway_id)
        self.keep_s = keep_days * 86400

    def step(self, database, after):
        """Publish one batch after rowid `after`; the new cursor (unchanged unless all acked)."""
        if not self.mqtt.connected:
            return after
        rows = pending(database, after)
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
        last = rows[-1][0]
        with db.transaction(database) as conn:
            db.set_cursor(conn, self.cursor_name, last)
            # Forwarded bytes are kept a while (a hub restored from backup
            # can be fed again by rewinding the cursor), then dropped.
            conn.execute("DELETE FROM frames WHERE rowid <= ? AND received < ?",
                         [last, time.time() - self.keep_s])
        self.counters.add("upstream_frames", len(rows))
        return last


def from_config(config, counters):
    """The upstream link and its forwarder from [upstream], or None when it is off.
    Raises gateway.mqtt.MqttConfigError for a link that cannot work."""
    upstream = config["upstream"]
    if not upstream["enabled"]:
        return None
    from gateway.mqtt import MqttLink
    gateway_id = config.gateway_id
    # Publish-only: no session to keep, the cursor is the durable state.
    link = MqttLink(upstream["host"], upstream["port"], "huaico-upstream-%s" % gateway_id,
                    username=upstream["username"] or None,
                    password=upstream["password"] or None, tls=config.upstream_tls(),
                    protocol="auto", clean=True, max_inflight=100)
    return Forwarder(config.database_path, link, gateway_id, upstream["topic_prefix"],
                     counters, keep_days=upstream["keep_days"])
