"""The gateway's one MQTT connection: a small wrapper around paho-mqtt.

Why a wrapper: paho calls back on its own network thread, and anything slow
done there (SQLite, SMS) stalls keepalives and acks for every topic. Here the
paho callbacks only put tuples on queues:

- `events` (a queue.Queue the gateway reads) gets
  ("message", topic, payload, properties), ("connected", reason_code) and
  ("disconnected", reason); `properties` is a dict of MQTT 5 properties
  ({} under MQTT 3.1.1). `reason` is paho's ReasonCode when the broker
  refused the CONNECT (bad user name or password: 0x86, not authorized:
  0x87) or the connection dropped, and the OSError (an ssl.SSLError for a
  certificate the CA did not sign) when no MQTT connection was made at all;
  one event per failed attempt, so a wrong password or CA is in the log,
  not only in the broker's.
- an internal control queue is read by one small supervisor thread that
  resubscribes after a reconnect, settles publish handles and, for
  protocol="auto", falls back to MQTT 3.1.1 when a broker refuses MQTT 5.
  It forwards ("connected", rc) only once the broker has acked the
  resubscriptions (SUBACK), so from "connected" on no message is missed.
  A subscription the broker refuses (ACL) comes out as
  ("subscribe-failed", topic, reason_code).

Delivery: `publish()` returns a `Delivery`; `wait(timeout)` is True only once
the broker has acked (PUBACK for QoS 1, socket write for QoS 0). While the
link is down `publish()` hands back a handle that never reports success and
does not give the message to paho at all: the alert outbox in SQLite keeps
it and retries, because paho's in-memory queue dies with the process. A
publish in flight when the connection drops is reported not-acked, and so
the caller's retry must be its only resend: paho keeps every unacked QoS 1
message and resends it after a reconnect, which with the caller's retry
sent it twice (an alert doubled on the broker after an outage). So the link
empties paho's queue when the connection drops, on paho's own thread before
it can reconnect. A consumer can still see a message twice when the broker
took it but its PUBACK was lost with the connection (QoS 1's at-least-once;
CAP identifiers and SenML base names let it dedupe).

Sessions: with clean=False the broker keeps our subscriptions and queues
QoS 1 messages while the gateway is down (MQTT 3.1.1 clean_session=0; MQTT 5
Clean Start 0 on *every* connect, not only after the first, plus a Session
Expiry Interval). Incoming messages are acked to the broker when they are
queued here, not when stored: a board's frame is only dropped from its flash
after the gateway's own signed ack (see DESIGN.md), so a crash between the
two loses nothing.

A clean `stop()` sends DISCONNECT, so the broker discards the will; a crash
or a cut cable does not, and the broker publishes it.
"""
import queue
import socket
import ssl
import sys
import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

PROTOCOLS = ("auto", "3.1.1", "5")
# MQTT 5 CONNACK 0x84; paho also maps an MQTT 3.1.1 broker's "unacceptable
# protocol version" refusal to it when it speaks MQTT 5.
_UNSUPPORTED_PROTOCOL = 0x84
DEFAULT_SESSION_EXPIRY = 7 * 24 * 3600


class MqttConfigError(ValueError):
    """An MqttLink argument that cannot work (names the argument)."""


def _tls_context(tls):
    """tls=True: the system's CAs; or a dict with ca, cert, key, insecure.
    Built once, when the link is made, so that a missing or unreadable file
    is an MqttConfigError at start-up, not an exception on paho's thread; every
    reconnect (and the 3.1.1 fallback's new client) reuses it."""
    options = tls if isinstance(tls, dict) else {}
    unknown = set(options) - {"ca", "cert", "key", "insecure"}
    if unknown:
        raise MqttConfigError("tls: unknown keys %s" % sorted(unknown))
    if options.get("key") and not options.get("cert"):
        raise MqttConfigError("tls: a key without its cert")
    try:
        context = ssl.create_default_context(cafile=options.get("ca"))
    except OSError as exc:  # ssl.SSLError is one
        raise MqttConfigError("tls: cannot load CA %s: %s" % (options.get("ca"), exc)) from None
    if options.get("cert"):
        try:
            context.load_cert_chain(options["cert"], options.get("key"))
        except OSError as exc:
            raise MqttConfigError("tls: cannot load cert %s / key %s: %s"
                                  % (options["cert"], options.get("key"), exc)) from None
    if options.get("insecure"):
        # Skips the host name check only: the chain is still verified.
        context.check_hostname = False
    return context


