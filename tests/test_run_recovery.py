"""`huaico run` end to end through an outage: the broker is down for the
middle of a storm while the modem answers +CMS ERROR; after both recover,
every alert message has gone out, in order per recipient, none doubled.

Real parts throughout: the gateway as a subprocess reading frames (built by
protocol.frame.encode_frame) from a pty, Mosquitto stopped and started by
the mosquitto_broker fixture, the AT modem emulator on a pty as [sms] port,
and a watcher on the broker with a persistent session.
"""
import collections
import json
import os
import select
import signal
import subprocess
import time

from huaico import config as config_mod
from huaico.mqtt.link import MqttLink
from huaico.protocol import link
from huaico.rules import engine as rules
from huaico.sms.modem_emulator import _recipient
from huaico.store import db
from tests.test_run import start_gateway

WAIT = 60.0  # upper bound on a loaded 2-core machine, not a measurement
LEVEL = 4  # water_level, mm
NUMBERS = ("+51987654321", "+51911111111")
# One episode: watch (1.5 m), warning (2.5 m), all clear (0.3 m).
EPISODE = (1500, 2500, 300)


def write_config(home, broker, modem):
    text = config_mod.DEFAULT_TOML
    for old, new in (
            ("enabled = false", "enabled = true"),
            ("port = 1883", "port = %d" % broker.port),
            ('client_id = "huaico-gateway"', 'client_id = "gw-recovery"'),
            ('backend = "none"', 'backend = "modem"'),
            ('port = ""', 'port = "%s"' % modem.path),
            ("cmgs_timeout_s = 60", "cmgs_timeout_s = 10"),
            ("rate_limit_per_hour = 12", "rate_limit_per_hour = 0"),
            ("retry_base_s = 5", "retry_base_s = 1"),
            ("retry_max_s = 600", "retry_max_s = 2"),
            ("coalesce_s = 60", "coalesce_s = 0"),  # one SMS per event, as counted here
            # Board times here lie in the past only to stay clear of the
            # clock; late-data reports have their own tests (test_alert_times).
            ("late_after_s = 900", "late_after_s = 864000"),
            ("numbers = []", "numbers = %s" % json.dumps(list(NUMBERS)))):
        assert old in text, old
        text = text.replace(old, new, 1)
    (home.path / "huaico.toml").write_text(text)
    rule = rules.Rule("river", "above", {"watch": 1.0, "warning": 2.0}, channel="water_level")
    row = rule.to_row()
    row["created"] = row["updated"] = time.time()
    with db.transaction(home.database) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)"
                     % (", ".join(row), ", ".join("?" * len(row))), list(row.values()))


class Storm:
    """The board's side: each frame is resent until the gateway acks it."""

    def __init__(self, pair, board):
        self.pair = pair
        self.board = board
        self.when = int(time.time()) - 3600

    def episode(self):
        for mm in EPISODE:
            self.when += 60
            self.send(self.board.frame([(LEVEL, 0, 0, mm, 0)], time=self.when))

    def send(self, raw):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            os.write(self.pair.master, link.encode(raw))
            ready, _, _ = select.select([self.pair.master], [], [], 0.5)
            if ready:
                for item in self.pair.decoder.feed(os.read(self.pair.master, 4096)):
                    if not isinstance(item, link.LinkError):
                        return self.board.ack(item)
        raise AssertionError("frame never acked")


