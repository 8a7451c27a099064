"""Late data must not flood phones (issue 11, fault 8): alerts carry the
reading's time; transitions of one alert in one batch or a short window make
one message with the latest state; a backlog older than late_after_s gives
operators the timeline and each resident at most one message saying what
happened and when (or nothing); the first message and a rise are never
held. Frames go through the rule engine the way the writer does it
(on_frames in one transaction); delivery through the modem emulator on a pty."""
import json

from huaico.alerts.dispatch import Dispatcher
from huaico.rules import engine as rules
from huaico.sms.modem import Modem
from huaico.sms.modem_emulator import decode_submit
from tests.fixtures.alerting import rule as make_rule

T0 = 1_800_000_000  # 2027-01-15 08:00 UTC
LEADERS = ("+51987654321", "+51911111111")
OPERATOR = "+5114000000"
# A storm: watch, warning, emergency, warning, watch, clear, watch, clear.
STORM_MM = (1200, 2100, 3100, 2200, 1300, 400, 1100, 300)


def setup(adb, config):
    config["alerts"].update(coalesce_s=60, late_after_s=900)
    config["mqtt"]["enabled"] = True
    config["groups"][1].update(name="operators", min_level="watch", late_reports="timeline",
                               numbers=[OPERATOR])
    config["groups"][0]["escalate_to"] = ""
    config["groups"].append({"name": "vecinos", "language": "es", "numbers": ["+51922222222"],
                             "min_level": "watch", "late_reports": "none"})
    device = adb.add_device("0a0b0c0d", "g1")
    adb.add_rule(make_rule(kind="above", channel="water_level",
                           levels={"watch": 1.0, "warning": 2.0, "emergency": 3.0}))
    return rules.RuleEngine(adb.database, config), device


def frames(start, values, step=300):
    return [[(4, 0, start + n * step, mm, 0)] for n, mm in enumerate(values)]


def live_sms(adb):
    """SMS rows not superseded: (recipient, kind, body, next_attempt)."""
    return adb.rows("SELECT recipient, kind, body, next_attempt FROM outbox "
                    "WHERE transport = 'sms' AND status != 'superseded' ORDER BY id")


def deliver(adb, config, emulator, now):
    """One dispatcher pass over SMS ({outcome: count}); the MQTT rows wait,
    as no broker is connected here."""
    modem = Modem(emulator.path, command_timeout=2.0)
    try:
        done = Dispatcher(adb.database, config, sms=modem).step(now)
    finally:
        modem.close()
    done.pop("no_mqtt", None)
    return done


def texts_to(emulator, number):
    parts = [decode_submit(record["hex"]) for record in emulator.sent]
    return [p["text"] for p in parts if p["number"] == number]


def test_a_storm_uploaded_two_hours_late_makes_one_message_each(alert_db, alert_config,
                                                                 modem_emulator):
    engine, device = setup(alert_db, alert_config)
    start = T0 - 7200  # 06:00; the storm lasted 40 min
    alert_db.store_frames(engine, device, frames(start, STORM_MM), T0)
    assert alert_db.rows("SELECT count(*) FROM alert_events") == [(8,)]
    # The alert knows when things happened, and when it learnt of them.
    assert alert_db.rows("SELECT onset, peak_level, peak_time, ended, raised FROM alerts "
                         "ORDER BY id")[0] == (start, "emergency", start + 600, start + 1500, T0)
    assert [t for (t,) in alert_db.rows(
        "SELECT reading_time FROM alert_events ORDER BY id")] == [
        start + n * 300 for n in range(8)]
    rows = live_sms(alert_db)
    by_number = {}
    for recipient, kind, body, due in rows:
        by_number.setdefault(recipient, []).append((kind, body, due))
    assert sorted(by_number) == sorted(LEADERS + (OPERATOR,)), "vecinos opted out"
    for number in LEADERS:
        # Two episodes (the gauge dipped and rose again): one message each.
        assert [kind for kind, _, _ in by_number[number]] == ["late", "late"]
        first = by_number[number][0][1]
        # The peak, its time and when it ended: what happened, and that it is over.
        assert first == "EMERGENCIA chosica: nivel del rio 3.1 m a las 06:10. Termino a las 06:25."
    timeline = [body for kind, body, _ in by_number[OPERATOR]]
    assert timeline[0] == ("huaico alert 1 chosica, late data: 06:00 WATCH 1.2 m; "
                           "06:05 WARNING 2.1 m; 06:10 EMERGENCY 3.1 m; 06:15 WARNING 2.2 m; "
                           "06:20 WATCH 1.3 m; 06:25 END 0.4 m")  # operators read English
    # Late news waits for the rest of the backlog, then goes once.
    assert all(due == T0 + 60 for *_, due in rows)
    assert deliver(alert_db, alert_config, modem_emulator, T0 + 1) == {}
    deliver(alert_db, alert_config, modem_emulator, T0 + 61)
    for number in LEADERS:
        assert len(texts_to(modem_emulator, number)) == 2  # 2 messages of one part each
    # Machines get every event, each with its reading's time (CAP onset).
    onsets = [json.loads(body)["info"].get("onset") for (body,) in alert_db.rows(
        "SELECT body FROM outbox WHERE recipient = 'huaico/alerts/1' ORDER BY id")]
    assert len(onsets) == 6 and onsets[0] == "2027-01-15T06:00:00-00:00"  # CAP writes UTC so


