"""`huaico hub run`: one worker that takes its share of the forwarded frames.

Workers subscribe to `$share/<group>/<prefix>/+/frames` over MQTT 5, so the
broker (Mosquitto, EMQX, VerneMQ, HiveMQ) hands each message to one worker
of the group and N workers split the load. Each keeps a persistent session
(Clean Start 0, a Session Expiry Interval) and acks by hand (paho's
manual_ack): a message is acked only after the PostgreSQL commit that
stored it, so a worker killed before its commit gets the message again from
the broker when it comes back under the same client id, and a copy it had
already stored is dropped by the unique keys.

paho's callbacks run on its network thread and only enqueue (as in
huaico.mqtt.link, which cannot be used here: it acks on receipt); the
frames come in through a lean PUBLISH decoder and a buffered socket laid
over paho's (_Client), because paho's own way in cost more than verifying
and storing a frame. The worker's
own thread gathers what arrived within batch_ms, stores it with
huaico.hub.store.store_batch, then acks each message in order and sends
each gateway a receipt of the frames it committed (huaico.hub.upstream). A
message received before a reconnect is not acked after it: its packet id
belongs to the old connection (and may name another message on the new
one); the broker sends it again instead.

With a config (`huaico hub run --config`: the [alerts], [[groups]],
[[sites]], [mqtt] and [sms] sections of a huaico.toml) the worker also runs
the gateway's rules over each batch in the same transaction
(gateway/hub/rules.py), their timers once a second, and a dispatcher that
sends the outbox when this worker holds the dispatch lock
(gateway/hub/dispatch.py), publishing alerts on the central broker; and
it tells the hub its groups and SMS backend (register(): hub_workers), so
that `huaico alerts test --hub` queues by them.
"""
import json
import logging
import queue
import socket
import struct
import threading
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from huaico.hub import schema as hub_schema, store as hub_store, upstream
from huaico.hub.dispatch import HubDispatcher
from huaico.hub.rules import HubEngine
from huaico.mqtt.link import no_delay

log = logging.getLogger("huaico.hub")

# A killed worker's session (and the messages queued to it: brokers keep
# dealing a shared subscription's messages to an offline member) lives this
# long. A worker restarted within it gets them again; after it the broker
# drops them and the gateways send them again for want of a receipt.
SESSION_EXPIRY_S = 120
_U16 = struct.Struct("!H")
READ_PACKETS = 256
MAX_BATCH = 1000
RETRY_S = 1.0
UNSUBSCRIBE_S = 0.3
TICK_S = 1.0