def wait_for(condition, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


def outbox(home, where=""):
    return home.open().execute("SELECT id, transport, recipient, body, status FROM outbox "
                               + where + " ORDER BY id").fetchall()


def retries(home, transport):
    return home.open().execute(
        "SELECT count(*) FROM delivery_log l JOIN outbox o ON o.id = l.outbox_id "
        "WHERE l.outcome = 'retry' AND o.transport = ?", [transport]).fetchone()[0]


def watcher_settled(broker, client_id, count):
    """The broker sent `client_id` `count` messages and has its PUBACK for each
    (Mosquitto's log_type all: "Sending PUBLISH to <id> (", "Received PUBACK from <id> (")."""
    log = broker.log()
    sent = log.count("Sending PUBLISH to %s (" % client_id)
    return sent == count and log.count("Received PUBACK from %s (" % client_id) == sent


def test_broker_down_and_modem_errors_mid_storm_all_delivered_in_order_after_recovery(
        gateway_home, pty_pair, mosquitto_broker, modem_emulator):
    board = gateway_home.add("river1")
    write_config(gateway_home, mosquitto_broker, modem_emulator)
    watcher = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "watcher-recovery",
                       clean=False, reconnect_delay=(0.1, 0.5))
    watcher.subscribe("huaico/alerts/#", qos=1)
    watcher.start()
    assert watcher.wait_connected(WAIT)
    gateway = start_gateway(gateway_home, pty_pair.path)
    storm = Storm(pty_pair, board)
    try:
        # The pty is opened (and its input flushed) by the gateway at start:
        # the first frame is resent until acked, so nothing is lost to that.
        storm.episode()
        wait_for(lambda: outbox(gateway_home) and not outbox(gateway_home,
                                                             "WHERE status != 'sent'"),
                 "the first episode to be delivered")
        # The broker must also have the watcher's PUBACKs: a message still in
        # flight to the watcher when the broker stops is sent to it again
        # after the restart (QoS 1 between broker and watcher), and the
        # watcher, not the gateway, would see it twice.
        wait_for(lambda: watcher_settled(mosquitto_broker, "watcher-recovery",
                                         len(outbox(gateway_home, "WHERE transport = 'mqtt'"))),
                 "the watcher to ack the first episode")

        mosquitto_broker.stop()
        modem_emulator.fail_sends(38, count=6)  # network out of order: retryable
        for _ in range(3):
            storm.episode()
        wait_for(lambda: retries(gateway_home, "mqtt") and retries(gateway_home, "sms") >= 6,
                 "deliveries to fail while the broker is down and the modem errs")
        assert outbox(gateway_home, "WHERE status = 'pending'")

        mosquitto_broker.start()
        storm.episode()
        wait_for(lambda: not outbox(gateway_home, "WHERE status != 'sent'"),
                 "every message to be delivered after recovery")
    finally:
        gateway.send_signal(signal.SIGTERM)
        try:
            _, err = gateway.communicate(timeout=WAIT)
        except subprocess.TimeoutExpired:
            gateway.kill()
            _, err = gateway.communicate()
    assert gateway.returncode == 0, err.decode(errors="replace")[-3000:]

    rows = outbox(gateway_home)
    # 5 episodes x 3 events (watch, warning, clear) x (2 SMS + JSON + CAP).
    assert len(rows) == 5 * 3 * (len(NUMBERS) + 2)
    assert {status for *_, status in rows} == {"sent"}

    # SMS: every part of every message exactly once, in outbox order per number.
    by_ref = {}
    for outbox_id, recipient, refs in gateway_home.open().execute(
            "SELECT id, recipient, refs FROM outbox WHERE transport = 'sms' ORDER BY id"):
        for ref in json.loads(refs):
            by_ref[(recipient, ref)] = outbox_id
    assert len(modem_emulator.sent) == len(by_ref)
    sms_order = collections.defaultdict(list)
    for record in modem_emulator.sent:
        recipient = _recipient(record["hex"])
        outbox_id = by_ref[(recipient, str(record["mr"]))]
        if not sms_order[recipient] or sms_order[recipient][-1] != outbox_id:
            sms_order[recipient].append(outbox_id)
    for number in NUMBERS:
        expected = [i for i, transport, recipient, *_ in rows
                    if transport == "sms" and recipient == number]
        assert sms_order[number] == expected

    # MQTT: each message received once, in outbox order per topic.
    # Messages only: the queue also holds the watcher's (dis)connection events.
    wait_for(lambda: sum(event[0] == "message" for event in list(watcher.events.queue))
             >= len(rows) // 2, "the watcher's messages")
    received = collections.defaultdict(list)
    deadline = time.monotonic() + 1.0  # late doubles, if any, would show up here
    while time.monotonic() < deadline or not watcher.events.empty():
        try:
            event = watcher.events.get(timeout=0.1)
        except Exception:
            continue
        if event[0] == "message":
            received[event[1]].append(event[2].decode("utf-8"))
    watcher.stop()
    expected = collections.defaultdict(list)
    for _, transport, recipient, body, _ in rows:
        if transport == "mqtt":
            expected[recipient].append(body)
    assert dict(received) == dict(expected)
