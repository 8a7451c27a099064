"""Power roles (issue 12 point 2) and battery-aware degradation (point 4) on the simulated board.

- the site config's `power` section and battery.steps: one clear line per mistake;
- parts on switched rails are powered only for their reads, and read right after the
  datasheet's start-up time; a rain gauge whose pull-up shares a rail keeps every tip
  through reads of the other parts and through resets (the rail switching at each boot);
- a LoRa module on a group sleeps between bursts and still gets every ack;
- a Wi-Fi board leaves the network after each report and gets the acks the gateway sent
  meanwhile at its next join (real Mosquitto, the gateway peer of test_firmware_mqtt.py);
- a falling battery stretches sampling and retries in steps, never drops a tip, and a local
  rule still reports below battery.low_v.
The driver-level checks are tests/mp_drivers/check_power*.py (tests/test_drivers_sim.py).
"""
import pytest

from huaico.devices.flash import validate_site
from tests.fixtures.firmware import run_sim, site_config
from tests.test_firmware_mqtt import SimBoard, rain_site
from tests.test_firmware_wifi import SlowPeer, finish

_LEVEL_M = 1.25


def _errors(site):
    """The firmware's own checks, as `huaico flash` and the station commands run them."""
    return validate_site(site)


def _powered_site(**changes):
    """Rain gauge, ultrasonic level and an MPU6050 on one rail (the gauge holds it), a 4-20 mA
    loop on a rail of its own, switched for each read."""
    site = site_config("pico", **changes)
    site["power"] = {"sensors": {"pin": 12, "on": 1, "settle_ms": 120},  # MPU6050: 100 ms
                     "probe": {"pin": 13, "on": 1, "settle_ms": 20}}
    site["sensors"][0]["power"] = "sensors"
    site["sensors"] += [
        {"type": "ultrasonic_level", "name": "level0", "interval_s": 60, "mount_height_m": 3.0,
         "power": "sensors"},
        {"type": "pressure_level_ma", "name": "loop", "index": 1, "interval_s": 60, "range_m": 5.0,
         "power": "probe"},
    ]
    return site


# The config.

def test_a_powered_site_is_accepted():
    assert _errors(_powered_site()) == []


@pytest.mark.parametrize("change, words", [
    (lambda s: s["power"]["probe"].update(pin=6), "power.probe.pin: GPIO 6 is one of pico's"),
    (lambda s: s["power"]["probe"].update(pin=12), "power.probe.pin: GPIO 12 switches another group"),
    (lambda s: s["power"]["probe"].update(settle_ms=9000), "power.probe.settle_ms"),
    (lambda s: s["power"]["probe"].update(on=2), "power.probe.on"),
    (lambda s: s["power"]["probe"].update(volts=5), "power.probe.volts: unknown key"),
    (lambda s: s["sensors"][2].update(power="level"), "sensors[2].power: 'level' is not a group"),
    (lambda s: s["transport"].update(power="radio"), "transport.power: 'radio' is not a group"),
    (lambda s: s["battery"].update(steps=[{"below_v": 3.6, "slower": 40}]), "battery.steps[0].slower"),
    (lambda s: s["battery"].update(steps=[{"below_v": "low"}]), "battery.steps[0].below_v"),
    (lambda s: s["battery"].update(steps=[{"below_v": 3.6, "burst": 1}]), "battery.steps[0].burst: unknown key"),
])
def test_each_power_mistake_is_one_line(change, words):
    site = _powered_site()
    change(site)
    errors = _errors(site)
    assert len(errors) == 1 and words in errors[0], errors


def test_a_wifi_radio_has_no_power_group():
    site = rain_site(site_config("pico_w", sleep={"mode": "light", "max_ms": 500}), "127.0.0.1", 1883)
    site["transport"].update(io_timeout_ms=250, burst=4)
    site["power"] = {"radio": {"pin": 14}}
    site["transport"]["power"] = "radio"
    errors = _errors(site)
    assert len(errors) == 1 and "a Wi-Fi radio has no power group" in errors[0], errors


