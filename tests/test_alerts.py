"""Alerts raised by the engine on a real SQLite file: restart semantics, CAP
linking, minimum duration, silent devices, quality flags, templates, replay."""
import json

from huaico.rules import engine as rules
from tests.fixtures.alerting import rule as make_rule

RAIN = 1
T0 = 1_800_000_000


def rain(adb, engine, device, t, tenths):
    return adb.store(engine, device, [(RAIN, 0, t, tenths, 0)], t)


def sms(adb):
    return adb.rows("SELECT recipient, level, body, alert_id FROM outbox "
                    "WHERE transport = 'sms' ORDER BY id")


def test_restart_neither_resends_nor_forgets(alert_db, alert_config):
    device = alert_db.add_device("0a0b0c0d", "g1")
    alert_db.add_rule(make_rule(kind="accumulation", channel="rain", window_s=3600,
                                levels={"watch": 2.0, "warning": 4.0}, hysteresis=0.5))
    engine = rules.RuleEngine(alert_db.database, alert_config)
    assert rain(alert_db, engine, device, T0, 25)  # 2.5 mm: watch, two leaders
    assert [r[1] for r in sms(alert_db)] == ["watch", "watch"]

    engine = rules.RuleEngine(alert_db.database, alert_config)  # restart
    assert rain(alert_db, engine, device, T0 + 60, 5) == []  # 3.0 mm: still watch, nothing sent
    assert len(sms(alert_db)) == 2

    engine = rules.RuleEngine(alert_db.database, alert_config)  # restart again
    ids = rain(alert_db, engine, device, T0 + 3700, 0)  # window empties: all-clear
    assert ids
    clears = sms(alert_db)[2:]
    assert len(clears) == 2 and clears[0][2].startswith("FIN chosica:")
    assert alert_db.rows("SELECT status FROM alerts") == [("cleared",)]
    events = alert_db.rows("SELECT msg_type, level, identifier, refs FROM alert_events ORDER BY id")
    assert [e[:2] for e in events] == [("Alert", "watch"), ("Clear", "clear")]
    assert json.loads(events[1][3])[0][0] == events[0][2]


def test_level_change_is_an_update_referencing_the_alert(alert_db, alert_config):
    alert_config["mqtt"]["enabled"] = True
    device = alert_db.add_device("0a0b0c0d", "g1")
    alert_db.add_rule(make_rule(kind="above", channel="water_level",
                                levels={"watch": 1.0, "emergency": 2.0}))
    engine = rules.RuleEngine(alert_db.database, alert_config)
    alert_db.store(engine, device, [(4, 0, T0, 1200, 0)], T0)
    alert_db.store(engine, device, [(4, 0, T0 + 60, 2500, 0)], T0 + 60)
    rows = sms(alert_db)
    # The emergency also reaches municipal (min_level emergency), in English.
    assert [(r[0], r[1]) for r in rows] == [
        ("+51987654321", "watch"), ("+51911111111", "watch"),
        ("+51987654321", "emergency"), ("+51911111111", "emergency"),
        ("+5114000000", "emergency")]
    assert rows[-1][2].startswith("EMERGENCY chosica: river level 2.5 m at ")
    cap_json = [json.loads(body) for (body,) in alert_db.rows(
        "SELECT body FROM outbox WHERE transport = 'mqtt' AND recipient = 'huaico/alerts/1'")]
    assert [m["msgType"] for m in cap_json] == ["Alert", "Update"]
    assert cap_json[1]["references"] == ["huaico,%s,%s" % (cap_json[0]["identifier"],
                                                           cap_json[0]["sent"])]


def test_minimum_duration_by_readings_and_by_tick(alert_db, alert_config):
    device = alert_db.add_device("0a0b0c0d", "g1")
    alert_db.add_rule(make_rule(kind="above", channel="water_level", levels={"warning": 1.0},
                                min_duration_s=300))
    engine = rules.RuleEngine(alert_db.database, alert_config)
    assert alert_db.store(engine, device, [(4, 0, T0, 1500, 0)], T0) == []
    assert alert_db.store(engine, device, [(4, 0, T0 + 200, 1500, 0)], T0 + 200) == []
    assert alert_db.store(engine, device, [(4, 0, T0 + 250, 900, 0)], T0 + 250) == []  # dipped
    assert alert_db.store(engine, device, [(4, 0, T0 + 260, 1500, 0)], T0 + 260) == []
    engine = rules.RuleEngine(alert_db.database, alert_config)  # the clock survives a restart
    assert alert_db.store(engine, device, [(4, 0, T0 + 400, 1500, 0)], T0 + 400) == []
    assert alert_db.tick(engine, T0 + 559) == []
    assert alert_db.tick(engine, T0 + 561)  # held 300 s since T0+260, no new reading needed
    assert [r[1] for r in sms(alert_db)] == ["warning", "warning"]


