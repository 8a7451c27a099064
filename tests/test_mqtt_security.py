"""MqttLink and `huaico run` against a Mosquitto that wants a user name and
password and speaks TLS (issue 5): the right credentials and CA work, the
wrong ones are refused and reported, and nothing is ever reported delivered
over a connection the broker refused."""
import os
import select
import signal
import time

import pytest
from paho.mqtt.packettypes import PacketTypes

from huaico import config as config_mod
from huaico.mqtt.link import MqttConfigError, MqttLink
from tests.fixtures.broker import CertificateAuthority
from tests.test_mqtt import FAST_RECONNECT, WAIT, messages, next_event
from tests.test_run import start_gateway

USERS = {"gateway": "river gauge 7", "watcher": "w4tch"}
PROTOCOLS = ["5", "3.1.1"]
# A refused connection is retried this often with FAST_RECONNECT: enough
# attempts to see that none of them gets through.
REFUSALS = 3


@pytest.fixture
def links():
    started = []

    def make(broker, client_id, **kwargs):
        kwargs.setdefault("reconnect_delay", FAST_RECONNECT)
        mqtt = MqttLink(broker.host, broker.port, client_id, **kwargs)
        started.append(mqtt)
        return mqtt

    yield make
    for mqtt in started:
        mqtt.stop()


@pytest.fixture
def ca(tmp_path):
    return CertificateAuthority(tmp_path / "ca")


def tls_broker(mosquitto_factory, ca, **options):
    cert, key = ca.server()
    return mosquitto_factory(tls=(ca.cert, cert, key), **options)


def login(name):
    return {"username": name, "password": USERS[name]}


def assert_refused(mqtt, publish_topic):
    """The link reports refusals, never comes up, and no publish of its is acked."""
    reasons = [next_event(mqtt, "disconnected")[1] for _ in range(REFUSALS)]
    assert not mqtt.connected
    delivery = mqtt.publish(publish_topic, b"must not arrive", qos=1)
    assert delivery.done and delivery.wait(0) is False
    return reasons


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_right_credentials_qos1_round_trip(mosquitto_factory, links, protocol):
    broker = mosquitto_factory(users=USERS)
    watcher = links(broker, "watcher", protocol=protocol, **login("watcher"))
    watcher.subscribe("huaico/+/readings")
    watcher.start()
    next_event(watcher, "connected")
    gateway = links(broker, "gateway", protocol=protocol, **login("gateway"))
    gateway.start()
    assert gateway.wait_connected(WAIT)

    assert gateway.publish("huaico/dev7/readings", b"\x00\x01", qos=1).wait(WAIT) is True
    assert messages(watcher, 1) == [("huaico/dev7/readings", b"\x00\x01")]
    broker.wait_log("u'gateway'")  # the broker saw who logged in


@pytest.mark.parametrize("protocol", ["auto", "5", "3.1.1"])
@pytest.mark.parametrize("credentials", [
    {"username": "gateway", "password": "river gauge 8"},
    {"username": "intruder", "password": "river gauge 7"},
    {"username": "gateway"},
    {},
], ids=["wrong-password", "unknown-user", "no-password", "anonymous"])
def test_wrong_credentials_are_refused_and_nothing_is_delivered(
        mosquitto_factory, links, protocol, credentials):
    broker = mosquitto_factory(users=USERS)
    watcher = links(broker, "watcher", **login("watcher"))
    watcher.subscribe("#")
    watcher.start()
    next_event(watcher, "connected")
    gateway = links(broker, "gateway", protocol=protocol,
                    will=("huaico/gateway/status", b"offline", 1, True),
                    birth=("huaico/gateway/status", b"online", 1, True), **credentials)
    gateway.start()

    reasons = assert_refused(gateway, "huaico/dev7/readings")
    # Each attempt is one event, the CONNACK's code: MQTT 5 "Bad User Name
    # or Password" / "Not authorized" (paho maps the MQTT 3.1.1 codes 4 and
    # 5 to the same two), not the socket close that follows it.
    assert all(reason.packetType == PacketTypes.CONNACK and reason.value in (0x86, 0x87)
               for reason in reasons), reasons
    # A refusal is not "this broker is too old": no fallback to 3.1.1.
    assert gateway.protocol == ("3.1.1" if protocol == "3.1.1" else "5")
    gateway.stop()
    # Neither the birth, the will nor the publish reached anyone.
    assert watcher.publish("huaico/sentinel", b"end").wait(WAIT)
    assert messages(watcher, 1) == [("huaico/sentinel", b"end")]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_with_the_test_ca_round_trip(mosquitto_factory, ca, links, protocol):
    broker = tls_broker(mosquitto_factory, ca)
    gateway = links(broker, "gateway", protocol=protocol, tls={"ca": str(ca.cert)})
    gateway.subscribe("huaico/+/readings")
    gateway.start()
    next_event(gateway, "connected")

    assert gateway.publish("huaico/dev7/readings", b"over tls", qos=1).wait(WAIT) is True
    assert messages(gateway, 1) == [("huaico/dev7/readings", b"over tls")]


