"""Rules, alerts and one dispatcher at the hub, every part real: three `huaico
run` gateways forwarding upstream (one through a bridged local Mosquitto),
two `huaico hub run` workers with a config, PostgreSQL, and a subscriber on
the central broker counting each alert message that goes out.

- A storm through three gateways, one board heard by two: a basin rule
  that only the hub can evaluate (no gateway hears three of its gauges)
  fires once, on readings counted once, and each message is published once.
- kill -9 of a worker at random moments during alerting: every alert of
  the storm is raised once, none twice, and every message goes out (a
  copy only where a kill fell between a publish and its commit).
- A gateway cut off from the hub for a simulated day catches up, and its
  day-old storm is told as late data is (issue 11): no fresh alert to
  residents, one late report per number, a timeline for operators.

HUAICO_CITY_SEED replays a chaos run.
"""
import os
import queue
import random
import time

import psycopg

from huaico.alerts import cap, lifecycle as alerts
from huaico.hub.rules_store import PgEngineStore
from huaico.mqtt.link import MqttLink
from huaico.rules import engine as rules
from tests.fixtures.city import UdpBoards

WAIT = 90.0  # upper bound on a loaded machine, not a measurement
SEED = int(os.environ.get("HUAICO_CITY_SEED", random.randrange(1 << 30)))
SITE = "test site"
OPERATOR = "+51900000001"
RESIDENT = "+51900000002"
HUB_CONFIG = """
[alerts]
timezone = "America/Lima"
late_after_s = 900
escalate_after_min = 0

[mqtt]
enabled = true
topic_prefix = "city"

[[groups]]
name = "operators"
numbers = ["%s"]
min_level = "advisory"
late_reports = "timeline"

[[groups]]
name = "residents"
numbers = ["%s"]
min_level = "watch"
late_reports = "summary"
""" % (OPERATOR, RESIDENT)


def _rule(city, rule):
    row = rule.to_row()
    row.update(created=time.time(), updated=time.time())
    with psycopg.connect(city.postgres.dsn) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)" % (
            ", ".join(row), ", ".join(["%s"] * len(row))), list(row.values()))


class Listener:
    """Every message on the central broker's city/alerts/#, in order."""

    def __init__(self, broker):
        self.link = MqttLink("127.0.0.1", broker.port, "alert-listener", clean=True)
        self.link.start()
        assert self.link.wait_connected(10)
        self.link.subscribe("city/alerts/#", qos=1)
        self.messages = []

    def take(self):
        while True:
            try:
                event = self.link.events.get_nowait()
            except queue.Empty:
                return self.messages
            if event[0] == "message":
                self.messages.append((event[1], event[2].decode("utf-8")))

    def stop(self):
        self.link.stop()


def _start(city, tmp_path, monkeypatch, names, gateways):
    """PostgreSQL, brokers, devices at SITE, gateways {id: (local?, [boards])},
    two workers with the hub config; returns ({name: Board}, {id: Gateway})."""
    config = tmp_path / "hub.toml"
    config.write_text(HUB_CONFIG)
    monkeypatch.setenv("HUAICO_HUB_CONFIG", str(config))
    city.start_postgres()
    city.start_brokers()
    with psycopg.connect(city.postgres.dsn) as conn:
        from huaico.hub import devices as hub_devices
        from tests.fixtures.gateway import Board
        boards = {name: Board(hub_devices.add(conn, name, "pico", SITE)) for name in names}
    started = {gateway_id: city.add_gateway(gateway_id, city.local if local else city.central,
                                            board_names)
               for gateway_id, (local, board_names) in gateways.items()}
    return boards, started


def _wait(predicate, timeout=WAIT, every=0.2):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(every)
    return True


