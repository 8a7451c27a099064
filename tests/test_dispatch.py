"""The dispatcher against real parts: the pty modem emulator answering ERROR
for a while, a real Mosquitto stopped and restarted, and an injected clock
for backoff, escalation, rate limits and quiet hours."""
import datetime
import json
import os
import queue
import random
import signal
import time

from huaico import config
from huaico.alerts import lifecycle as alerts
from huaico.alerts.dispatch import Dispatcher
from huaico.alerts.policy import backoff
from huaico.mqtt.link import MqttLink
from huaico.rules import engine as rules
from huaico.sms import pdu as sms_pdu
from huaico.sms.modem import Modem
from huaico.sms.modem_emulator import decode_submit
from huaico.store import db
from tests.fixtures.alerting import rule as make_rule
from tests.modem_emulator import _recipient
from tests.test_alert_times import texts_to

T0 = 1_800_000_000  # 2027-01-15 08:00 UTC


def queue_alerts(adb, config, n):
    """n alert episodes (each: 2 leaders), all in the outbox."""
    device = adb.add_device("0a0b0c0d", "g1")
    adb.add_rule(make_rule(kind="above", channel="water_level", levels={"warning": 1.0}))
    engine = rules.RuleEngine(adb.database, config)
    t = T0
    for _ in range(n):
        adb.store(engine, device, [(4, 0, t, 1500, 0)], t)
        adb.store(engine, device, [(4, 0, t + 1, 500, 0)], t + 1)  # all-clear
        t += 10
    return engine, device


def pending(adb):
    return adb.rows("SELECT count(*) FROM outbox WHERE status = 'pending'")[0][0]


def test_modem_errors_then_recovers_all_delivered_in_order(alert_db, alert_config,
                                                           modem_emulator):
    queue_alerts(alert_db, alert_config, 3)
    total = alert_db.rows("SELECT count(*) FROM outbox")[0][0]
    assert total == 12
    modem_emulator.error_sends(5)
    modem = Modem(modem_emulator.path, command_timeout=2.0, send_timeout=5.0)
    try:
        dispatcher = Dispatcher(alert_db.database, alert_config, sms=modem,
                                rng=random.Random(1))
        now = T0 + 100
        passes = 0
        while pending(alert_db) and passes < 60:
            dispatcher.step(now)
            now += 30
            passes += 1
    finally:
        modem.close()
    assert pending(alert_db) == 0
    assert alert_db.rows("SELECT count(*) FROM delivery_log WHERE outcome = 'retry'")[0][0] == 5
    by_ref = {}
    for outbox_id, recipient, refs in alert_db.rows(
            "SELECT id, recipient, refs FROM outbox ORDER BY id"):
        for ref in json.loads(refs):  # one per part (UCS-2 Spanish texts take two)
            by_ref[(recipient, ref)] = outbox_id
    assert len(modem_emulator.sent) == len(by_ref)  # every part exactly once
    order = {}
    for record in modem_emulator.sent:
        recipient = _recipient(record["hex"])
        ids = order.setdefault(recipient, [])
        outbox_id = by_ref[(recipient, str(record["mr"]))]
        if not ids or ids[-1] != outbox_id:
            ids.append(outbox_id)
    assert set(order) == {"+51987654321", "+51911111111"}
    for ids in order.values():
        assert ids == sorted(ids) and len(ids) == total // 2  # alert before its all-clear, first episode first