def test_plain_tcp_to_a_tls_listener_never_connects(mosquitto_factory, ca, links):
    broker = tls_broker(mosquitto_factory, ca)
    gateway = links(broker, "gateway")
    gateway.start()
    assert_refused(gateway, "huaico/dev7/readings")


def test_tls_server_not_signed_by_our_ca_is_refused(mosquitto_factory, ca, tmp_path, links):
    impostor = CertificateAuthority(tmp_path / "impostor", name="impostor CA")
    broker = tls_broker(mosquitto_factory, impostor, users=USERS)
    gateway = links(broker, "gateway", tls={"ca": str(ca.cert)}, **login("gateway"))
    gateway.start()

    reasons = assert_refused(gateway, "huaico/dev7/readings")
    assert all("CERTIFICATE_VERIFY_FAILED" in str(reason) for reason in reasons), reasons
    # The password never went to the impostor: no CONNECT reached it.
    assert "CONNECT" not in broker.log()


def test_tls_server_certificate_for_another_host_is_refused(mosquitto_factory, ca, links):
    cert, key = ca.server("elsewhere", hosts=("gauge.example.org",))
    broker = mosquitto_factory(tls=(ca.cert, cert, key))
    strict = links(broker, "strict", tls={"ca": str(ca.cert)})
    strict.start()
    reasons = assert_refused(strict, "huaico/dev7/readings")
    assert all("CERTIFICATE_VERIFY_FAILED" in str(reason) for reason in reasons), reasons

    # insecure skips only the host name check; the chain is still checked.
    lax = links(broker, "lax", tls={"ca": str(ca.cert), "insecure": True})
    lax.start()
    assert lax.wait_connected(WAIT)


def test_tls_client_certificate(mosquitto_factory, ca, tmp_path, links):
    broker = tls_broker(mosquitto_factory, ca, require_certificate=True)
    cert, key = ca.client("gateway-cert")
    gateway = links(broker, "gateway", tls={"ca": str(ca.cert), "cert": str(cert),
                                            "key": str(key)})
    gateway.subscribe("huaico/#")
    gateway.start()
    next_event(gateway, "connected")
    assert gateway.publish("huaico/x", b"mutual").wait(WAIT) is True
    assert messages(gateway, 1) == [("huaico/x", b"mutual")]
    # The broker took the certificate's CN as the user name.
    broker.wait_log("u'gateway-cert'")

    without = links(broker, "without", tls={"ca": str(ca.cert)})
    without.start()
    assert_refused(without, "huaico/x")


@pytest.mark.parametrize("tls, word", [
    ({"ca": "/nonexistent/ca.pem"}, "/nonexistent/ca.pem"),
    ({"ca": __file__}, "CA"),  # a file, but no certificate in it
    ({"cert": "/nonexistent/client.pem"}, "/nonexistent/client.pem"),
    ({"key": "/nonexistent/client.key"}, "without its cert"),
    ({"ca_certs": "x"}, "unknown keys"),
])
def test_unusable_tls_files_are_a_typed_error_at_construction(tls, word):
    with pytest.raises(MqttConfigError, match=word):
        MqttLink("127.0.0.1", 1, "gw", tls=tls)


def test_config_tls_options():
    def tls_of(**mqtt):
        text = "[mqtt]\n" + "".join('%s = %s\n' % (k, toml_value(v)) for k, v in mqtt.items())
        return config_mod.from_text(text, "/srv/huaico").mqtt_tls()

    assert tls_of() is None
    assert tls_of(tls=True) is True
    assert tls_of(tls_ca="ca.pem") == {"ca": "/srv/huaico/ca.pem"}
    assert tls_of(tls_cert="/etc/gw.pem", tls_key="gw.key") == {
        "cert": "/etc/gw.pem", "key": "/srv/huaico/gw.key"}
    with pytest.raises(config_mod.ConfigError, match="tls_key"):
        tls_of(tls_key="gw.key")