def _one_by_one(feeder, levels, start, every=1):
    """A water level a frame, stamped `every` s apart from `start`, each
    frame sent when the one before it is acked, as a board's ring sends: a
    burst over UDP would reach the gateway out of order (a datagram lost
    before the gateway listened comes again after newer ones), and a
    gateway's rules would see it so too."""
    for at, level in enumerate(levels):
        feeder.send_new(readings=lambda name: [(4, 0, 0, level, 0)], time_s=start + every * at)
        deadline = time.monotonic() + WAIT
        while feeder.unacked and time.monotonic() < deadline:
            feeder.take_acks(0.02)
            feeder.resend(0.2)


def _all_sent(city):
    """No frame held back from the rules (gateway/hub/rules.py), every MQTT
    message sent."""
    return city.query("SELECT count(*) FROM engine_held") == [(0,)] and city.query(
        "SELECT count(*) FROM outbox WHERE transport = 'mqtt' AND status != 'sent'") == [(0,)]


def _frames_at_hub(city, expected):
    return set(expected) <= set(city.query("SELECT device_id, seq FROM frames"))


def test_basin_rule_over_three_gateways_fires_once_and_each_message_goes_once(
        city, tmp_path, monkeypatch):
    boards, gw = _start(city, tmp_path, monkeypatch, ["shared", "east", "bridged-1", "bridged-2"],
                        {"gw-a": (False, ["shared"]), "gw-b": (False, ["shared", "east"]),
                         "gw-c": (True, ["bridged-1", "bridged-2"])})
    # The mean 10-minute rain of the site's gauges, at least 3 known: gw-a
    # hears one of them, gw-b two, gw-c one (bridged-2 stays silent).
    _rule(city, rules.Rule("cuenca", "basin-mean", {"watch": 20.0, "warning": 40.0,
                                                           "emergency": 60.0},
                           site=SITE, channel="rain", window_s=600, params={"k": 3}))
    # The shared board's own 10-minute rain, with a level at every 5 mm
    # step: one of its frames evaluated twice (heard through gw-a and gw-b)
    # would end it a level higher.
    _rule(city, rules.Rule("compartida", "accumulation", {"advisory": 46.0, "watch": 51.0},
                           device="shared", channel="rain", window_s=600))
    for worker_id in ("hub-1", "hub-2"):
        city.add_worker(worker_id)
    listener = Listener(city.central)
    feeder = UdpBoards({"shared": (boards["shared"], [gw["gw-a"], gw["gw-b"]]),
                        "east": (boards["east"], [gw["gw-b"]]),
                        "bridged-1": (boards["bridged-1"], [gw["gw-c"]])})
    try:
        rounds = 10
        for _ in range(rounds):
            feeder.send_new(readings=lambda name: [(1, 0, 0, 50, 0)])  # 5.0 mm each
            feeder.take_acks(0.3)
        assert feeder.settle(WAIT), city.logs()
        shared = boards["shared"].kid.hex()
        # Every copy a gateway acked reaches the hub (a datagram the loaded
        # machine dropped on its way to one gateway is not resent once the
        # other acked it, so count the acks rather than assume both).
        pairs = sum(len(acked) for key, acked in feeder.acked.items() if key[0] == shared)
        assert pairs > rounds, feeder.acked  # some frames heard twice
        assert _wait(lambda: city.query("SELECT count(*) FROM heard WHERE device_id = %s",
                                        [shared])[0][0] >= pairs), city.logs()
        assert _wait(lambda: _frames_at_hub(city, feeder.acked)), city.logs()
        assert _wait(lambda: _all_sent(city)), city.logs()
        time.sleep(1.0)  # a second copy, if one were sent, would arrive by now
        seen = listener.take()
    finally:
        listener.stop()
    assert city.query("SELECT count(*) FROM frames WHERE device_id = %s", [shared]) == [
        (rounds,)]
    assert city.query("SELECT level FROM alerts WHERE rule_name = 'compartida'") == [
        ("advisory",)], city.logs()
    # Fired once: one episode, watch then warning, on readings counted once
    # (the mean of 3 gauges x 10 x 5 mm is 50; with the shared board's
    # counted twice it would be 66.7, an emergency). Index 1 is the rule's coverage alert (fewer than k
    # gauges heard, before the storm reached them), as at a gateway.
    assert city.query("SELECT rule_name, device_id, level, status FROM alerts "
                      "WHERE idx = 0 AND rule_name = 'cuenca'") == [("cuenca", "basin:test site", "warning", "active")], \
        city.logs()
    assert city.query("SELECT msg_type, e.level FROM alert_events e JOIN alerts a "
                      "ON a.id = e.alert_id WHERE a.idx = 0 AND rule_name = 'cuenca' ORDER BY e.id") == [
        ("Alert", "watch"), ("Update", "warning")]
    # Each message once: the outbox's MQTT rows, as published, exactly once,
    # all by one dispatcher.
    assert city.query("SELECT count(*) FROM outbox o JOIN alerts a ON a.id = o.alert_id "
                      "WHERE a.idx = 0 AND rule_name = 'cuenca' AND transport = 'mqtt'") == [(4,)]
    outbox = city.query("SELECT recipient, body FROM outbox WHERE transport = 'mqtt' "
                        "ORDER BY id")
    assert sorted(seen) == sorted(outbox), city.logs()
    assert city.query("SELECT count(DISTINCT sent_by) FROM outbox WHERE transport = 'mqtt'") \
        == [(1,)]
    assert city.query("SELECT outbox_id, count(*) FROM delivery_log WHERE outcome = 'sent' "
                      "GROUP BY outbox_id HAVING count(*) > 1") == []
    # The SMS rows wait for a hub with an SMS backend, not sent and not lost
    # (those a newer state of their alert replaced aside).
    assert city.query("SELECT DISTINCT status, hold FROM outbox WHERE transport = 'sms' "
                      "AND status != 'superseded'") == [
        ("pending", "")]


