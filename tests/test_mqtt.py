"""MqttLink against a real Mosquitto: acks, persistent sessions, outages,
wills, and the MQTT 5 -> 3.1.1 fallback."""
import os
import pathlib
import queue
import signal
import socket
import subprocess
import sys
import threading

import pytest

from huaico.mqtt.link import MqttConfigError, MqttLink

REPO = pathlib.Path(__file__).resolve().parents[1]
WAIT = 10.0  # generous: an upper bound for a loaded 2-core machine, not a measurement
FAST_RECONNECT = (0.1, 0.5)
PROTOCOLS = ["5", "3.1.1"]


def link(broker, client_id, **kwargs):
    kwargs.setdefault("reconnect_delay", FAST_RECONNECT)
    return MqttLink(broker.host, broker.port, client_id, **kwargs)


def next_event(mqtt, kind, timeout=WAIT):
    """The next event of `kind`, skipping others; fails after `timeout`."""
    while True:
        try:
            event = mqtt.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no %r event from %s" % (kind, mqtt.client_id)) from None
        if event[0] == kind:
            return event


def messages(mqtt, count):
    return [next_event(mqtt, "message")[1:3] for _ in range(count)]


@pytest.fixture
def links():
    started = []

    def make(broker, client_id, **kwargs):
        mqtt = link(broker, client_id, **kwargs)
        started.append(mqtt)
        return mqtt

    yield make
    for mqtt in started:
        mqtt.stop()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_qos1_round_trip_is_acked_and_received(mosquitto_broker, links, protocol):
    sub = links(mosquitto_broker, "sub", protocol=protocol)
    sub.subscribe("huaico/+/readings")
    sub.start()
    next_event(sub, "connected")
    pub = links(mosquitto_broker, "pub", protocol=protocol)
    pub.start()
    assert pub.wait_connected(WAIT)
    assert pub.protocol == protocol

    delivery = pub.publish("huaico/dev7/readings", b"\x00\x01binary\xff", qos=1)

    assert delivery.wait(WAIT) is True
    assert messages(sub, 1) == [("huaico/dev7/readings", b"\x00\x01binary\xff")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("broker_restart", [False, True], ids=["broker-up", "broker-restarted"])
def test_persistent_session_keeps_messages_while_subscriber_is_down(
        mosquitto_broker, links, protocol, broker_restart):
    first = links(mosquitto_broker, "gateway-1", protocol=protocol)
    first.subscribe("huaico/alerts/#")
    first.start()
    next_event(first, "connected")
    first.stop()
    pub = links(mosquitto_broker, "pub", protocol=protocol)
    pub.start()
    assert pub.wait_connected(WAIT)
    sent = [("huaico/alerts/%d" % i, b"alert %d" % i) for i in range(5)]
    assert all(pub.publish(topic, payload).wait(WAIT) for topic, payload in sent)
    if broker_restart:
        pub.stop()
        mosquitto_broker.stop()  # SIGTERM: Mosquitto saves the sessions to disk
        mosquitto_broker.start()

    again = links(mosquitto_broker, "gateway-1", protocol=protocol)
    again.start()

    assert messages(again, 5) == sent


def test_clean_link_gets_nothing_queued(mosquitto_broker, links):
    first = links(mosquitto_broker, "viewer", clean=True)
    first.subscribe("huaico/alerts/#")
    first.start()
    next_event(first, "connected")
    first.stop()
    pub = links(mosquitto_broker, "pub")
    pub.start()
    assert pub.wait_connected(WAIT)
    assert pub.publish("huaico/alerts/1", b"missed").wait(WAIT)

    again = links(mosquitto_broker, "viewer", clean=True)
    again.subscribe("huaico/alerts/#")
    again.start()
    next_event(again, "connected")
    assert pub.publish("huaico/alerts/2", b"live").wait(WAIT)
    assert messages(again, 1) == [("huaico/alerts/2", b"live")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_broker_outage_mid_storm(mosquitto_broker, links, protocol):
    gateway = links(mosquitto_broker, "gateway", protocol=protocol)
    gateway.subscribe("storm/#")
    gateway.start()
    next_event(gateway, "connected")
    assert gateway.publish("storm/before", b"1").wait(WAIT)
    assert messages(gateway, 1) == [("storm/before", b"1")]

    # A crash loses the broker's sessions: getting messages afterwards proves
    # that the link subscribed again by itself.
    mosquitto_broker.stop(crash=True)
    next_event(gateway, "disconnected")
    assert not gateway.connected
    during = [gateway.publish("storm/during", b"%d" % i) for i in range(3)]
    assert [d.wait(WAIT) for d in during] == [False, False, False]
    assert all(d.done for d in during)

    mosquitto_broker.start()
    next_event(gateway, "connected")
    assert gateway.connected
    after = gateway.publish("storm/after", b"2")
    assert after.wait(WAIT) is True
    # The outage publishes were not kept in paho's memory and sent now: the
    # outbox owns them, and will resend them itself.
    assert messages(gateway, 1) == [("storm/after", b"2")]


def test_in_flight_publishes_fail_when_the_connection_drops(mosquitto_broker, links):
    gateway = links(mosquitto_broker, "gateway")
    gateway.start()
    assert gateway.wait_connected(WAIT)
    mosquitto_broker.stop(crash=True)
    next_event(gateway, "disconnected")
    assert gateway.publish("x", b"y").wait(0) is False


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_publish_reported_failed_is_not_sent_again_by_paho(mosquitto_broker, links, protocol):
    """The caller's resend of a publish the link reported failed is its only
    copy: paho used to keep the unacked message and resend it on reconnect,
    and an alert reached the broker twice after an outage."""
    watcher = links(mosquitto_broker, "watcher", protocol=protocol)
    watcher.subscribe("alerts/#")
    watcher.start()
    next_event(watcher, "connected")
    # SIGTERM saves the watcher's session: it outlives the crash below, so
    # the broker queues for the watcher whatever arrives after it.
    mosquitto_broker.stop()
    mosquitto_broker.start()
    next_event(watcher, "connected")
    gateway = links(mosquitto_broker, "gateway", protocol=protocol)
    gateway.start()
    next_event(gateway, "connected")

    os.kill(mosquitto_broker.process.pid, signal.SIGSTOP)  # takes the PUBLISH, never acks
    delivery = gateway.publish("alerts/1", b"once")
    mosquitto_broker.stop(crash=True)  # the PUBLISH dies unread in its socket
    assert delivery.wait(WAIT) is False
    mosquitto_broker.start()
    next_event(gateway, "connected")
    assert gateway.publish("alerts/1", b"once").wait(WAIT)  # the outbox's resend
    assert gateway.publish("alerts/end", b"").wait(WAIT)

    assert messages(watcher, 2) == [("alerts/1", b"once"), ("alerts/end", b"")]


def test_events_queue_carries_messages_without_a_reader(mosquitto_broker, links):
    """Callbacks only enqueue: with nobody reading the queue, paho's thread
    still completes every PUBACK, and the messages wait in order."""
    gateway = links(mosquitto_broker, "gateway")
    gateway.subscribe("flood/level")
    gateway.start()
    next_event(gateway, "connected")
    deliveries = [gateway.publish("flood/level", b"%d" % i) for i in range(200)]
    assert all(d.wait(WAIT) for d in deliveries)
    assert messages(gateway, 200) == [("flood/level", b"%d" % i) for i in range(200)]


def test_mqtt5_message_properties_reach_the_event(mosquitto_broker, links):
    gateway = links(mosquitto_broker, "gateway", protocol="5")
    gateway.subscribe("p/#")
    gateway.start()
    next_event(gateway, "connected")
    assert gateway.publish("p/1", b"x").wait(WAIT)
    event = next_event(gateway, "message")
    assert event[:3] == ("message", "p/1", b"x")
    assert isinstance(event[3], dict)


_WILL_SCRIPT = """
import sys, time
from huaico.mqtt.link import MqttLink
status = "huaico/gateway/%(id)s/status"
link = MqttLink("127.0.0.1", %(port)d, "%(id)s", protocol="%(protocol)s",
                will=(status, b"offline", 1, True), birth=(status, b"online", 1, True))
link.start()
link.wait_connected(10)
print("up", flush=True)
time.sleep(600)
"""


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_will_fires_when_the_gateway_dies(mosquitto_broker, links, tmp_path, protocol):
    watcher = links(mosquitto_broker, "watcher")
    watcher.subscribe("huaico/gateway/+/status")
    watcher.start()
    next_event(watcher, "connected")
    script = tmp_path / "gateway_process.py"
    script.write_text(_WILL_SCRIPT % {"id": "gw-crash", "port": mosquitto_broker.port, "protocol": protocol})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, env=env)
    try:
        assert process.stdout.readline() == b"up\n"
        assert messages(watcher, 1) == [("huaico/gateway/gw-crash/status", b"online")]
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdout.close()

    assert messages(watcher, 1) == [("huaico/gateway/gw-crash/status", b"offline")]
    late = links(mosquitto_broker, "late-viewer", clean=True)
    late.subscribe("huaico/gateway/+/status")
    late.start()
    assert messages(late, 1) == [("huaico/gateway/gw-crash/status", b"offline")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_clean_stop_does_not_fire_the_will(mosquitto_broker, links, protocol):
    watcher = links(mosquitto_broker, "watcher")
    watcher.subscribe("huaico/gateway/#")
    watcher.start()
    next_event(watcher, "connected")
    status = "huaico/gateway/gw-clean/status"
    gateway = links(mosquitto_broker, "gw-clean", protocol=protocol,
                    will=(status, b"offline", 1, True), birth=(status, b"online", 1, True))
    gateway.start()
    assert messages(watcher, 1) == [(status, b"online")]

    gateway.stop()
    mosquitto_broker.wait_log("Client gw-clean disconnected.")
    marker = links(mosquitto_broker, "marker")
    marker.start()
    assert marker.wait_connected(WAIT)
    assert marker.publish("huaico/gateway/marker", b"after-stop").wait(WAIT)

    assert messages(watcher, 1) == [("huaico/gateway/marker", b"after-stop")]


class OldBroker:
    """An MQTT 3.1.1-only broker in front of the real Mosquitto: it refuses
    MQTT 5 CONNECTs the way 3.1.1 brokers do (CONNACK return code 1,
    "unacceptable protocol version", MQTT 3.1.1 §3.2.2.3) and relays every
    other connection to Mosquitto untouched."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.refused = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = self.listener.getsockname()
        self.threads = []
        self.sockets = []
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        head = b""
        # Fixed header (1) + remaining length (1 here) + protocol name
        # "\x00\x04MQTT" (6) + protocol level (1).
        while len(head) < 9:
            chunk = conn.recv(9 - len(head))
            if not chunk:
                return
            head += chunk
        if head[8] == 5:
            self.refused += 1
            conn.sendall(b"\x20\x02\x00\x01")
            conn.close()
            return
        up = socket.create_connection((self.upstream.host, self.upstream.port))
        self.sockets.append(up)
        up.sendall(head)
        threading.Thread(target=self._pipe, args=(up, conn), daemon=True).start()
        self._pipe(conn, up)

    @staticmethod
    def _pipe(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def test_auto_falls_back_to_mqtt311_when_the_broker_refuses_mqtt5(mosquitto_broker, links):
    old = OldBroker(mosquitto_broker)
    try:
        gateway = MqttLink(old.host, old.port, "gateway-auto", protocol="auto",
                           reconnect_delay=FAST_RECONNECT)
        gateway.subscribe("old/#")
        gateway.start()
        try:
            next_event(gateway, "connected")
            assert gateway.protocol == "3.1.1"
            assert old.refused == 1
            assert gateway.publish("old/x", b"via 3.1.1").wait(WAIT)
            assert messages(gateway, 1) == [("old/x", b"via 3.1.1")]
        finally:
            gateway.stop()
    finally:
        old.close()
    # Mosquitto logs its own protocol enum: p2 is MQTT 3.1.1, p5 MQTT 5.
    mosquitto_broker.wait_log("as gateway-auto (p2, c0, k30)")


def test_mqtt5_only_link_does_not_fall_back(mosquitto_broker):
    old = OldBroker(mosquitto_broker)
    gateway = MqttLink(old.host, old.port, "gateway-v5", protocol="5",
                       reconnect_delay=FAST_RECONNECT)
    gateway.start()
    try:
        next_event(gateway, "disconnected")
        assert gateway.protocol == "5"
        assert not gateway.connected
    finally:
        gateway.stop()
        old.close()


@pytest.mark.parametrize("kwargs, word", [
    ({"protocol": "3.1"}, "protocol"),
    ({"client_id": ""}, "client_id"),
    ({"will": ("t", b"x")}, "will"),
])
def test_bad_configuration_is_a_typed_error(kwargs, word):
    args = {"client_id": "gw"}
    args.update(kwargs)
    client_id = args.pop("client_id")
    with pytest.raises(MqttConfigError, match=word):
        MqttLink("127.0.0.1", 1, client_id, **args)


def test_subscribe_after_connect_takes_effect(mosquitto_broker, links):
    gateway = links(mosquitto_broker, "gateway")
    gateway.start()
    next_event(gateway, "connected")
    gateway.subscribe("late/#")
    # Same connection: the SUBSCRIBE is on the wire before this PUBLISH.
    assert gateway.publish("late/1", b"x").wait(WAIT)
    assert messages(gateway, 1) == [("late/1", b"x")]
