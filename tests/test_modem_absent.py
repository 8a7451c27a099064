"""A configured modem that is not there must not stop the gateway (issue 11,
fault 9): `huaico run` starts with [sms] port naming a device that does not
exist yet, stores and acks frames, publishes alerts on a real Mosquitto,
shows the absence in its status line, the MQTT counters, `status` and
`doctor`, tells operators on MQTT once SMS has failed for alert_after_s, and
sends the waiting SMS when the modem appears (a symlink to the emulator's
pty, as udev makes /dev/serial/by-id/... when a USB modem enumerates late)."""
import json
import os
import signal
import subprocess
import time

from huaico import config as config_mod
from huaico.mqtt.link import MqttLink
from huaico.rules import engine as rules
from huaico.store import db
from tests.test_run import CLI, start_gateway
from tests.test_run_recovery import Storm, outbox, wait_for

WAIT = 60.0  # upper bound on a loaded 2-core machine, not a measurement


def configure(home, broker, port, backend="modem"):
    text = config_mod.DEFAULT_TOML
    for old, new in (
            ("enabled = false", "enabled = true"),
            ("port = 1883", "port = %d" % broker.port),
            ('client_id = "huaico-gateway"', 'client_id = "gw-absent"'),
            ('backend = "none"', 'backend = "%s"' % backend),
            ('port = ""', 'port = "%s"' % port),
            ("alert_after_s = 300", "alert_after_s = 1"),
            ("numbers = []", 'numbers = ["+51987654321"]')):
        assert old in text, old
        text = text.replace(old, new, 1)
    (home.path / "huaico.toml").write_text(text)
    rule = rules.Rule("river", "above", {"watch": 1.0}, channel="water_level")
    row = rule.to_row()
    row["created"] = row["updated"] = time.time()
    with db.transaction(home.database) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)"
                     % (", ".join(row), ", ".join("?" * len(row))), list(row.values()))


def cli(home, *args):
    env = dict(os.environ, HUAICO_HOME=str(home.path), PYTHONPATH=os.getcwd())
    return subprocess.run(CLI + list(args), env=env, capture_output=True, timeout=WAIT,
                          text=True)


def messages(watcher, topic_end, seen):
    while not watcher.events.empty():
        event = watcher.events.get()
        if event[0] == "message":
            seen.append((event[1], event[2].decode()))
    return [json.loads(body) for topic, body in seen
            if topic.endswith(topic_end) and body.startswith("{")]


def stop(gateway):
    gateway.send_signal(signal.SIGTERM)
    try:
        _, err = gateway.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        gateway.kill()
        _, err = gateway.communicate()
    return err.decode(errors="replace")


def test_absent_modem_gateway_runs_reports_it_and_sends_when_it_appears(
        gateway_home, pty_pair, mosquitto_broker, modem_emulator, tmp_path):
    board = gateway_home.add("river1")
    port = tmp_path / "ttyUSB-modem"  # not there yet
    configure(gateway_home, mosquitto_broker, port)
    watcher = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "watcher-absent")
    watcher.subscribe("huaico/#", qos=1)
    watcher.start()
    assert watcher.wait_connected(WAIT)
    gateway = start_gateway(gateway_home, pty_pair.path, "--status-every", "0.5")
    seen = []
    try:
        storm = Storm(pty_pair, board)
        storm.when = int(time.time()) - 60
        storm.send(board.frame([(4, 0, 0, 1500, 0)], time=storm.when))  # acked: stored
        wait_for(lambda: messages(watcher, "/alerts/1", seen), "the alert on MQTT")
        wait_for(lambda: messages(watcher, "/alerts/gateway", seen),
                 "the operators' MQTT alert about SMS")
        assert messages(watcher, "/alerts/gateway", seen)[0]["event"] == "sms_delivery_failing"
        wait_for(lambda: any(c.get("sms_failing_s", 0) >= 1
                             for c in messages(watcher, "/counters", seen)),
                 "the MQTT counters to show SMS failing")
        assert outbox(gateway_home, "WHERE transport = 'sms' AND status = 'pending'")
        shown = cli(gateway_home, "status")
        assert "SMS delivery FAILING" in shown.stdout and str(port) in shown.stdout
        doctor = cli(gateway_home, "doctor")
        assert "sms delivery" in doctor.stdout and "failing for" in doctor.stdout

        os.symlink(modem_emulator.path, port)  # the USB modem enumerates
        wait_for(lambda: not outbox(gateway_home, "WHERE status != 'sent'"),
                 "the waiting SMS to go out once the modem is there")
        assert modem_emulator.sent
        wait_for(lambda: len(messages(watcher, "/alerts/gateway", seen)) == 2,
                 "the operators' all-clear about SMS")
        assert messages(watcher, "/alerts/gateway", seen)[1]["event"] == "sms_delivery_restored"
        wait_for(lambda: messages(watcher, "/counters", seen)[-1]["sms_failing_s"] == 0,
                 "the MQTT counters to show SMS working")
    finally:
        err = stop(gateway)
        watcher.stop()
    assert gateway.returncode == 0, err[-3000:]
    assert "event=modem_absent" in err
    assert "sms=failing_" in err and "sms=ok" in err  # the status line, before and after


def test_run_without_an_sms_backend_says_so_at_start(gateway_home, pty_pair,
                                                      mosquitto_broker):
    configure(gateway_home, mosquitto_broker, "", backend="none")
    watcher = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "watcher-none")
    watcher.subscribe("huaico/gateway/+/status", qos=1)
    watcher.start()
    gateway = start_gateway(gateway_home, pty_pair.path)
    seen = []
    try:
        # The birth message: the gateway has started (and has its handlers).
        wait_for(lambda: messages(watcher, "", seen) is not None and
                 ("huaico/gateway/gw-absent/status", "online") in seen, "the gateway to start")
    finally:
        err = stop(gateway)
        watcher.stop()
    assert gateway.returncode == 0, err[-3000:]
    assert "event=no_sms_backend" in err