def _levels(phase_rounds, cycles):
    """A water level (mm) per round: low, then high, `cycles` times, then low."""
    out = []
    for _ in range(cycles):
        out += [200] * phase_rounds + [2500] * phase_rounds
    return out + [200] * phase_rounds


def test_kill_a_worker_at_random_moments_during_alerting(city, tmp_path, monkeypatch):
    rng = random.Random(SEED)
    names = ["shared", "east", "bridged-1", "bridged-2"]
    boards, gw = _start(city, tmp_path, monkeypatch, names,
                        {"gw-a": (False, ["shared"]), "gw-b": (False, ["shared", "east"]),
                         "gw-c": (True, ["bridged-1", "bridged-2"])})
    _rule(city, rules.Rule("nivel", "above", {"watch": 1.0, "warning": 2.0}, site=SITE,
                           channel="water_level", hysteresis=0.1))
    workers = [city.add_worker(worker_id) for worker_id in ("hub-1", "hub-2")]
    listener = Listener(city.central)
    feeder = UdpBoards({"shared": (boards["shared"], [gw["gw-a"], gw["gw-b"]]),
                        "east": (boards["east"], [gw["gw-b"]]),
                        "bridged-1": (boards["bridged-1"], [gw["gw-c"]]),
                        "bridged-2": (boards["bridged-2"], [gw["gw-c"]])})
    cycles = 2
    # Phases long enough that a frame held by a killed worker until its
    # restart still lands in its own phase.
    levels = _levels(15, cycles)
    kills = 0
    next_kill = time.monotonic() + rng.uniform(0.5, 2.0)
    start = int(time.time()) - len(levels)
    try:
        for at, level in enumerate(levels):
            feeder.send_new(readings=lambda name: [(4, 0, 0, level, 0)], time_s=start + at)
            feeder.take_acks(0.25)
            if time.monotonic() >= next_kill:
                victim = rng.choice(workers)
                victim.stop(crash=True)
                victim.start()
                kills += 1
                next_kill = time.monotonic() + rng.uniform(0.5, 2.0)
        assert feeder.settle(WAIT), city.logs()
        assert _wait(lambda: _frames_at_hub(city, feeder.acked)), "seed %d\n%s" % (
            SEED, city.logs())
        assert _wait(lambda: city.query(
            "SELECT count(*) FROM alerts WHERE status = 'cleared'") == [(cycles * 4,)]), \
            "seed %d: %r\n%s" % (SEED, city.query("SELECT * FROM alerts"), city.logs())
        assert _wait(lambda: _all_sent(city)), "seed %d\n%s" % (SEED, city.logs())
        time.sleep(1.0)
        seen = listener.take()
    finally:
        listener.stop()
    assert kills >= 3
    # No alert lost or doubled: each device's high phases, each raised once
    # at warning and cleared once, as a replay of the stored readings in
    # time order says.
    alerts = city.query("SELECT device_id, level, status FROM alerts ORDER BY id")
    assert sorted(alerts) == sorted((board.kid.hex(), "warning", "cleared")
                                    for board in boards.values() for _ in range(cycles)), \
        "seed %d" % SEED
    with psycopg.connect(city.postgres.dsn) as conn:
        rule = rules.Rule.from_row(dict(zip(
            [c.name for c in conn.execute("SELECT * FROM rules").description],
            conn.execute("SELECT * FROM rules").fetchone())))
        replayed = rules.replay(PgEngineStore(conn.cursor()), rule, 0)
    assert sorted((e[1], e[3]) for e in replayed) == sorted(
        (device, event) for device, _, _ in alerts for event in ("raise", "clear"))
    # Every message out at least once; a second copy only for a row whose
    # publish a kill may have cut from its commit, never a third.
    outbox = city.query("SELECT recipient, body FROM outbox WHERE transport = 'mqtt'")
    assert len(outbox) == cycles * 4 * 2 * 2
    counts = {item: seen.count(item) for item in outbox}
    assert min(counts.values()) == 1 and max(counts.values()) <= 2, "seed %d" % SEED
    assert sum(1 for n in counts.values() if n == 2) <= kills * 2 * 2
    assert len(seen) == sum(counts.values())  # nothing published that is not in the outbox