def test_a_minimum_duration_runs_out_on_tick_after_a_restart(alert_db, alert_config):
    """The clock is in alert_state: a restarted gateway (or a hub worker that
    did not evaluate the readings) fires it at its tick, without a new reading."""
    device = alert_db.add_device("0a0b0c0d", "g1")
    alert_db.add_rule(make_rule(kind="above", channel="water_level", levels={"warning": 1.0},
                                min_duration_s=300))
    engine = rules.RuleEngine(alert_db.database, alert_config)
    assert alert_db.store(engine, device, [(4, 0, T0, 1500, 0)], T0) == []
    engine = rules.RuleEngine(alert_db.database, alert_config)
    assert alert_db.tick(engine, T0 + 299) == []
    assert alert_db.tick(engine, T0 + 301)
    assert alert_db.tick(rules.RuleEngine(alert_db.database, alert_config), T0 + 302) == []
    assert [r[1] for r in sms(alert_db)] == ["warning", "warning"]


def test_silent_device_raises_on_tick_and_clears_on_frame(alert_db, alert_config):
    device = alert_db.add_device("0a0b0c0d", "g1")
    alert_db.add_rule(make_rule(kind="silent", site="chosica",
                                levels=rules.parse_levels("watch=30m,warning=2h", "silent")))
    engine = rules.RuleEngine(alert_db.database, alert_config)
    alert_db.store(engine, device, [(RAIN, 0, T0, 0, 0)], T0)
    assert alert_db.tick(engine, T0 + 1700) == []
    assert alert_db.tick(engine, T0 + 1900)
    assert "estacion sin señal hace 31 min" in sms(alert_db)[0][2]
    assert "Revise la estacion" in sms(alert_db)[0][2]
    alert_db.store(engine, device, [(RAIN, 0, T0 + 2000, 0, 0)], T0 + 2000)
    assert sms(alert_db)[-1][2].startswith("FIN chosica:")


def test_quality_flag_raises_an_equipment_alert(alert_db, alert_config):
    device = alert_db.add_device("0a0b0c0d", "g1")
    alert_db.add_rule(make_rule(kind="quality", channel="water_level",
                                levels=rules.parse_levels("watch", "quality")))
    alert_db.add_rule(make_rule(name="lvl", kind="above", channel="water_level",
                                levels={"watch": 1.0}))
    engine = rules.RuleEngine(alert_db.database, alert_config)
    # A stuck sensor's value never reaches a threshold rule.
    alert_db.store(engine, device, [(4, 0, T0, 9000, 3)], T0)
    assert alert_db.rows("SELECT rule_name, kind FROM alerts") == [("r", "quality")]
    alert_db.store(engine, device, [(4, 0, T0 + 60, 500, 0)], T0 + 60)
    assert alert_db.rows("SELECT status FROM alerts") == [("cleared",)]


def test_replay_reports_without_writing(alert_db, alert_config):
    device = alert_db.add_device("0a0b0c0d", "g1")
    rule = alert_db.add_rule(make_rule(kind="accumulation", channel="rain", window_s=600,
                                       levels={"watch": 2.0}))
    for i, tenths in enumerate([5, 10, 10, 0, 0, 0, 0, 0, 0, 0]):
        alert_db.store(None, device, [(RAIN, 0, T0 + i * 120, tenths, 0)], T0)
    events = rules.replay(alert_db.database, rule, T0)
    assert [(e[0] - T0, e[3], e[4], e[5]) for e in events] == [
        (240, "raise", "watch", 2.5), (720, "clear", "watch", 1.0)]
    assert alert_db.rows("SELECT count(*) FROM alerts") == [(0,)]
