"""`huaico demo` end to end: the real firmware under MicroPython, `huaico run`, the
modem emulator on a pty and a real Mosquitto, as a user runs it (a subprocess).

The scenarios run faster than their defaults (--speed) so that all four take
about a minute and a half together; the hillside run is checked in depth,
the others for the alert kinds they exist to show.
"""
import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_sms_pdu import independent_decode

HUAICO = Path(sys.executable).parent / "huaico"
ROOT = Path(__file__).resolve().parents[1]
# README and issue 12: an alert's first SMS leaves the modem within 10 s of the
# tip that raised it, at 1x, p99 over the demo's alerts, with the boards at
# 15-minute dry-weather reporting (the demo's defaults). The demo's "at 1x"
# figure is the board's wait from that tip to its frame in scenario seconds
# (busy time counts one to one in the simulator, so --speed does not shrink
# it) plus the wall time from the frame to the modem's record. It needs no
# allowance for the speed-up, so the goal is asserted as it stands, with no
# slack added on top. The boards judge their own thresholds, which mirror the
# gateway's levels, at every tip: the tip that raises a rain alert is reported
# at once, whatever the 15-minute pacing.
GOAL_S = 10.0


def run_demo(home, scenario, speed, *extra):
    command = [str(HUAICO), "demo", "--scenario", scenario, "--home", str(home),
               "--speed", str(speed), "--json"] + list(extra)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return done.stdout, result


def texts(result):
    """Whole messages: the PDUs' parts joined by concatenation reference and recipient."""
    parts = {}
    for record in result["sms"]:
        decoded = independent_decode(record["hex"])
        concat = decoded.get("concat")
        key = (record["number"], concat["reference"] if concat else id(record))
        parts.setdefault(key, []).append((concat["part_number"] if concat else 1,
                                          decoded["text"]))
    return [(key[0], "".join(text for _, text in sorted(found))) for key, found in parts.items()]


def alert_kinds(home):
    with sqlite3.connect(home / "huaico.db") as conn:
        return {row[0] for row in conn.execute("SELECT kind FROM alerts")}