def test_gateway_offline_for_a_day_catches_up_as_late_data(city, tmp_path, monkeypatch):
    boards, gw = _start(city, tmp_path, monkeypatch, ["ravine"],
                        {"gw-c": (True, ["ravine"])})
    _rule(city, rules.Rule("nivel", "above", {"watch": 1.0, "warning": 2.0}, site=SITE,
                           channel="water_level", hysteresis=0.1))
    # Two workers: the shared subscription deals the catch-up's frames
    # alternately; the rules still take them in order (gateway/hub/rules.py:
    # without that, the flood's onset came one frame late).
    for worker_id in ("hub-1", "hub-2"):
        city.add_worker(worker_id)
    listener = Listener(city.central)
    feeder = UdpBoards({"ravine": (boards["ravine"], [gw["gw-c"]])})
    # The gateway's uplink is cut (its local broker down); its board keeps
    # reporting, acked by the gateway, a frame every 5 minutes for a day in
    # which floods came and went.
    city.local.stop()
    day_ago = int(time.time()) - 86400
    # Four floods: each onset is checked, so a frame taken out of order
    # anywhere in the catch-up shows.
    storms = [range(40, 60), range(100, 130), range(170, 180), range(220, 250)]
    levels = [2500 if any(step in storm for storm in storms) else 300 for step in range(288)]
    try:
        _one_by_one(feeder, levels, day_ago + 10, every=300)
        assert feeder.settle(WAIT), city.logs()
        assert city.query("SELECT count(*) FROM frames") == [(0,)]
        city.local.start()  # the uplink is back: the day comes in, in order
        assert _wait(lambda: _frames_at_hub(city, feeder.acked)), city.logs()
        assert _wait(lambda: _all_sent(city)), city.logs()
        time.sleep(1.0)
        seen = listener.take()
    finally:
        listener.stop()
    assert city.query("SELECT count(*) FROM frames") == [(288,)]
    # An alert a flood, for when it happened: onset and end are the
    # readings' times a day ago (send_new stamps 10 s before time_s), not
    # the upload's.
    assert city.query("SELECT onset, ended, level, status FROM alerts ORDER BY id") == [
        (day_ago + 300 * storm[0], day_ago + 300 * (storm[-1] + 1), "warning", "cleared")
        for storm in storms], city.logs()
    assert min(row[0] for row in city.query("SELECT raised FROM alerts")) > time.time() - WAIT
    # Residents: no fresh alert about an old flood, one late report saying
    # what happened and when; operators: the timeline.
    sms = city.query("SELECT recipient, kind, status FROM outbox WHERE transport = 'sms' "
                     "AND status != 'superseded' ORDER BY id")
    assert [row for row in sms if row[0] == RESIDENT] == [(RESIDENT, "late", "pending")] * 4
    assert {row[1] for row in sms if row[0] == OPERATOR} == {"timeline"}
    # MQTT consumers get the CAP events with their onset, each once.
    outbox = city.query("SELECT recipient, body FROM outbox WHERE transport = 'mqtt'")
    assert sorted(seen) == sorted(outbox)
    caps = [body for topic, body in seen if topic.endswith("/cap")]
    # Each event with its reading's time: a flood's onset, its end (in the
    # offset alerts.py gives CAP times).
    offset = alerts._utc_offset_min({"alerts": {"timezone": "America/Lima"}})
    times = [at for row in city.query("SELECT onset, ended FROM alerts ORDER BY id")
             for at in row]
    assert len(caps) == len(times)  # an Alert and an all-clear a flood
    for at in times:
        assert sum("<onset>%s</onset>" % cap.cap_datetime(at, offset) in body
                   for body in caps) == 1, (at, caps)