def test_settle_times_count_in_the_watchdogs_budget():
    site = _powered_site(watchdog={"timeout_ms": 8000})
    site["power"]["probe"]["settle_ms"] = 3000
    assert _errors(site) == []  # network 2300 + sensors 3820 + margin 1000 fit 8000 ms
    site["power"]["probe"]["settle_ms"] = 4000
    errors = _errors(site)
    assert len(errors) == 1 and "sensors 4820" in errors[0] and "watchdog resets after 8000 ms" in errors[0], errors


# Sensors on switched rails, on the simulated board.

def _rails(events, pin):
    return [e for e in events if e["ev"] == "rail" and e["pin"] == pin]


def test_switched_parts_read_right_and_rest_and_the_gauge_keeps_every_tip(tmp_path, uart_peer, compiled_runner):
    """Ten minutes, rain every 3 s for six of them, a watchdog reset in the middle: the loop's rail
    is on only for each read (its settle time spent, on the virtual clock); the rail of the gauge's
    pull-up comes up once per boot, stays up through the other parts' reads, and no tip is lost or
    counted twice (the gateway peer gets exactly the scenario's)."""
    peer = uart_peer
    scenario = {"duration_s": 600, "world": {"battery_v": 4.0, "water_level_m": _LEVEL_M},
                "rain": [{"from_s": 10, "to_s": 400, "every_s": 3.0}],
                "events": [{"at_s": 200.3, "reset": "watchdog"}]}
    code, events, output = run_sim(tmp_path, _powered_site(), scenario, uart=peer.spec, runner=compiled_runner)
    assert code == 0, output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    assert end["resets"] == 1 and end["tips"] == 130, end
    assert peer.store.tips() == 130 and not peer.store.reused, (peer.store.tips(), peer.store.reused)
    level = [row for f in peer.store.frames.values() for row in f.rows if row[0] == 4]
    assert len(level) >= 18 and all(row[4] == 0 and abs(row[3] - 1250) <= 25 for row in level), level
    probe = _rails(events, 13)
    ons = [e["vt"] for e in probe if e["on"]]
    offs = [e["vt"] for e in probe if not e["on"]]
    assert len(ons) >= 9 and len(offs) == len(ons), probe
    spans = [off - on for on, off in zip(ons, offs)]
    # The 20 ms settle, then the read (event times are printed to the ms: a span may read 1 ms short).
    assert all(0.019 <= span < 0.5 for span in spans), spans
    gauge = _rails(events, 12)
    assert [e["on"] for e in gauge] == [True, True], gauge  # once per boot, never off while running


def test_a_lora_module_sleeps_between_bursts_and_gets_its_acks(tmp_path, uart_peer, compiled_runner):
    """The module's group is up only from a report's first frame to its last ack: every frame the
    board made before the end is acked, nothing was written to the module while it was off, and
    it is off most of the time."""
    site = site_config("pico", report_s=120, thresholds=[])
    site["power"] = {"radio": {"pin": 14, "settle_ms": 5}}
    site["transport"] = {"type": "uart", "baud": 9600, "mtu": 191, "ack_timeout_ms": 3600, "burst": 4,
                         "retry_s": 10, "retry_max_s": 60, "power": "radio",
                         "radio": {"type": "lora", "sf": 7, "region": "EU868"}}
    scenario = {"duration_s": 1200, "world": {"battery_v": 4.0},
                "rain": [{"from_s": 0, "to_s": 1200, "every_s": 20.0}]}
    code, events, output = run_sim(tmp_path, site, scenario, speed=40, uart=uart_peer.spec,
                                   runner=compiled_runner, timeout=240)
    assert code == 0, output[-3000:]
    assert not [e for e in events if e["ev"] in ("lora_unpowered", "duty_exceeded")], output[-3000:]
    made = {e["seq"] for e in events if e["ev"] == "frame"}
    acked = {e["seq"] for e in events if e["ev"] == "ack"}
    last_report = max(e["ms"] for e in events if e["ev"] == "sent")
    late = {e["seq"] for e in events if e["ev"] == "frame" and e["ms"] > last_report}
    assert made - acked <= late, sorted(made - acked - late)
    rail = _rails(events, 14)
    ons = [e["vt"] for e in rail if e["on"]]
    offs = [e["vt"] for e in rail if not e["on"]]
    assert len(ons) >= 8, rail
    on_s = sum(off - on for on, off in zip(ons, offs))
    assert on_s < 0.1 * 1200, "the module was on %.0f s of 1200" % on_s
    print("LoRa module on %.1f s of 1200 (%d bursts), %d frames acked" % (on_s, len(ons), len(acked)))


