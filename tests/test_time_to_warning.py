"""Time to warning: from the tip that crosses a local rain threshold to the frame's arrival at
the gateway, on every board and sleep mode, with 15-minute dry-weather reporting.

Each run is a dry board reporting every 900 s, hit by six bursts of rain that start at
spread-out points of its 15-minute sleep. The threshold (2 mm in 10 minutes) is crossed at
each burst's 10th tip; the time to warning is measured from that tip (the scenario's own
tip event, "vt") to the board's receipt of the gateway's ack for the frame that carries it
(the firmware's "ack" event, on the same virtual clock): the ack leaves the gateway's end
only once it decoded and kept the frame, so this bounds the arrival from above. Busy time
runs one to one with real time in the simulator and only sleep is sped up, so the figure is
the one at 1x. The gateway's end is the firmware tests' peer (huaico.ingest.decoder and a MACed
ack): over a TCP UART on every board and sleep mode (tests/fixtures/firmware.py), and over
a real Mosquitto for the Wi-Fi boards (tests/test_firmware_mqtt.py's GatewayPeer, paho).

Between bursts the board must go back to dry-weather pacing: one frame per 900 s.
"""
import json

import pytest

from tests.fixtures.firmware import BOARDS, KEY_HEX, KID_HEX, UartPeer, run_sim
from tests.test_firmware_mqtt import GatewayPeer

GOAL_S = 5.0  # issue 12: p99 <= 5 s with 15-minute dry-weather reporting
MODES = ("light", "none")  # the sleep modes a rain site can run on every board (deep is refused)
REPORT_S = 900
WINDOW_S = 600
ABOVE_MM = 2.0
MM_PER_TIP = 0.2
CROSSING_TIP = 10  # ABOVE_MM / MM_PER_TIP: the tip of a burst that crosses the threshold
BURST_TIPS = 20
TIP_EVERY_S = 6.0
BURSTS = 6  # per run; 25 runs (every board and sleep mode, UART and Wi-Fi) give 150 in all
# Burst starts: 3200 s apart (the rule clears about 700 s after a burst starts, leaving a dry
# spell of several reports) plus a shift that moves each one to another point of the board's
# 900 s sleep.
STARTS = [1000 + 3200 * k + (k * 211) % 700 for k in range(BURSTS)]
SPEED = 1000


def site(board, mode):
    """The 15-minute dry-weather defaults: report_s and the sensors' intervals left to the
    firmware's defaults (firmware/config.py), a rolling rain rule, no sleep cap."""
    return {
        "device_id": KID_HEX, "key": KEY_HEX, "board": board,
        "sensors": [{"type": "rain_gauge", "name": "rain0", "mm_per_tip": MM_PER_TIP, "debounce_ms": 20},
                    {"type": "battery", "name": "batt", "ratio": 2.0}],
        "thresholds": [{"sensor": "rain0", "channel": "rain", "above": ABOVE_MM, "window_s": WINDOW_S,
                        "report_s": 60}],
        "transport": {"type": "uart", "baud": 115200, "mtu": 255, "ack_timeout_ms": 1500},
        "sleep": {"mode": mode},
        "ring": {"frames": 256},
        "battery": {"low_v": 3.0},
    }


def scenario():
    rain = [{"from_s": s, "to_s": s + BURST_TIPS * TIP_EVERY_S, "every_s": TIP_EVERY_S} for s in STARTS]
    return {"duration_s": STARTS[-1] + 1800, "world": {"battery_v": 4.0}, "rain": rain}


