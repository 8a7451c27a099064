"""Stored readings out to city platforms as SenML JSON over MQTT.

The feed follows the readings table by rowid, publishes one pack per device
and batch on `<prefix>/<kid>/senml`, and moves its cursor (kept in the
database) only after the broker has acked every pack of the batch. A broker
that is down, or a gateway restart, therefore delays readings but loses none;
a pack may arrive twice after a crash between the ack and the cursor write
(QoS 1 semantics). It runs beside the writer, never in its transaction, so a
slow broker cannot hold back acks to the boards.
"""
import logging
import threading

from huaico.mqtt import senml
from huaico.protocol import channels
from huaico.store import db

log = logging.getLogger("huaico.feed")

CURSOR = "senml_feed"
BATCH = 2000


def _channel(code):
    try:
        channel = channels.get(code)
    except KeyError:
        # A newer board's channel: still published, under its code.
        return "channel_%d" % code, None, 0
    return channel.name, channel.unit, channel.scale


def pending(database, after, limit=BATCH):
    """Readings stored after rowid `after`: (rowid, device, channel, idx, time, value, quality)."""
    return database.execute(
        "SELECT rowid, device_id, channel, idx, time, value, quality FROM readings "
        "WHERE rowid > ? ORDER BY rowid LIMIT ?", [after, limit]).fetchall()


def packs(rows):
    """(device_id, SenML JSON bytes) per device, in the order the rows came."""
    by_device = {}
    for _, device_id, channel, idx, time, value, quality in rows:
        by_device.setdefault(device_id, []).append((channel, idx, time, value, quality))
    out = []
    for device_id, device_rows in by_device.items():
        try:
            out.append((device_id, senml.senml_json(
                senml.readings_pack(device_id, device_rows, _channel))))
        except senml.SenMLError as exc:
            log.warning("event=senml_skipped device=%s reason=%r", device_id, str(exc))
    return out


class ReadingsFeed:
    """A thread that publishes what the writer stored, in order, at least once."""

    cursor_name = CURSOR  # huaico.hub.upstream.Forwarder follows frames under its own

    def __init__(self, database_path, mqtt, prefix, counters, poll_s=0.5, ack_timeout_s=10.0):
        self.database_path = database_path
        self.mqtt = mqtt
        self.prefix = prefix
        self.counters = counters
        self.poll_s = poll_s
        self.ack_timeout_s = ack_timeout_s
        self._stop = threading.Event()
        self._wake = threading.Event()  # set by wake() and stop()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name=self.cursor_name, daemon=True)
        self._thread.start()

    def wake(self):
        """New rows were committed: look now rather than at the next poll."""
        self._wake.set()

    def _idle(self):
        self._wake.wait(self.poll_s)
        self._wake.clear()

    def stop(self):
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self):
        database = db.open_db(self.database_path)
        try:
            after = db.cursor(database, self.cursor_name)
            while not self._stop.is_set():
                sent = self.step(database, after)
                if sent == after:
                    self._idle()
                after = sent
        finally:
            database.conn.close()

    def step(self, database, after):
        """Publish one batch after rowid `after`; the new cursor (unchanged unless all acked)."""
        if not self.mqtt.connected:
            return after
        rows = pending(database, after)
        if not rows:
            return after
        deliveries = [self.mqtt.publish("%s/%s/senml" % (self.prefix, device_id), payload, qos=1)
                      for device_id, payload in packs(rows)]
        if not all(delivery.wait(self.ack_timeout_s) for delivery in deliveries):
            self.counters.add("senml_retries")
            return after
        last = rows[-1][0]
        with db.transaction(database) as conn:
            db.set_cursor(conn, CURSOR, last)
        self.counters.add("senml_packs", len(deliveries))
        return last