def test_sms_goes_once_from_the_one_worker_with_a_modem(city, tmp_path, monkeypatch,
                                                        modem_emulator):
    """hub-1 has the modem (an emulated SIM800 on a pty), hub-2 none: every
    SMS of the storm leaves hub-1's modem once, while either sends MQTT;
    an SMS reply to hub-1's modem acknowledges the alert."""
    boards, gw = _start(city, tmp_path, monkeypatch, ["ravine"], {"gw-a": (False, ["ravine"])})
    _rule(city, rules.Rule("nivel", "above", {"watch": 1.0, "warning": 2.0}, site=SITE,
                           channel="water_level", hysteresis=0.1))
    # Every event its own message (no coalescing wait for the all-clear).
    plain = tmp_path / "plain.toml"
    plain.write_text(HUB_CONFIG.replace("[alerts]\n", "[alerts]\ncoalesce_s = 0\n"))
    with_modem = tmp_path / "modem.toml"
    with_modem.write_text(plain.read_text() + '\n[sms]\nbackend = "modem"\nport = "%s"\n'
                          % modem_emulator.path)
    monkeypatch.setenv("HUAICO_HUB_CONFIG", str(with_modem))
    city.add_worker("hub-1")
    monkeypatch.setenv("HUAICO_HUB_CONFIG", str(plain))
    city.add_worker("hub-2")
    feeder = UdpBoards({"ravine": (boards["ravine"], [gw["gw-a"]])})
    _one_by_one(feeder, [500] * 3 + [1500] * 3 + [2500] * 3 + [500] * 3, int(time.time()) - 60)
    assert feeder.settle(WAIT), city.logs()
    assert _wait(lambda: _frames_at_hub(city, feeder.acked)), city.logs()
    assert _wait(lambda: city.query("SELECT count(*) FROM alerts WHERE status = 'cleared'")
                 == [(1,)]), city.logs()
    alert_id = city.query("SELECT id FROM alerts")[0][0]
    modem_emulator.deliver(OPERATOR, "OK %d" % alert_id)
    assert _wait(lambda: city.query("SELECT count(*) FROM outbox WHERE transport = 'sms' "
                                    "AND status = 'pending'") == [(0,)]), city.logs()
    assert city.query("SELECT level, status FROM alerts") == [("warning", "cleared")]
    rows = city.query("SELECT recipient, status, sent_by, copies FROM outbox "
                      "WHERE transport = 'sms' ORDER BY id")
    # watch, warning, all-clear to each of the two numbers, from hub-1, one copy each.
    assert sorted(rows) == sorted((number, "sent", "hub-1", 1) for number in (OPERATOR, RESIDENT)
                                  for _ in range(3)), (
        city.query("SELECT alert_id, msg_type, level, reading_time FROM alert_events"),
        city.logs())
    sent = sorted(record["number"] for record in modem_emulator.sent)
    assert sent == sorted(row[0] for row in rows)
    # The operator's reply reaches the modem's worker, which acknowledges
    # the hub's alert from it, as a gateway would (within its 10 s poll).
    assert _wait(lambda: city.query("SELECT number, action, alert_id FROM incoming") == [
        (OPERATOR, "acked", alert_id)], timeout=30), city.logs()
    assert city.query("SELECT acked_by FROM alerts") == [(OPERATOR + " (operators)",)]