def percentile(values, p):
    """Nearest-rank percentile (with fewer than 100 values p99 is the largest)."""
    ranked = sorted(values)
    rank = max(1, -(-len(ranked) * p // 100))
    return ranked[int(rank) - 1]


def warnings(events, store):
    """[(crossing tip's scenario s, seconds from it to the ack of the frame carrying it)]."""
    tips = [e["vt"] for e in events if e["ev"] == "tip"]
    frames = [e for e in events if e["ev"] == "frame"]
    acks = {}
    for e in events:
        if e["ev"] == "ack":
            acks.setdefault(e["seq"], e["ms"])
    out = []
    for b in range(BURSTS):
        crossing = tips[b * BURST_TIPS + CROSSING_TIP - 1]
        frame = next(f for f in frames if f["ms"] >= crossing * 1000 and f["tips"] > 0)
        assert frame["seq"] in store.frames, ("the frame after the crossing never reached the gateway", frame)
        out.append((crossing, (acks[frame["seq"]] - crossing * 1000) / 1000.0))
    return out


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("board", BOARDS)
def test_a_burst_in_a_fifteen_minute_sleep_is_reported_within_seconds(board, mode, tmp_path, compiled_runner):
    peer = UartPeer()
    try:
        code, events, output = run_sim(tmp_path, site(board, mode), scenario(), speed=SPEED, uart=peer.spec,
                                       runner=compiled_runner, timeout=600)
    finally:
        peer.close()
    check(board, mode, code, events, output, peer.store)


@pytest.mark.parametrize("board", ("pico_w", "pico2_w", "esp32", "esp32s3"))
def test_a_wifi_board_warns_within_seconds_over_mqtt(board, tmp_path, compiled_runner, mosquitto_broker):
    """The same over Wi-Fi and a real broker, in light sleep (an esp32 loses its association
    in every light sleep and joins again to report)."""
    raw = site(board, "light")
    raw["transport"] = {"type": "mqtt", "host": mosquitto_broker.host, "port": mosquitto_broker.port,
                        "io_timeout_ms": 250, "burst": 4}
    peer = GatewayPeer(mosquitto_broker)
    try:
        code, events, output = run_sim(tmp_path, raw, scenario(), speed=SPEED, runner=compiled_runner,
                                       mqtt="%s:%d" % (mosquitto_broker.host, mosquitto_broker.port), timeout=600)
    finally:
        peer.close()
    check(board, "light/mqtt", code, events, output, peer.store)


def check(board, mode, code, events, output, store):
    """Every tip once, one alarm and one clear per burst, the time to warning within the goal,
    and dry-weather pacing between the bursts."""
    assert code == 0 and "Traceback" not in output, output[-3000:]
    assert not [e for e in events if e["ev"] in ("board_reset", "hang")], output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    assert end["tips"] == BURSTS * BURST_TIPS and end["lost_tips"] == 0, end
    assert not store.rejects and not store.reused, (store.rejects[:5], store.reused[:10])
    assert store.tips() == end["tips"], (store.tips(), end)
    alarms = [e for e in events if e["ev"] == "alarm"]
    assert len(alarms) == BURSTS and len([e for e in events if e["ev"] == "clear"]) == BURSTS, alarms
    found = warnings(events, store)
    times = [t for _, t in found]
    p50, p99 = percentile(times, 50), percentile(times, 99)
    print(json.dumps({"ttw": board, "mode": mode, "n": len(times), "p50_s": round(p50, 3),
                      "p99_s": round(p99, 3), "max_s": round(max(times), 3)}))
    assert p99 <= GOAL_S, found
    # Each burst began in the middle of a dry-weather sleep, and the board went back to dry-weather
    # pacing once the rule cleared: between a clear (and the one sample a minute later that the
    # rule's pace had set) and the next burst, frames come one per 900 s, no faster.
    frames = [e["ms"] / 1000.0 for e in events if e["ev"] == "frame"]
    clears = [e["ms"] / 1000.0 for e in events if e["ev"] == "clear"]
    for start, cleared in zip(STARTS[1:], clears):
        dry = [t for t in frames if cleared + 61 < t < start]
        gaps = [b - a for a, b in zip(dry, dry[1:])]
        assert len(dry) >= 2 and min(gaps) >= REPORT_S - 1, (cleared, start, dry)
        assert start - dry[-1] >= 1, (start, dry)


def test_config_fills_the_dry_weather_pacing_and_checks_rolling_rules():
    """The defaults (report 900 s, the rain gauge with each report, a level every 300 s, no
    sleep cap) and the rolling rules' bounds: a rain rule must fit the tip times the gauge
    keeps, a rise rule's window the readings it keeps, a window only on a gauge or with rise."""
    from firmware import config

    raw = site("pico", "light")
    raw["sensors"].append({"type": "pressure_level_i2c", "name": "level0"})
    assert config.check(raw, sensor_check=False) == []
    assert raw["report_s"] == 900 and raw["sleep"]["max_ms"] == 0
    assert [s["interval_s"] for s in raw["sensors"]] == [900, 900, 300]
    too_many = dict(site("pico", "light"), thresholds=[
        {"sensor": "rain0", "channel": "rain", "above": 0.2 * (config.RAIN_TIMES + 1), "window_s": 3600,
         "report_s": 60}])
    assert [e for e in config.check(too_many, sensor_check=False) if "tips in window_s" in e]
    rise = dict(site("pico", "light"), thresholds=[
        {"sensor": "level0", "channel": "water_level", "rise": 0.3, "window_s": 1200, "report_s": 60}])
    rise["sensors"].append({"type": "pressure_level_i2c", "name": "level0", "interval_s": 30})
    assert [e for e in config.check(rise, sensor_check=False) if "a rise rule keeps 32" in e]
    rise["sensors"][-1]["interval_s"] = 60
    assert config.check(rise, sensor_check=False) == []
    wrong = dict(site("pico", "light"), thresholds=[
        {"sensor": "batt", "channel": "battery", "above": 4.0, "window_s": 60, "report_s": 60}])
    assert [e for e in config.check(wrong, sensor_check=False) if "a rolling window is for a rain gauge" in e]


RISE_AT = [1130, 4517]  # the river starts to rise mid-sleep (the boot's report is at 0, the next at 900)


@pytest.mark.parametrize("board, mode", [("pico", "light"), ("pico2_w", "none"), ("esp32", "light")])
def test_a_fast_level_sensors_rise_is_reported_at_once(board, mode, tmp_path, compiled_runner):
    """A pressure level sensor read every 30 s, reporting every 15 minutes, and a rise rule
    (0.3 m in 10 minutes): the reading that shows the rise is committed and reported at once,
    within the goal of the reading, and within one sampling interval of the water's crossing."""
    raw = site(board, mode)
    raw["sensors"].append({"type": "pressure_level_i2c", "name": "level0", "interval_s": 30})
    raw["thresholds"] = [{"sensor": "level0", "channel": "water_level", "rise": 0.3, "window_s": 600,
                          "report_s": 60}]
    # 0.5 m to 1.4 m in 600 s each time (0.3 m in 200 s), and back down before the next rise.
    ramps = []
    for at in RISE_AT:
        ramps.append({"key": "water_level_m", "from_s": at, "to_s": at + 600, "start": 0.5, "end": 1.4,
                      "step_s": 5})
        ramps.append({"key": "water_level_m", "from_s": at + 1200, "to_s": at + 2400, "start": 1.4,
                      "end": 0.5, "step_s": 30})
    raw_scenario = {"duration_s": RISE_AT[-1] + 3000, "world": {"battery_v": 4.0, "water_level_m": 0.5},
                    "ramps": ramps}
    peer = UartPeer()
    try:
        code, events, output = run_sim(tmp_path, raw, raw_scenario, speed=SPEED, uart=peer.spec,
                                       runner=compiled_runner, timeout=600)
    finally:
        peer.close()
    assert code == 0 and "Traceback" not in output, output[-3000:]
    assert not [e for e in events if e["ev"] in ("board_reset", "hang")], output[-3000:]
    alarms = [e for e in events if e["ev"] == "alarm" and e["sensor"] == "level0"]
    assert len(alarms) == len(RISE_AT), alarms
    acks = {}
    for e in events:
        if e["ev"] == "ack":
            acks.setdefault(e["seq"], e["ms"])
    frames = [e for e in events if e["ev"] == "frame"]
    times = []
    for at, alarm in zip(RISE_AT, alarms):
        crossed = at + 200  # 0.3 m above the 0.5 m it started from
        assert crossed * 1000 <= alarm["ms"] <= (crossed + 30 + 5) * 1000, (at, alarm)
        frame = next(f for f in frames if f["ms"] >= alarm["ms"])
        assert frame["seq"] in peer.store.frames, frame
        times.append((acks[frame["seq"]] - alarm["ms"]) / 1000.0)
    print(json.dumps({"rise_ttw": board, "mode": mode, "s": times}))
    assert max(times) <= GOAL_S, times