class _BufferedSocket:
    """The broker's socket as paho reads it: one recv of up to READ_SIZE
    bytes where paho makes three system calls a message (it reads a
    packet's type and length a byte at a time). pending() tells paho's loop
    that bytes wait here, as it asks an SSL socket (Client._loop), so that
    it reads them before it selects again."""

    READ_SIZE = 65536

    def __init__(self, sock):
        self._sock = sock
        self._buf = b""
        self._at = 0

    def recv(self, size):
        if self._at >= len(self._buf):
            self._buf = self._sock.recv(self.READ_SIZE)  # BlockingIOError; b"" at the end
            self._at = 0
        data = self._buf[self._at:self._at + size]
        self._at += len(data)
        return data

    def pending(self):
        # Under TLS this stands for the SSL socket's own pending(), which a
        # recv of READ_SIZE leaves at 0: it takes whole records (16 KB at most).
        return len(self._buf) - self._at

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _Client(paho.Client):
    """paho's client with a lean way in for the frames: at thousands of
    messages a second, paho's own (an MQTTMessage, a Properties object that
    builds its tables anew for each message, a debug log line, the topic
    matcher) took more of a worker's time than verifying and storing them.
    The overrides are of paho 2.x internals (tests/test_hub_store.py
    checks that they are still there)."""

    on_frame = None  # on_frame(mid, qos, topic, payload), on paho's thread

    def _create_socket(self):
        return _BufferedSocket(super()._create_socket())

    def loop_read(self, max_packets=1):
        # paho's loop reads one packet a pass, each after a select(): take
        # what is buffered, a bounded number so that its writes (our acks)
        # and keepalive still get their turn.
        for _ in range(READ_PACKETS):
            rc = super().loop_read(max_packets)
            if rc or self._sock is None or not self._sock.pending():
                break
        return rc

    def _handle_publish(self):
        header, packet = self._in_packet["command"], self._in_packet["packet"]
        qos = (header & 0x06) >> 1
        if qos > 1:  # never sent to a QoS 1 subscription (MQTT 5 section 3.8.4)
            return super()._handle_publish()
        (length,) = _U16.unpack_from(packet, 0)
        at = 2 + length
        topic = bytes(packet[2:at]).decode("utf-8", "replace")
        mid = 0
        if qos:
            (mid,) = _U16.unpack_from(packet, at)
            at += 2
        # The properties (MQTT 5 section 3.3.2.3): none is needed here, and
        # a topic alias is never sent to a client that allowed none.
        size, shift = 0, 0
        while True:
            byte = packet[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                break
        self.on_frame(mid, qos, topic, bytes(packet[at + size:]))
        # QoS 1: acked by hand after the commit (manual_ack_set).
        return paho.MQTT_ERR_SUCCESS


def share_topic(group, prefix):
    return "$share/%s/%s/+/frames" % (group, prefix)


def gateway_of(topic):
    """The gateway id in `<prefix>/<gateway>/frames` (what the broker's ACL vouches for)."""
    parts = topic.rsplit("/", 2)
    return parts[-2] if len(parts) == 3 else None


class Worker:
    """One hub worker: MQTT in, PostgreSQL, acks out; start(), then stop()."""

    def __init__(self, dsn, host, port, client_id, group="huaico-hub", prefix="huaico-city",
                 batch_ms=10, username=None, password=None, tls_context=None, connect=None,
                 config=None, sms=None):
        import psycopg
        self.dsn = dsn
        # Named, so that an operator whose write waits on this worker's lock
        # is told which worker holds it (gateway/hub/operator.py).
        self.connect = connect or (lambda: psycopg.connect(
            dsn, application_name="huaico-hub %s" % client_id))
        self.topic = share_topic(group, prefix)
        self.prefix = prefix
        self.host = host
        self.port = port
        self.client_id = client_id
        self.batch_s = batch_ms / 1000.0
        self.inbox = queue.Queue()
        self.keys = hub_store.Keys()
        self.counts = {}
        self.connected = threading.Event()
        self._generation = 0  # connections so far; a message carries the one it came on
        self._stop = threading.Event()
        self._thread = None
        self._client = _Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                   protocol=MQTTProtocolVersion.MQTTv5)
        self._client.manual_ack_set(True)
        if username:
            self._client.username_pw_set(username, password)
        if tls_context is not None:
            self._client.tls_set_context(tls_context)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_frame = self._on_frame
        self._client.on_socket_open = no_delay  # receipts and acks go out at once
        self._client.reconnect_delay_set(0.2, 5)
        self._client.max_inflight_messages_set(MAX_BATCH)
        self.config = config
        self.engine = HubEngine(config) if config is not None else None
        self.dispatcher = None
        self._alerts_link = None
        if config is not None:
            from huaico.mqtt.link import MqttLink
            # Alerts go out on a connection of their own: this one acks by hand.
            self._alerts_link = MqttLink(host, port, client_id + "-alerts", clean=True,
                                         username=username, password=password,
                                         max_inflight=100)
            self.dispatcher = HubDispatcher(self.connect, client_id, self._alerts_link, sms,
                                            config=config)
        self._last_tick = 0.0

    # paho's thread: enqueue only (subscribing is one packet).

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        if reason_code.is_failure:
            log.warning("event=hub_connect_refused reason=%s", reason_code)
            return
        self._generation += 1
        client.subscribe(self.topic, qos=1)
        self.connected.set()
        log.info("event=hub_connected broker=%s:%d topic=%s session_present=%s", self.host,
                 self.port, self.topic, flags.session_present)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self.connected.clear()
        log.warning("event=hub_disconnected reason=%s", reason_code)

    def _on_frame(self, mid, qos, topic, payload):
        self.inbox.put((self._generation, mid, qos, topic, payload))

    # Life cycle.

    def start(self):
        conn = self.connect()
        try:
            applied = hub_schema.migrate(conn)
            if self.config is not None:
                register(conn, self.client_id, self.config, time.time())
        finally:
            conn.close()
        if applied:
            log.info("event=hub_migrated names=%s", ",".join(applied))
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = SESSION_EXPIRY_S
        # How many unacked messages the broker may have out to us: a batch's
        # worth, so that one commit can take many (the broker's own
        # max_inflight_messages may lower it).
        props.ReceiveMaximum = MAX_BATCH
        self._client.connect_async(self.host, self.port, 30, clean_start=False,
                                   properties=props)
        self._client.loop_start()
        if self.dispatcher is not None:
            self._alerts_link.start()
            self.dispatcher.start()
        self._thread = threading.Thread(target=self._run, name="hub-worker", daemon=True)
        self._thread.start()

    def stop(self):
        """Leave the group for good: unsubscribe, finish the batch in hand,
        and end the session (expiry 0) so the broker deals no more to us."""
        if self.connected.is_set():
            self._client.unsubscribe(self.topic)
            time.sleep(UNSUBSCRIBE_S)  # what the broker had sent on its way
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.dispatcher is not None:
            self.dispatcher.stop()
            self._alerts_link.stop()
        props = Properties(PacketTypes.DISCONNECT)
        props.SessionExpiryInterval = 0
        self._client.disconnect(properties=props)
        self._client.loop_stop()

    def _run(self):
        conn = None
        # After stop() the inbox is still emptied: those messages are stored and acked.
        while not (self._stop.is_set() and self.inbox.empty()):
            try:
                first = self.inbox.get(timeout=0.2)
            except queue.Empty:
                conn = self._tick(conn)
                continue
            batch = self._gather(first)
            while not self._stop.is_set():
                try:
                    if conn is None or conn.closed:
                        conn = self.connect()
                    self._store(conn, batch)
                    break
                except Exception as exc:  # psycopg.Error, or a lost connection
                    if self.engine is not None:
                        self.engine.rolled_back()
                    # Nothing was acked: retried here, or redelivered by the
                    # broker if this worker dies meanwhile.
                    log.error("event=hub_store_failed messages=%d error=%r", len(batch), exc)
                    self._count("store_failed")
                    self.keys.forget()
                    if conn is not None:
                        conn.close()
                        conn = None
                    self._stop.wait(RETRY_S)
            # A worker that is never idle still runs the timers on time.
            conn = self._tick(conn)
        if conn is not None:
            conn.close()

    def _tick(self, conn):
        """The rules' timers once every TICK_S (at the next turn again while
        another worker holds the engine's lock); returns the connection
        (None after a failure, to be opened again)."""
        now = time.time()
        if self.engine is None or now - self._last_tick < TICK_S:
            return conn
        try:
            if conn is None or conn.closed:
                conn = self.connect()
            if self.engine.tick(conn, now):
                self._last_tick = now
            self._wake_dispatcher()
        except Exception as exc:  # psycopg.Error, or a lost connection
            self._last_tick = now
            log.error("event=hub_tick_failed error=%r", exc)
            if conn is not None:
                conn.close()
            return None
        return conn

    def _wake_dispatcher(self):
        # This worker's own dispatcher at once; another worker's by NOTIFY.
        if self.engine.queued:
            self.engine.queued = 0
            self.dispatcher.wake()

    def _gather(self, first):
        """What is queued, and in a burst what comes within batch_ms: a lone
        message (a live frame, whose alert is waited for) goes at once."""
        batch = [first]
        deadline = time.monotonic() + self.batch_s
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self.inbox.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if len(batch) == 1 or remaining <= 0:
                break
            try:
                batch.append(self.inbox.get(timeout=remaining))
            except queue.Empty:
                break
        return batch

    def _store(self, conn, batch):
        outcomes, receipts = hub_store.store_batch(conn, self.keys,
                                                   [(item[3], item[4]) for item in batch],
                                                   topic_gateway=gateway_of, engine=self.engine)
        if self.engine is not None:
            self.engine.committed()
            self._wake_dispatcher()
        # After the commit: the broker may now forget them, and each gateway
        # may move its confirmed cursor (huaico.hub.upstream).
        generation = self._generation
        for (came_on, mid, qos, _, _), outcome in zip(batch, outcomes):
            self._count(outcome)
            if qos and came_on == generation:
                self._client.ack(mid, qos)
        for gateway, numbers in receipts.items():
            self._client.publish(upstream.topic(self.prefix, gateway, "receipts"),
                                 upstream.receipt(numbers), qos=1)

    def _count(self, name):
        self.counts[name] = self.counts.get(name, 0) + 1