def test_a_minimum_duration_fires_on_time_after_the_worker_that_saw_it_is_killed(
        city, tmp_path, monkeypatch):
    """hub-1 alone evaluates the frame that starts a minimum-duration clock;
    hub-2 starts after it and never sees that frame; hub-1 is killed (-9)
    before the clock runs out. hub-2's tick fires the alert on time, once:
    neither hub-1 restarted nor a frame that follows fires it again."""
    boards, gw = _start(city, tmp_path, monkeypatch, ["ravine"], {"gw-a": (False, ["ravine"])})
    hold_s = 8
    _rule(city, rules.Rule("crecida", "above", {"watch": 1.0}, site=SITE,
                           channel="water_level", min_duration_s=hold_s))
    ravine = boards["ravine"]
    # Frame 1 comes next: in order, so not held back as a device's first frames are.
    city.query("INSERT INTO engine_seq (device_id, seq) VALUES (%s, 0) RETURNING seq",
               [ravine.kid.hex()])
    first = city.add_worker("hub-1")
    _wait(lambda: "event=hub_connected" in first.log())
    listener = Listener(city.central)
    feeder = UdpBoards({"ravine": (ravine, [gw["gw-a"]])})
    try:
        onset = int(time.time())
        _one_by_one(feeder, [1500], onset + 10)  # send_new stamps 10 s before time_s
        assert _wait(lambda: city.query("SELECT since FROM alert_state") != [], hold_s / 2), \
            city.logs()
        second = city.add_worker("hub-2")
        assert _wait(lambda: "event=hub_connected" in second.log(), hold_s / 2), second.log()
        first.stop(crash=True)
        due = onset + hold_s
        assert _wait(lambda: city.query("SELECT count(*) FROM alerts") == [(1,)], WAIT, 0.05), \
            city.logs()
        raised = city.query("SELECT raised FROM alerts")[0][0]
        # On time: at hub-2's first tick after the clock ran out (TICK_S),
        # with room for a loaded machine.
        assert due <= raised <= due + 3.0, (raised - due, city.logs())
        first.start()
        _one_by_one(feeder, [1600], onset + 20)
        assert _wait(lambda: _all_sent(city)), city.logs()
        time.sleep(2.0)  # both workers tick at least once more
        seen = listener.take()
    finally:
        listener.stop()
    assert city.query("SELECT level, status FROM alerts") == [("watch", "active")]
    assert city.query("SELECT msg_type FROM alert_events") == [("Alert",)]
    assert [topic for topic, _ in seen].count("city/alerts/1") == 1, seen