def no_delay(client, userdata, sock):
    """paho's on_socket_open: paho leaves Nagle's algorithm on, so a publish
    that followed our last small packet (a PUBACK) waited for the broker's
    delayed ACK: bench/hub.py's alert latency p50 went from 27 to 12 ms."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not TCP
        pass


def _forget(client, mid=None):
    """Drop one message (or, with mid None, all) from paho's outgoing queue,
    so that paho does not send it after a reconnect. paho has no public call
    for it: its queue is _out_messages under _out_message_mutex (an RLock;
    paho-mqtt 2.2.0 client.py), and reconnect() recounts _inflight_messages."""
    with client._out_message_mutex:
        if mid is None:
            client._out_messages.clear()
        else:
            client._out_messages.pop(mid, None)


class Delivery:
    """The fate of one publish: acked by the broker, or not."""

    __slots__ = ("mid", "_done", "_acked")

    def __init__(self, mid=None):
        self.mid = mid
        self._done = threading.Event()
        self._acked = False

    @classmethod
    def refused(cls):
        delivery = cls()
        delivery._settle(False)
        return delivery

    def _settle(self, acked):
        self._acked = acked
        self._done.set()

    @property
    def done(self):
        """True once the outcome is known (acked or failed)."""
        return self._done.is_set()

    def wait(self, timeout=None):
        """True if the broker acked within `timeout` seconds; False when it
        failed or is still pending (treat as not delivered)."""
        self._done.wait(timeout)
        return self._acked


class MqttLink:
    """One broker connection that reconnects by itself; see module docstring."""

    def __init__(self, host, port, client_id, *, username=None, password=None,
                 tls=None, protocol="auto", clean=False, keepalive=30, will=None,
                 birth=None, session_expiry=DEFAULT_SESSION_EXPIRY,
                 reconnect_delay=(1, 30), max_inflight=20):
        if protocol not in PROTOCOLS:
            raise MqttConfigError("protocol must be one of %s, not %r" % (PROTOCOLS, protocol))
        if not clean and not client_id:
            raise MqttConfigError("client_id: a persistent session (clean=False) needs one")
        for name, message in (("will", will), ("birth", birth)):
            if message is not None and len(message) != 4:
                raise MqttConfigError("%s must be (topic, payload, qos, retain)" % name)
        self.host = host
        self.port = port
        self.client_id = client_id
        self.events = queue.Queue()
        self._username = username
        self._password = password
        self._ssl = _tls_context(tls) if tls else None
        self._auto = protocol == "auto"
        self._v5 = protocol != "3.1.1"
        self._clean = clean
        self._keepalive = keepalive
        self._will = will
        self._birth = birth
        self._session_expiry = session_expiry
        self._reconnect_delay = reconnect_delay
        self._max_inflight = max_inflight
        self._control = queue.Queue()
        self._lock = threading.Lock()  # guards _pending, _subscriptions, _live
        self._pending = {}
        self._subscriptions = {}
        self._live = False  # subscribe() may send SUBSCRIBE itself
        self._subacks = {}  # mid -> topic, resubscriptions not yet acked
        self._up = threading.Event()
        # The socket close that follows a refused CONNACK is the same refusal.
        self._refused = False
        self._connected_code = None
        self._client = None
        self._supervisor = None

    @property
    def connected(self):
        return self._up.is_set()

    @property
    def protocol(self):
        """"5" or "3.1.1": what the link speaks now (after any fallback)."""
        return "5" if self._v5 else "3.1.1"

    def wait_connected(self, timeout=None):
        """True once connected with subscriptions acked (within timeout)."""
        return self._up.wait(timeout)

    def start(self):
        if self._supervisor is not None:
            raise RuntimeError("MqttLink already started")
        self._client = self._new_client()
        self._supervisor = threading.Thread(
            target=self._supervise, name="mqtt-%s" % self.client_id, daemon=True)
        self._supervisor.start()

    def stop(self):
        """Disconnect cleanly (the will does not fire) and end both threads."""
        if self._supervisor is None:
            return
        self._close(self._client)
        self._control.put(("stop", None))
        self._supervisor.join()
        self._supervisor = None
        with self._lock:
            self._live = False
        self._client = None
        self._up.clear()
        self._fail_pending()

    def subscribe(self, topic, qos=1):
        """Subscribe now if connected, and again after every reconnect."""
        with self._lock:
            self._subscriptions[topic] = qos
            # _live flips under this lock together with the supervisor's
            # resubscription snapshot: a topic lands in one or the other.
            if self._live:
                self._client.subscribe(topic, qos)

    def publish(self, topic, payload, qos=1, retain=False):
        """Send one message; the returned Delivery says whether the broker
        acked it. Raises ValueError for a topic MQTT does not allow."""
        client = self._client
        if client is None or not self._up.is_set():
            return Delivery.refused()
        # Held across publish and registration so that the supervisor cannot
        # see the ack before the handle is in _pending.
        with self._lock:
            info = client.publish(topic, payload, qos, retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                # The connection dropped since the check above: paho keeps
                # the message to send after the reconnect, but it is
                # reported refused and the caller sends it again.
                _forget(client, info.mid)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                return Delivery.refused()
            delivery = Delivery(info.mid)
            self._pending[info.mid] = delivery
        return delivery

    # paho's network thread runs these: they only enqueue.

    def _on_connect(self, client, userdata, flags, reason_code, properties):
        self._control.put(("connect", client, reason_code))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        self._lost(client)
        self._control.put(("disconnect", client, reason_code))

    def _on_connect_fail(self, client, userdata):
        # paho calls this inside its `except OSError:` around the connect and
        # passes no error: exc_info is the only way to learn why (TLS, refused).
        self._lost(client)
        self._control.put(("disconnect", client, sys.exc_info()[1]))

    def _lost(self, client):
        """The connection is gone: from now on publish() refuses, and paho
        forgets what it has not had acked (the supervisor reports those
        deliveries failed, and their callers send them again). Done here, on
        paho's thread, because paho resends its queue as soon as it
        reconnects, which may be before the supervisor runs. No lock of ours
        is taken: paho may hold its own while it calls back."""
        if client is not self._client:
            return
        self._up.clear()
        _forget(client)

    def _on_publish(self, client, userdata, mid, reason_code, properties):
        self._control.put(("ack", client, mid, reason_code))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        self._control.put(("suback", client, mid, reason_codes))

    def _on_message(self, client, userdata, message):
        props = message.properties.json() if message.properties is not None else {}
        self.events.put(("message", message.topic, message.payload, props))

    # The supervisor thread.

    def _supervise(self):
        while True:
            item = self._control.get()
            kind, client = item[0], item[1]
            if kind == "stop":
                return
            if client is not self._client:
                continue  # from a client replaced by the 3.1.1 fallback
            if kind == "connect":
                self._connected(client, item[2])
            elif kind == "suback":
                self._subscribed(item[2], item[3])
            elif kind == "disconnect":
                with self._lock:
                    self._live = False
                self._up.clear()
                self._subacks = {}
                self._fail_pending()
                if not self._refused:
                    self.events.put(("disconnected", item[2]))
                self._refused = False
            elif kind == "ack":
                with self._lock:
                    delivery = self._pending.pop(item[2], None)
                if delivery is not None:
                    delivery._settle(not item[3].is_failure)

    def _connected(self, client, reason_code):
        if reason_code.is_failure:
            self.events.put(("disconnected", reason_code))
            if self._auto and self._v5 and reason_code.value == _UNSUPPORTED_PROTOCOL:
                self._v5 = False
                self._close(client)
                self._client = self._new_client()
            else:
                self._refused = True
            return
        self._refused = False
        with self._lock:
            subscriptions = list(self._subscriptions.items())
            self._live = True
        self._subacks = {}
        for topic, qos in subscriptions:
            result, mid = client.subscribe(topic, qos)
            if result == MQTTErrorCode.MQTT_ERR_SUCCESS:
                self._subacks[mid] = topic
        self._connected_code = reason_code
        if not self._subacks:
            self._ready(client)

    def _subscribed(self, mid, reason_codes):
        topic = self._subacks.pop(mid, None)
        if topic is None:
            return  # a live subscribe() call, not a resubscription
        if reason_codes[0].is_failure:
            self.events.put(("subscribe-failed", topic, reason_codes[0]))
        if not self._subacks:
            self._ready(self._client)

    def _ready(self, client):
        if self._birth is not None:
            client.publish(*self._birth)
        self._up.set()
        self.events.put(("connected", self._connected_code))

    def _fail_pending(self):
        with self._lock:
            pending, self._pending = self._pending, {}
        for delivery in pending.values():
            delivery._settle(False)

    @staticmethod
    def _close(client):
        client.disconnect()
        client.loop_stop()

    def _new_client(self):
        version = MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if self._v5 else self._clean,
            protocol=version,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_connect_fail = self._on_connect_fail
        client.on_publish = self._on_publish
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_socket_open = no_delay
        client.reconnect_delay_set(*self._reconnect_delay)
        client.max_inflight_messages_set(self._max_inflight)
        if self._username is not None:
            client.username_pw_set(self._username, self._password)
        if self._ssl is not None:
            client.tls_set_context(self._ssl)
        if self._will is not None:
            client.will_set(*self._will)
        if self._v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if self._clean else self._session_expiry
            client.connect_async(self.host, self.port, self._keepalive,
                                 clean_start=self._clean, properties=props)
        else:
            client.connect_async(self.host, self.port, self._keepalive)
        client.loop_start()
        return client