def toml_value(value):
    return "true" if value is True else '"%s"' % value


def write_config(home, broker, password, **mqtt):
    text = config_mod.DEFAULT_TOML
    for old, new in (
            ("enabled = false", "enabled = true"),
            ("port = 1883", "port = %d" % broker.port),
            ('username = ""', 'username = "gateway"'),
            ('password = ""', 'password = "%s"' % password),
            ('client_id = "huaico-gateway"', 'client_id = "gw-secure"'),
            *(('%s = ""' % key, '%s = "%s"' % (key, value)) for key, value in mqtt.items())):
        assert old in text, old
        text = text.replace(old, new, 1)
    (home.path / config_mod.CONFIG_NAME).write_text(text)


def gateway_comes_online_then_stops(watcher, gateway_home, pty_pair):
    """`huaico run` publishes its retained status "online"; SIGTERM ends it cleanly."""
    watcher.subscribe("huaico/gateway/gw-secure/status")
    watcher.start()
    next_event(watcher, "connected")
    gateway = start_gateway(gateway_home, pty_pair.path)
    try:
        assert messages(watcher, 1) == [("huaico/gateway/gw-secure/status", b"online")]
    finally:
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=WAIT)
    assert gateway.returncode == 0, err.decode()


def test_huaico_run_publishes_its_status_over_tls_with_a_password(
        mosquitto_factory, ca, links, gateway_home, pty_pair):
    broker = tls_broker(mosquitto_factory, ca, users=USERS)
    write_config(gateway_home, broker, USERS["gateway"], tls_ca=ca.cert)
    watcher = links(broker, "watcher", tls={"ca": str(ca.cert)}, **login("watcher"))
    gateway_comes_online_then_stops(watcher, gateway_home, pty_pair)
    assert messages(watcher, 1) == [("huaico/gateway/gw-secure/status", b"offline")]

    # Retained: a subscriber arriving later still learns the gateway's state.
    late = links(broker, "late", tls={"ca": str(ca.cert)}, **login("watcher"))
    late.subscribe("huaico/gateway/+/status")
    late.start()
    assert messages(late, 1) == [("huaico/gateway/gw-secure/status", b"offline")]


def read_until(stream, text, timeout=WAIT):
    """What a subprocess has written to `stream` up to and including `text`."""
    seen = b""
    deadline = time.monotonic() + timeout
    while text not in seen:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([stream], [], [], max(left, 0))
        if not ready:
            raise AssertionError("never saw %r in:\n%s" % (text, seen.decode(errors="replace")))
        chunk = os.read(stream.fileno(), 4096)
        if not chunk:
            raise AssertionError("ended before %r:\n%s" % (text, seen.decode(errors="replace")))
        seen += chunk
    return seen


def test_huaico_run_logs_a_refused_password(mosquitto_factory, ca, gateway_home, pty_pair):
    broker = tls_broker(mosquitto_factory, ca, users=USERS)
    write_config(gateway_home, broker, "not the password", tls_ca=ca.cert)

    gateway = start_gateway(gateway_home, pty_pair.path)
    try:
        seen = read_until(gateway.stderr, b"event=mqtt_disconnected")
    finally:
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=WAIT)
    assert gateway.returncode == 0, err.decode()
    assert b"Not authorized" in seen or b"Bad user name or password" in seen, seen


def test_huaico_run_with_a_client_certificate(mosquitto_factory, ca, links, gateway_home,
                                              pty_pair):
    broker = tls_broker(mosquitto_factory, ca, require_certificate=True)
    cert, key = ca.client("gw-secure")
    write_config(gateway_home, broker, "", tls_ca=ca.cert, tls_cert=cert, tls_key=key)
    watcher_cert, watcher_key = ca.client("watcher")
    watcher = links(broker, "watcher", tls={"ca": str(ca.cert), "cert": str(watcher_cert),
                                            "key": str(watcher_key)})
    gateway_comes_online_then_stops(watcher, gateway_home, pty_pair)
    broker.wait_log("u'gw-secure'")


def test_huaico_run_with_a_missing_ca_file_says_so(mosquitto_factory, ca, gateway_home,
                                                  pty_pair):
    broker = tls_broker(mosquitto_factory, ca)
    write_config(gateway_home, broker, "", tls_ca="no-such-ca.pem")
    gateway = start_gateway(gateway_home, pty_pair.path)
    _, err = gateway.communicate(timeout=WAIT)
    assert gateway.returncode != 0
    assert "no-such-ca.pem" in err.decode() and "Traceback" not in err.decode(), err.decode()