def test_a_backlog_in_many_batches_still_makes_one_message(alert_db, alert_config):
    engine, device = setup(alert_db, alert_config)
    start = T0 - 7200
    batches = frames(start, STORM_MM[:6])
    for n, batch in enumerate(batches):
        alert_db.store_frames(engine, device, [batch], T0 + n)
    leaders = [row for row in live_sms(alert_db) if row[0] in LEADERS]
    assert [(r[0], r[1]) for r in leaders] == [(LEADERS[0], "late"), (LEADERS[1], "late")]
    assert alert_db.rows("SELECT count(*) FROM outbox WHERE status = 'superseded'")[0][0] > 0


def test_a_ring_flushed_mid_storm_tells_the_state_now_at_once(alert_db, alert_config):
    engine, device = setup(alert_db, alert_config)
    # Thirty minutes cut off, then the ring: old frames and the current one.
    old = frames(T0 - 1800, (1200, 2100, 3100), step=120)
    now_frame = [[(4, 0, T0 - 5, 2200, 0)]]
    alert_db.store_frames(engine, device, old + now_frame, T0)
    leaders = [row for row in live_sms(alert_db) if row[0] in LEADERS]
    assert [(r[0], r[1], r[3]) for r in leaders] == [
        (LEADERS[0], "alert", T0), (LEADERS[1], "alert", T0)]
    assert leaders[0][2].startswith("ALERTA chosica: nivel del rio 2.2 m a las ")


def test_live_transitions_coalesce_but_never_hold_a_first_message_or_a_rise(
        alert_db, alert_config, modem_emulator):
    engine, device = setup(alert_db, alert_config)
    alert_config["groups"] = alert_config["groups"][:1]
    alert_config["groups"][0]["numbers"] = [LEADERS[0]]
    # Watch and warning in one batch: one message, the alert at warning, now.
    alert_db.store_frames(engine, device, frames(T0, (1200, 2100), step=10), T0)
    assert [(r[1], r[3]) for r in live_sms(alert_db)] == [("alert", T0)]
    assert deliver(alert_db, alert_config, modem_emulator, T0) == {"sent": 1}
    # A rise goes at once; falls wait coalesce_s after the last sent, and
    # the newer state replaces them meanwhile.
    alert_db.store(engine, device, [(4, 0, T0 + 30, 3100, 0)], T0 + 30)
    assert deliver(alert_db, alert_config, modem_emulator, T0 + 30) == {"sent": 1}
    alert_db.store(engine, device, [(4, 0, T0 + 40, 2100, 0)], T0 + 40)
    alert_db.store(engine, device, [(4, 0, T0 + 50, 300, 0)], T0 + 50)
    assert deliver(alert_db, alert_config, modem_emulator, T0 + 51) == {}
    assert deliver(alert_db, alert_config, modem_emulator, T0 + 91) == {"sent": 1}
    sent = texts_to(modem_emulator, LEADERS[0])
    # One part each: the phone receives exactly the three messages.
    assert [text.split(" ")[0] for text in sent] == ["ALERTA", "EMERGENCIA", "FIN"]
    assert alert_db.rows("SELECT kind FROM outbox WHERE transport = 'sms' AND status = 'sent' "
                         "ORDER BY id") == [("alert",), ("update",), ("clear",)]