def test_broker_down_then_back_all_alerts_published(alert_db, alert_config, mosquitto_broker):
    alert_config["mqtt"]["enabled"] = True
    watcher = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "watcher", clean=True,
                       reconnect_delay=(0.1, 0.5))
    link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gw", reconnect_delay=(0.1, 0.5))
    watcher.start()
    link.start()
    try:
        assert watcher.wait_connected(10) and link.wait_connected(10)
        watcher.subscribe("huaico/alerts/#")
        mosquitto_broker.stop()
        queue_alerts(alert_db, alert_config, 2)
        dispatcher = Dispatcher(alert_db.database, alert_config, mqtt=link,
                                rng=random.Random(2), mqtt_timeout_s=2.0)
        now = T0 + 100
        outcome = dispatcher.step(now)
        # One attempt per topic (the rest wait behind it); SMS has no backend here.
        assert outcome == {"retry": 4, "no_sms_backend": 8}
        mosquitto_broker.start()
        assert link.wait_connected(10)
        deadline = time.monotonic() + 20
        while not watcher.wait_connected(0.2) and time.monotonic() < deadline:
            pass
        watcher.subscribe("huaico/alerts/#")
        time.sleep(0.5)  # let the resubscription land before publishing
        while alert_db.rows("SELECT count(*) FROM outbox WHERE transport = 'mqtt' "
                            "AND status = 'pending'")[0][0] and time.monotonic() < deadline:
            now += 700
            dispatcher.step(now)
        got = []
        while True:
            try:
                event = watcher.events.get(timeout=2)
            except queue.Empty:
                break
            if event[0] == "message":
                got.append((event[1], event[2]))
    finally:
        link.stop()
        watcher.stop()
    mqtt_rows = alert_db.rows("SELECT recipient, body FROM outbox WHERE transport = 'mqtt' "
                              "ORDER BY id")
    assert alert_db.rows("SELECT count(*) FROM outbox WHERE transport = 'mqtt' "
                         "AND status != 'sent'") == [(0,)]
    assert len(mqtt_rows) == 8
    received = [(topic, payload.decode()) for topic, payload in got]
    for row in mqtt_rows:
        assert row in received
    cap_json = [json.loads(p) for t, p in received if t == "huaico/alerts/1"]
    assert [m["msgType"] for m in cap_json] == ["Alert", "Update"]


def test_a_publish_acked_after_its_timeout_is_not_sent_again(alert_db, alert_config,
                                                             mosquitto_broker):
    """A frozen broker acks the first publishes after the dispatcher gave up
    waiting: the retry waits for that PUBACK instead of sending a second copy."""
    alert_config["mqtt"]["enabled"] = True
    watcher = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "watcher",
                       reconnect_delay=(0.1, 0.5))
    watcher.subscribe("huaico/alerts/#")
    link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gw", reconnect_delay=(0.1, 0.5))
    watcher.start()
    link.start()
    try:
        assert watcher.wait_connected(10) and link.wait_connected(10)
        queue_alerts(alert_db, alert_config, 1)
        dispatcher = Dispatcher(alert_db.database, alert_config, mqtt=link,
                                rng=random.Random(2), mqtt_timeout_s=0.5)
        os.kill(mosquitto_broker.process.pid, signal.SIGSTOP)
        try:
            assert dispatcher.step(T0 + 100)["retry"] == 2  # one per topic, unacked
        finally:
            os.kill(mosquitto_broker.process.pid, signal.SIGCONT)
        now = T0 + 100
        deadline = time.monotonic() + 20
        while pending_mqtt(alert_db) and time.monotonic() < deadline:
            now += 700
            dispatcher.step(now)
        assert link.publish("huaico/alerts/end", b"").wait(10)
        got = []
        while not got or got[-1][0] != "huaico/alerts/end":
            event = watcher.events.get(timeout=10)
            if event[0] == "message":
                got.append((event[1], event[2].decode()))
    finally:
        link.stop()
        watcher.stop()
    mqtt_rows = alert_db.rows("SELECT recipient, body FROM outbox WHERE transport = 'mqtt' "
                              "AND status = 'sent' ORDER BY id")
    assert len(mqtt_rows) == 4
    assert sorted(got[:-1]) == sorted(mqtt_rows)


def pending_mqtt(adb):
    return adb.rows("SELECT count(*) FROM outbox WHERE transport = 'mqtt' "
                    "AND status = 'pending'")[0][0]


def test_escalation_when_not_acknowledged(alert_db, alert_config):
    engine, _ = queue_alerts(alert_db, alert_config, 0)
    device = {"id": "0a0b0c0d", "name": "g1", "site": "chosica"}
    alert_db.store(engine, device, [(4, 0, T0, 1500, 0)], T0)  # warning, not cleared
    assert alert_db.tick(engine, T0 + 14 * 60) == []
    ids = alert_db.tick(engine, T0 + 15 * 60)
    assert alert_db.rows("SELECT recipient, grp, escalation FROM outbox WHERE id IN (%s)"
                         % ",".join(map(str, ids))) == [("+5114000000", "municipal", 1)]
    assert alert_db.tick(engine, T0 + 31 * 60) == []  # nobody further up
    # An acknowledged alert is not escalated.
    alert_db.store(engine, device, [(4, 0, T0 + 40 * 60, 500, 0)], T0 + 40 * 60)
    alert_db.store(engine, device, [(4, 0, T0 + 41 * 60, 1500, 0)], T0 + 41 * 60)
    with db.transaction(alert_db.database) as conn:
        assert alerts.acknowledge(conn, 2, "cli", T0 + 42 * 60)
    assert alert_db.tick(engine, T0 + 60 * 60) == []