# A Wi-Fi board that leaves between reports.

class LatePeer(SlowPeer):
    """Acks a second after the frame: always after the board, waiting 0.3 s, has left."""

    delay = 1.0


def test_a_wifi_board_leaves_between_reports_and_gets_late_acks_at_the_next_join(tmp_path, mosquitto_broker):
    peer = LatePeer(mosquitto_broker)
    site = rain_site(site_config("pico_w", thresholds=[], sleep={"mode": "light", "max_ms": 2000}),
                     mosquitto_broker.host, mosquitto_broker.port)
    site["report_s"] = 120
    site["transport"].update(io_timeout_ms=250, burst=4, ack_timeout_ms=300, retry_s=120, retry_max_s=240)
    scenario = {"duration_s": 1200, "world": {"battery_v": 4.0},
                "rain": [{"from_s": 0, "to_s": 900, "every_s": 10.0}]}
    board = SimBoard(tmp_path, site, scenario, mosquitto_broker)
    finish(board, peer)
    # Garbage left between the reports is no sickness (app.py health() collects before judging).
    assert not board.of("unhealthy"), board.of("unhealthy")[:3]
    offs = board.of("radio_off")
    assert len(offs) >= 5, board.tail()
    first_sent = {}
    for e in board.of("sent"):
        first_sent.setdefault(e["seq"], e["ms"])
    acks = board.of("ack")
    assert acks, board.tail()
    for ack in acks:
        left = [off["ms"] for off in offs if first_sent[ack["seq"]] < off["ms"] < ack["ms"]]
        assert left, "seq %d was acked before the board left: %r" % (ack["seq"], ack)
    # Every frame is acked but those first sent at the last join (their acks wait at the broker).
    # The last join: the sends after the last leave before the final send (a join may send more
    # than one burst: the acks that came resend the rest at once, firmware/app.py service()).
    made = {e["seq"] for e in board.of("frame")}
    last_sent_ms = max(e["ms"] for e in board.of("sent"))
    last_join_ms = max(off["ms"] for off in offs if off["ms"] < last_sent_ms)
    waiting = made - {a["seq"] for a in acks}
    assert all(first_sent.get(seq, last_sent_ms) > last_join_ms for seq in waiting), (sorted(waiting),
                                                                                        board.tail(120))
    assert {a["seq"] for a in acks} <= set(peer.store.frames)


# Battery-aware degradation.

def _battery_site():
    site = site_config("pico", report_s=120, ring={"frames": 256})
    site["sensors"] = [
        {"type": "rain_gauge", "name": "rain0", "interval_s": 60, "mm_per_tip": 0.2, "debounce_ms": 20},
        {"type": "battery", "name": "batt", "interval_s": 60, "ratio": 2.0},
        {"type": "pressure_level_ma", "name": "loop", "interval_s": 60, "range_m": 5.0},
    ]
    site["thresholds"] = [{"sensor": "rain0", "channel": "rain", "above": 2.0, "report_s": 15}]
    site["battery"] = {"low_v": 3.5, "steps": [{"below_v": 3.8, "slower": 2}, {"below_v": 3.6, "slower": 4}]}
    return site