def register(conn, worker_id, config, now):
    """Tell the hub what this worker sends by (hub_workers): [alerts],
    [[groups]] and the SMS backend's kind, for `huaico alerts test --hub`."""
    known = {"alerts": config["alerts"], "groups": config["groups"],
             "sms": {name: config["sms"][name] for name in ("backend", "country_code")}}
    with conn.transaction():
        conn.execute("INSERT INTO hub_workers (worker_id, host, started, config) "
                     "VALUES (%s, %s, %s, %s) ON CONFLICT (worker_id) DO UPDATE SET "
                     "host = excluded.host, started = excluded.started, config = excluded.config",
                     [worker_id, socket.gethostname(), now, json.dumps(known, sort_keys=True)])


def run(worker, duration=None, stopping=None):
    """Run a started worker until `stopping` is set (or `duration` passes)."""
    stopping = stopping or threading.Event()
    stopping.wait(duration)
    worker.stop()


def config_from(path):
    """(config, SMS backend or None) of `huaico hub run --config PATH`, or
    (None, None) without one."""
    if path is None:
        return None, None
    import pathlib

    from huaico import config as config_mod
    from huaico.alerts.dispatch import sms_backend_from_config
    path = pathlib.Path(path)
    config = config_mod.from_text(path.read_text(encoding="utf-8"), path.parent, str(path))
    return config, sms_backend_from_config(config)