def test_rate_limit_never_holds_a_warning_or_an_emergency(alert_db, alert_config,
                                                          modem_emulator):
    alert_config["alerts"]["rate_limit_per_hour"] = 2
    alert_config["groups"][0]["numbers"] = ["+51987654321"]
    with db.transaction(alert_db.database) as conn:
        for level in ("watch", "watch", "warning", "watch", "emergency", "advisory", "warning"):
            alerts._insert(conn, None, None, "sms", "+51987654321", "leaders", level, "es",
                           "msg %s" % level, 0, T0)
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    try:
        dispatcher = Dispatcher(alert_db.database, alert_config, sms=modem)
        assert dispatcher.step(T0) == {"sent": 5, "rate": 2}
        assert alert_db.rows("SELECT level, status, hold FROM outbox ORDER BY id") == [
            ("watch", "sent", ""), ("watch", "sent", ""), ("warning", "sent", ""),
            ("watch", "pending", "rate"), ("emergency", "sent", ""),
            ("advisory", "pending", "rate"), ("warning", "sent", "")]
        assert dispatcher.step(T0 + 3601) == {"sent": 2}
    finally:
        modem.close()


def test_quiet_hours_off_by_default_and_when_set_hold_only_advisories(alert_db, alert_config,
                                                                     modem_emulator):
    assert config.DEFAULTS["alerts"]["quiet_hours"] == ""
    night = datetime.datetime(2027, 1, 15, 23, 30, tzinfo=datetime.timezone.utc).timestamp()
    morning = datetime.datetime(2027, 1, 16, 6, 1, tzinfo=datetime.timezone.utc).timestamp()
    alert_config["alerts"]["timezone"] = "UTC"
    alert_config["alerts"]["quiet_hours"] = ""
    alert_config["groups"][0]["numbers"] = ["+51987654321"]
    with db.transaction(alert_db.database) as conn:
        alerts._insert(conn, None, None, "sms", "+51987654321", "leaders", "advisory", "es",
                       "msg advisory", 0, night)
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    try:
        assert Dispatcher(alert_db.database, alert_config, sms=modem).step(night) == {"sent": 1}
        alert_config["groups"][0]["quiet_hours"] = "22:00-06:00"
        with db.transaction(alert_db.database) as conn:
            for level in ("advisory", "watch", "warning", "advisory"):
                alerts._insert(conn, None, None, "sms", "+51987654321", "leaders", level, "es",
                               "msg %s" % level, 0, night)
        dispatcher = Dispatcher(alert_db.database, alert_config, sms=modem)
        assert dispatcher.step(night) == {"quiet": 2, "sent": 2}
        assert dispatcher.step(morning) == {"sent": 2}
    finally:
        modem.close()
    assert alert_db.rows("SELECT id FROM outbox ORDER BY sent, id") == [(1,), (3,), (4,), (2,),
                                                                         (5,)]


def test_a_test_message_not_sent_within_minutes_expires(alert_db, alert_config,
                                                        modem_emulator):
    alert_config["groups"][0]["numbers"] = ["+51987654321"]
    with db.transaction(alert_db.database) as conn:
        alerts.queue_test(conn, alert_config, "leaders", T0)
    # The modem is absent for a while: the test waits, then expires.
    assert Dispatcher(alert_db.database, alert_config, sms=None).step(T0 + 60) == {
        "no_sms_backend": 1}
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    try:
        dispatcher = Dispatcher(alert_db.database, alert_config, sms=modem)
        assert dispatcher.step(T0 + 601) == {"expired": 1}
        assert dispatcher.step(T0 + 3600) == {}
    finally:
        modem.close()
    assert texts_to(modem_emulator, "+51987654321") == []
    assert alert_db.rows("SELECT status FROM outbox") == [("expired",)]