def test_hillside_rain_end_to_end(tmp_path, mosquitto_broker):
    home = tmp_path / "demo"
    out, result = run_demo(home, "hillside-rain", 120, "--mqtt-port", str(mosquitto_broker.port))
    assert result["frames"] > 0 and result["readings"] > result["frames"]
    assert result["messages_sms"] >= 1 and result["messages_pending"] == 0
    assert result["rejects"] == 0
    # SMS as the modem got them, decoded by an independent decoder: Spanish,
    # in GSM-7, level first, then the site's place for people (never a
    # device), the reading's time in Lima, and the site's own action.
    messages = texts(result)
    assert messages
    for number, text in messages:
        assert number.startswith("+51987000")
        assert re.match(r"(VIGILANCIA|ALERTA|EMERGENCIA|FIN) (Quebrada|Puente) Santo Domingo",
                        text), text
        assert re.search(r" a las \d\d:\d\d\.", text), text
        assert "pluvio" not in text and "rio-puente" not in text, text
    assert any("lluvia" in text and "Suba al colegio de la loma." in text
               for _, text in messages)
    # At most one SMS part per alert event for each leader, and the summary
    # prints it: every message one part, no more messages than events.
    for record in result["sms"]:
        assert independent_decode(record["hex"])["concat"] is None, record
    assert sorted(result["per_number"]) == ["+51987000101", "+51987000102"]
    for number, sent in result["per_number"].items():
        assert sent["max_parts"] == 1 and sent["parts"] == sent["messages"] <= sent["events"]
        assert re.search(r"SMS to %s +%d alert event\(s\), %d message\(s\), %d part\(s\): "
                         r"at most 1 per alert" % (re.escape(number), sent["events"],
                                                   sent["messages"], sent["parts"]), out)
    assert all(event["parts"] <= 1 for event in result["events"])
    # Every tip the boards counted is in the database once: the storm stops
    # before the scenario ends, so every tip was framed and acked.
    with sqlite3.connect(home / "huaico.db") as conn:
        ids = dict(conn.execute("SELECT name, id FROM devices"))
        for name in ("pluvio-alto", "pluvio-bajo"):
            tips = result["tips"][name]
            assert tips > 50
            stored_tips, tenths, rows, frames = conn.execute(
                "SELECT sum(CASE channel WHEN 2 THEN value END), sum(CASE channel WHEN 1 THEN value "
                "END), sum(channel = 2), count(DISTINCT seq) FROM readings WHERE device_id = ? "
                "AND channel IN (1, 2)", [ids[name]]).fetchone()
            assert stored_tips == tips, name
            assert tenths == tips * 2, name  # 0.2 mm buckets, in 0.1 mm
            assert rows == frames, name  # one tip count per frame: nothing doubled
    # The latency line is printed with numbers, and the JSON agrees.
    match = re.search(r"tip to SMS, wall clock: median ([0-9.]+) s, p99 ([0-9.]+) s, max ([0-9.]+) s", out)
    assert match, out[-2000:]
    assert float(match.group(2)) == pytest.approx(result["latency_s"]["p99"], abs=0.01)
    assert float(match.group(3)) == pytest.approx(result["latency_s"]["max"], abs=0.01)
    # The rain alerts' first SMS within the goal at 1x, p99 (see GOAL_S), and the
    # demo says so. Every rain alert of this scenario was raised by a tip.
    by_tip = [e for e in result["events"] if e["trigger"].startswith("tip ")]
    rain = [e for e in result["events"] if e["rule"].startswith("lluvia") and e["level"] != "clear"]
    assert rain and len(by_tip) == len(rain), result["events"]
    at_1x = sorted(e["latency_1x_s"] for e in by_tip)
    assert None not in at_1x and len(at_1x) == result["latency_1x_s"]["n"], by_tip
    p99 = at_1x[-(-len(at_1x) * 99 // 100) - 1]  # nearest rank
    assert result["latency_1x_s"]["p99"] == p99 and result["latency_1x_s"]["max"] == at_1x[-1]
    print("tip to SMS at 1x over %d rain alerts: median %.2f s, p99 %.2f s, max %.2f s"
          % (len(at_1x), result["latency_1x_s"]["median"], p99, at_1x[-1]))
    assert 0 <= p99 <= GOAL_S, result["events"]
    assert "p99 within the %g s goal" % GOAL_S in out, out[-2000:]
    # The boards ran at 15-minute dry-weather pacing: before its storm took it over
    # its first threshold (5 mm, after 900 s), pluvio-bajo made one frame, at boot.
    made = result["frame_times"]["pluvio-bajo"]
    assert made[0] < 1 and not [t for t in made if 1 <= t < 900], made
    assert "database: %s" % home in out
    # Each board's energy over the run, from the simulator's model (firmware/sim/energy_model.py).
    assert re.search(r"pluvio-alto energy [0-9.]+ mAh/day, [0-9.]+ mA average", out), out[-2000:]
    # MQTT: the gateway published the alerts (JSON and CAP) on the broker.
    assert result["messages_mqtt"] > 0
    assert result["mqtt"]["alerts"] > 0 and result["mqtt"]["cap"] > 0


@pytest.mark.parametrize("scenario, speed, kinds, check", [
    ("heritage-tilt", 240, {"above"},
     lambda text: "Casona Rimac" in text and "tilt" in text and "degrees" in text),
    # At its own speed: its silent-device windows are wall seconds set for 15-minute
    # reports at 30x (a report each 30 s of wall time).
    ("equipment-health", 30, {"silent", "quality", "battery"},
     lambda text: "Revise la estacion" in text),
    ("cloudburst", 120, {"accumulation"}, lambda text: "福田区" in text and "毫米" in text),
])
def test_other_scenarios_raise_their_alerts(tmp_path, scenario, speed, kinds, check):
    home = tmp_path / "demo"
    _, result = run_demo(home, scenario, speed, "--no-mqtt")
    assert kinds <= alert_kinds(home)
    messages = texts(result)
    assert messages and any(check(text) for _, text in messages), messages
    assert all(sent["max_parts"] == 1 for sent in result["per_number"].values()), messages


def test_list_export_and_a_bad_scenario(tmp_path):
    listed = subprocess.run([str(HUAICO), "demo", "--list"], capture_output=True, text=True)
    names = {line.split()[0] for line in listed.stdout.splitlines()}
    assert {"hillside-rain", "heritage-tilt", "equipment-health", "cloudburst"} <= names
    exported = subprocess.run([str(HUAICO), "demo", "--export", "cloudburst"],
                              capture_output=True, text=True)
    assert exported.returncode == 0 and "[[devices]]" in exported.stdout
    broken = tmp_path / "broken.toml"
    broken.write_text(exported.stdout.replace('kind = "accumulation"', 'knd = "accumulation"', 1))
    done = subprocess.run([str(HUAICO), "demo", "--scenario", str(broken), "--home",
                           str(tmp_path / "x")], capture_output=True, text=True)
    assert done.returncode == 1 and "rules[0] has no 'kind'" in done.stderr
    # A directory that is not a demo's is never wiped.
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "data.txt").write_text("mine")
    done = subprocess.run([str(HUAICO), "demo", "--home", str(keep)], capture_output=True,
                          text=True)
    assert done.returncode == 1 and "not a demo directory" in done.stderr
    assert (keep / "data.txt").read_text() == "mine"
