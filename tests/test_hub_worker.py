"""The hub worker's lean way in for frames (huaico.hub.worker._Client) against
paho's own PUBLISH decoder, on packets with and without MQTT 5 properties;
Nagle's algorithm off on the MQTT connections a frame's alert takes; and
the buffered socket under TLS, where paho also asks the SSL socket."""
import queue
import socket
import ssl
import struct
import time

import pytest
from paho.mqtt import _packet
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from huaico.hub import worker as hub_worker
from huaico.mqtt.link import MqttLink
from tests.fixtures.broker import CertificateAuthority


def _publish(topic, mid, qos, payload, properties):
    """A PUBLISH packet's fixed-header byte and the rest after its length."""
    body = struct.pack("!H", len(topic)) + topic
    if qos:
        body += struct.pack("!H", mid)
    return 0x30 | qos << 1, body + properties.pack() + payload


def _properties(kind):
    props = Properties(PacketTypes.PUBLISH)
    if kind == "many":
        props.MessageExpiryInterval = 3600
        props.ContentType = "application/json"
        props.UserProperty = ("gw", "gw-a" * 40)  # a property length over 127: two bytes
        props.SubscriptionIdentifier = 300
    return props


@pytest.mark.parametrize("kind", ["none", "many"])
@pytest.mark.parametrize("qos", [0, 1])
def test_lean_publish_reads_what_paho_reads(kind, qos):
    client = hub_worker._Client(CallbackAPIVersion.VERSION2, client_id="t",
                                protocol=MQTTProtocolVersion.MQTTv5)
    got = []
    client.on_frame = lambda *args: got.append(args)
    topic, payload = "huaico-city/gw-\u00f1/frames".encode("utf-8"), b'{"frame": "x"}' * 20
    header, packet = _publish(topic, 4711, qos, payload, _properties(kind))
    client._in_packet = {"command": header, "packet": packet}
    assert client._handle_publish() == 0
    reference = _packet.decode_publish(header, packet, MQTTProtocolVersion.MQTTv5)
    assert got == [(reference.mid, reference.qos, reference.topic.decode("utf-8"),
                    reference.payload)]
    assert got[0][1:] == (qos, topic.decode("utf-8"), payload)


def test_paho_internals_the_worker_overrides_are_there():
    # A paho that renamed them would silently bypass the overrides: fail here instead.
    for name in ("_create_socket", "_handle_publish", "_in_packet", "loop_read", "_sock"):
        assert hasattr(hub_worker.paho.Client(CallbackAPIVersion.VERSION2), name)


def test_mqtt_connections_send_at_once(mosquitto_broker):
    # With Nagle's algorithm on, a gateway's forwarded frame waited behind its
    # last PUBACK for the broker's delayed ACK (bench/hub.py's alert latency).
    port = mosquitto_broker.port
    link = MqttLink("127.0.0.1", port, "t-link", clean=True)
    link.start()
    worker = hub_worker.Worker("dbname=unused", "127.0.0.1", port, "t-worker")
    try:
        assert link.wait_connected(10)
        worker._client.connect("127.0.0.1", port)
        for sock in (link._client.socket(), worker._client.socket()):
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    finally:
        worker._client.disconnect()
        link.stop()


@pytest.mark.parametrize("tls", [False, True])
def test_frames_through_the_buffered_socket(mosquitto_factory, tmp_path, tls):
    # QoS 0, no acks: nothing but the buffered socket's pending() makes paho
    # read the packets it holds before selecting again (an ack would wake it).
    ca = CertificateAuthority(tmp_path / "ca")
    cert, key = ca.server()
    broker = mosquitto_factory(tls=(ca.cert, cert, key) if tls else None)
    got = queue.Queue()
    client = hub_worker._Client(CallbackAPIVersion.VERSION2, client_id="t-tls",
                                protocol=MQTTProtocolVersion.MQTTv5)
    if tls:
        client.tls_set_context(ssl.create_default_context(cafile=str(ca.cert)))
    client.on_frame = lambda *args: got.put(args)
    client.on_connect = lambda c, *rest: c.subscribe("t/+/frames", qos=1)
    client.on_subscribe = lambda *rest: got.put("subscribed")
    client.connect(broker.host, broker.port)
    client.loop_start()
    publisher = MqttLink(broker.host, broker.port, "t-pub", clean=True,
                         tls={"ca": str(ca.cert)} if tls else None)
    publisher.start()
    try:
        assert got.get(timeout=10) == "subscribed" and publisher.wait_connected(10)
        # Enough that many packets arrive in one read of the buffered socket.
        sent = [b"%05d" % n * 40 for n in range(500)]
        for body in sent:
            publisher.publish("t/gw-a/frames", body, qos=0)
        frames = []
        deadline = time.monotonic() + 10
        while len(frames) < len(sent) and time.monotonic() < deadline:
            try:
                frames.append(got.get(timeout=0.1))
            except queue.Empty:
                pass
        assert [frame[3] for frame in frames] == sent
        assert {frame[:3] for frame in frames} == {(0, 0, "t/gw-a/frames")}
    finally:
        publisher.stop()
        client.disconnect()
        client.loop_stop()