def test_permanent_failure_fails_and_escalates_at_once(alert_db, alert_config, modem_emulator):
    alert_config["groups"][0]["numbers"] = ["+51987654321"]
    engine, device = queue_alerts(alert_db, alert_config, 0)
    alert_db.store(engine, device, [(4, 0, T0, 1500, 0)], T0)
    modem_emulator.fail_sends(1)  # +CMS ERROR 1: unassigned number, not retryable
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    try:
        dispatcher = Dispatcher(alert_db.database, alert_config, sms=modem)
        assert dispatcher.step(T0 + 1) == {"failed": 1}
        assert alert_db.rows("SELECT recipient, status, escalation FROM outbox ORDER BY id") == [
            ("+51987654321", "failed", 0), ("+5114000000", "pending", 1)]
        assert dispatcher.step(T0 + 2) == {"sent": 1}
    finally:
        modem.close()
    assert alert_db.rows("SELECT outcome FROM delivery_log ORDER BY id") == [("failed",), ("sent",)]


def test_sms_ack_from_group_number_only(alert_db, alert_config, modem_emulator):
    engine, device = queue_alerts(alert_db, alert_config, 0)
    alert_db.store(engine, device, [(4, 0, T0, 1500, 0)], T0)
    modem_emulator.deliver("+51999000999", "ACK 1")  # a stranger
    modem_emulator.deliver("+51911111111", "si 1")   # a leader, lower case, Spanish
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    try:
        dispatcher = Dispatcher(alert_db.database, alert_config, sms=modem)
        results = dispatcher.poll_incoming(T0 + 60)
    finally:
        modem.close()
    assert sorted(results) == [("acked", 1), ("unknown_number", 1)]
    assert alert_db.rows("SELECT acked, acked_by FROM alerts") == [
        (T0 + 60, "+51911111111 (leaders)")]
    assert alert_db.rows("SELECT number, action FROM incoming ORDER BY number") == [
        ("+51911111111", "acked"), ("+51999000999", "unknown_number")]
    assert alert_db.tick(engine, T0 + 3600) == []  # acked: no escalation


def test_backoff_grows_with_jitter_within_bounds():
    rng = random.Random(3)
    delays = [backoff(n, 5, 600, rng) for n in range(1, 12)]
    assert all(2.5 <= d < 5 for d in delays[:1])
    assert all(300 <= d < 600 for d in delays[-3:])
    assert len({round(d, 6) for d in delays}) == len(delays)


def test_a_group_with_the_spanish_shift_table_gets_its_accents_in_one_part(
        alert_db, alert_config, modem_emulator):
    alert_config["sms"]["backend"] = "modem"
    leaders = dict(alert_config["groups"][0], numbers=["+51987654321"], shift_table="es")
    plain = dict(alert_config["groups"][1], numbers=["+5114000000"], language="es",
                 min_level="warning")
    alert_config["groups"] = [leaders, plain]
    engine, device = queue_alerts(alert_db, alert_config, 0)
    alert_db.store(engine, device, [(4, 0, T0, 1500, 0)], T0)
    stored = dict(alert_db.rows("SELECT recipient, body FROM outbox WHERE transport = 'sms'"))
    assert "Evacúe a zona segura." in stored["+51987654321"]  # kept for the shift table
    assert "Evacue a zona segura." in stored["+5114000000"]  # written without accents
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    try:
        assert Dispatcher(alert_db.database, alert_config, sms=modem).step(T0) == {"sent": 2}
    finally:
        modem.close()
    by_number = {_recipient(record["hex"]): record["hex"] for record in modem_emulator.sent}
    assert len(by_number) == len(modem_emulator.sent) == 2  # one part each
    shifted = bytes.fromhex(by_number["+51987654321"])
    tpdu = shifted[1 + shifted[0]:]
    # UDH: length 3, IEI 0x24 (single shift), length 1, language 2 (Spanish).
    udl_at = 4 + (tpdu[2] + 1) // 2 + 3  # after MTI, MR, address, PID, DCS, VP
    udl, udh = tpdu[udl_at], tpdu[udl_at + 1:udl_at + 5]
    assert tpdu[0] & 0x40 and udh == bytes([3, 0x24, 1, 2])
    # The 4-octet header fills 5 septets (35 bits); the text follows.
    septets = sms_pdu.unpack_septets(tpdu[udl_at + 1:], udl - 5, 35)
    assert sms_pdu.septets_to_text(septets, sms_pdu._SHIFT_CHARS[2]) == stored["+51987654321"]
    assert decode_submit(by_number["+5114000000"])["text"] == stored["+5114000000"]