def test_a_falling_battery_slows_sampling_in_steps_and_keeps_tips_and_rules(tmp_path, uart_peer, compiled_runner):
    """The battery falls from 4.0 to 3.3 V over 40 minutes; showers at 10 minutes and, below
    battery.low_v (3.5 V from 29 minutes, read by the board at 30.5: at the 240 s step it
    samples the battery every 4 minutes), at 33 minutes, after a report fell due at 33.3. Sampling stretches 2x then 4x (the
    gauge's frames keep their pace), every tip is committed to a frame, and the late shower's
    rule still gets its frames to the gateway although the battery is below low_v."""
    peer = uart_peer
    scenario = {"duration_s": 2400, "world": {"battery_v": 4.0, "water_level_m": _LEVEL_M},
                "ramps": [{"key": "battery_v", "from_s": 0, "to_s": 2400, "start": 4.0, "end": 3.3,
                           "step_s": 30}],
                "rain": [{"from_s": 600, "to_s": 660, "every_s": 2.0},
                         {"from_s": 2000, "to_s": 2120, "every_s": 1.5}]}
    code, events, output = run_sim(tmp_path, _battery_site(), scenario, uart=peer.spec, runner=compiled_runner)
    assert code == 0, output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    assert not [e for e in events if e["ev"] == "unhealthy"], output[-3000:]
    steps = [(e["slower"], e["mv"]) for e in events if e["ev"] == "battery_step"]
    assert [s for s, mv in steps] == [2, 4], steps
    assert 3700 <= steps[0][1] < 3800 and 3500 <= steps[1][1] < 3600, steps
    # Every tip in a committed frame, none twice.
    assert sum(e["tips"] for e in events if e["ev"] == "frame") == end["tips"] == 30 + 80, end
    # When the battery and the loop were sampled (board ms, by each frame's seq), by step: 60 s, then
    # 120 s, then 240 s apart; the gauge's frames every 60 s throughout (outside the showers).
    made_ms = {e["seq"]: e["ms"] for e in events if e["ev"] == "frame"}
    step_at = [(e["ms"], e["slower"]) for e in events if e["ev"] == "battery_step"]
    alarms = [e["ms"] for e in events if e["ev"] in ("alarm", "clear")]
    storms = [(590000, 800000), (1990000, 2250000)]

    def step(ms):
        """The step a round at `ms` sampled in: one taken in an earlier round (a step taken by a
        round's battery reading applies from the next round)."""
        slower = 1
        for at, s in step_at:
            if at < ms - 1000:
                slower = s
        return slower

    def gaps(code):
        times = sorted(made_ms[seq] for seq, f in peer.store.frames.items() if any(r[0] == code for r in f.rows))
        out = {1: [], 2: [], 4: []}
        for a, b in zip(times, times[1:]):
            if step(a) == step(b) and not any(lo <= a <= hi or lo <= b <= hi for lo, hi in storms):
                out[step(b)].append(b - a)
        return out
    for code in (19, 4):  # battery, water level (the loop)
        for slower, g in gaps(code).items():
            assert g and all(abs(x - 60000 * slower) < 3000 for x in g), (code, slower, g)
    rain = [g for slower_gaps in gaps(1).values() for g in slower_gaps]
    assert rain and all(abs(x - 60000) < 3000 for x in rain), rain
    # Below low_v (the board's reading at 1830 s) the radio is spared: the report due at 1995 s
    # does not go, but while the shower's rule holds it reports.
    assert len(alarms) >= 4, alarms  # each shower's rule fired and cleared
    sent_low = [e["ms"] for e in events if e["ev"] == "sent" and e["ms"] > 1840000]
    assert sent_low and all(2000000 <= ms <= alarms[3] for ms in sent_low), (sent_low, alarms)
    tips = sum(row[3] for f in peer.store.frames.values() for row in f.rows if row[0] == 2)
    assert tips >= 30 + 70, tips  # the late shower's tips reached the gateway while its rule held


# The station commands (huaico device sensor add) take the new keys through the same checks.

def test_station_commands_take_a_sensors_power_group(gateway_home):
    import json

    from click.testing import CliRunner

    from huaico.cli.main import main

    def invoke(*args):
        return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)

    gateway_home.add("rio-01")
    path = gateway_home.path / "sites" / "rio-01.json"
    invoke("device", "sensor", "add", "rio-01", "rain0", "--type", "rain_gauge", "--every", "1m")
    site = json.loads(path.read_text())
    site["power"] = {"sensors": {"pin": 14, "settle_ms": 20}}
    path.write_text(json.dumps(site))
    done = invoke("device", "sensor", "add", "rio-01", "loop", "--type", "pressure_level_ma",
                  "--set", "range_m=5", "--set", "power=sensors")
    assert done.exit_code == 0, done.stdout + done.stderr
    assert json.loads(path.read_text())["sensors"][-1]["power"] == "sensors"
    done = invoke("device", "sensor", "add", "rio-01", "loop2", "--type", "pressure_level_ma",
                  "--set", "range_m=5", "--index", "1", "--set", "power=pump")
    assert done.exit_code == 1 and ".power: 'pump' is not a group of the power section (sensors)" in done.stderr, \
        done.stderr
