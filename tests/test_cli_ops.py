"""Operators' commands through CliRunner on a real SQLite database filled by
the real writer (signed frames decoded, stored, rules run, alert queued):
what a person sees in `huaico status`, readings in every format, a plot,
doctor against a busy pty, a real modem emulator and a real broker, the
storage estimate, serve's canned queries, and one-line user errors."""
import csv
import datetime
import io
import json
import os
import pathlib
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
import serial
from click.testing import CliRunner

from huaico.cli.main import main
from huaico.ops import datasette_queries
from tests.fixtures.operators import LEVEL



def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def assert_user_error(result, *words):
    """Non-zero exit, one line on the output, no traceback."""
    assert result.exit_code != 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert "Traceback" not in result.output
    for word in words:
        assert word in lines[0], lines[0]


def test_status_shows_devices_values_units_stale_and_alerts(ops_network):
    result = invoke("status")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("4 devices, 2 stale (not heard for 15 min), 1 active alert")
    by_name = {}
    for line in lines:
        for name in ("rain-01", "river-02", "soil-03", "never-04"):
            if name in line.split():
                by_name.setdefault(name, line)
    rain = by_name["rain-01"]
    assert "2 min ago" in rain and "3.71 V" in rain and "-71 dBm" in rain
    assert "rain 12.3 mm" in rain and "battery 3.710 V" in rain and "STALE" not in rain
    assert not rain.startswith("!")
    assert "water_level 2.500 m" in by_name["river-02"]
    soil = by_name["soil-03"]
    assert soil.startswith("!") and "3 h ago STALE" in soil and "soil_moisture 31.5 %" in soil
    never = by_name["never-04"]
    assert never.startswith("!") and "never STALE" in never
    # Stale devices come first: they are what needs a person.
    order = [line.split()[1] for line in lines if line.startswith("!")]
    assert order == ["never-04", "soil-03"]
    assert lines.index(by_name["soil-03"]) < lines.index(by_name["rain-01"])
    alert = [line for line in lines if "river-high" in line]
    assert len(alert) == 1
    assert "WATCH" in alert[0] and "river-02" in alert[0] and "2.5 m" in alert[0]
    assert "at Rio Rimac, puente" in alert[0]  # the place residents read
    assert "NOT acknowledged" in alert[0]
    # Not a terminal: no colour codes.
    assert "\x1b[" not in result.output


def test_status_colour_on_a_terminal(ops_network):
    result = CliRunner().invoke(main, ["status"], color=True)
    stale = [line for line in result.output.splitlines() if "soil-03" in line][0]
    assert stale.startswith("\x1b[31m") or "\x1b[31m" in stale


def test_status_stale_option_and_json(ops_network):
    result = invoke("status", "--stale", "5h", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    stale = {d["name"]: d["stale"] for d in data["devices"]}
    assert stale == {"rain-01": False, "river-02": False, "soil-03": False, "never-04": True}
    rain = [d for d in data["devices"] if d["name"] == "rain-01"][0]
    assert rain["battery_v"] == 3.71 and rain["rssi_dbm"] == -71
    # Numbers as numbers, times as local ISO 8601 with the offset.
    assert {"channel": "rain", "idx": 0, "value": 12.3, "unit": "mm", "quality": "ok"}.items() \
        <= rain["values"][0].items()
    assert datetime.datetime.fromisoformat(rain["last_seen"]).timestamp() == \
        pytest.approx(ops_network.now - 120, abs=1)
    assert datetime.datetime.fromisoformat(data["time"]).tzinfo is not None
    assert [a["rule"] for a in data["alerts"]] == ["river-high"]
    assert_user_error(invoke("status", "--stale", "soon"), "not a duration")


def test_status_empty_and_missing_database(gateway_home, tmp_path, monkeypatch):
    result = invoke("status")
    assert result.exit_code == 0
    assert "No devices yet" in result.output and "huaico device add" in result.output
    monkeypatch.setenv("HUAICO_HOME", str(tmp_path / "nothing-here"))
    assert_user_error(invoke("status"), "no database", "huaico init")


def test_bad_config_is_one_line(gateway_home):
    (gateway_home.path / "huaico.toml").write_text("[ingest]\nbatch_ms = 'fast'\n")
    for command in (["status"], ["readings"], ["plot", "rain-01", "rain"]):
        assert_user_error(invoke(*command), "batch_ms")


def test_readings_formats_parse(ops_network):
    table = invoke("readings", "--device", "rain-01")
    assert table.exit_code == 0, table.output
    assert table.output.splitlines()[0].split()[:5] == ["DEVICE", "CHANNEL", "IDX", "TIME", "VALUE"]
    assert len(table.output.splitlines()) == 1 + 5

    rows = list(csv.DictReader(io.StringIO(invoke("readings", "--format", "csv").output)))
    assert len(rows) == 9
    rain = [r for r in rows if r["device"] == "rain-01" and r["channel"] == "rain"]
    assert [r["value"] for r in rain] == ["4.0", "12.3"] and rain[0]["unit"] == "mm"

    data = json.loads(invoke("readings", "--channel", "battery", "--format", "json").output)
    assert sorted(r["value"] for r in data) == [3.3, 3.7, 3.71, 3.95]
    assert all(r["unit"] == "V" for r in data)

    pack = json.loads(invoke("readings", "--device", "rain-01", "--format", "senml").output)
    assert pack[0]["bn"] == "urn:dev:huaico:%s:" % ops_network.rain.row["id"]
    values = sorted((r["n"], r["v"]) for r in pack)
    # SenML's primary units: 12.3 mm as metres, -71 dBm as dBW.
    assert ("rain", 0.0123) in values and ("rssi", -101.0) in values

    cut = invoke("readings", "--limit", "2", "--format", "json")
    limited = json.loads(cut.stdout)
    assert len(limited) == 2 and {r["device"] for r in limited} == {"river-02"}
    # A cut list says so, on stderr so that the JSON stays whole.
    assert cut.stderr == "(showing the newest 2 readings; more match: --limit 0 for all, " \
                         "or a later --since)\n"
    whole = invoke("readings", "--limit", "0", "--format", "json")
    assert whole.stderr == "" and len(json.loads(whole.stdout)) > 2
    recent = json.loads(invoke("readings", "--since", "10m", "--format", "json").output)
    assert {r["device"] for r in recent} == {"rain-01", "river-02"}
    old = json.loads(invoke("readings", "--until", "1h", "--format", "json").output)
    assert {r["device"] for r in old} == {"soil-03"}
    iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(ops_network.now - 200))
    assert len(json.loads(invoke("readings", "--since", iso, "--format", "json").output)) == 5


def test_readings_user_errors(ops_network):
    assert_user_error(invoke("readings", "--device", "nobody"), "no device named 'nobody'")
    assert_user_error(invoke("readings", "--channel", "rainfall"), "unknown channel 'rainfall'",
                      "water_level")
    assert_user_error(invoke("readings", "--since", "yesterday"), "'yesterday'", "24h")
    assert invoke("readings", "--device", "never-04").output.strip() == "no readings match"


def test_plot_in_the_terminal(ops_network):
    for seconds in range(0, 3600, 300):
        ops_network.send(ops_network.river, [(LEVEL, 0, 0, 2000 + seconds // 10, 0)],
                     ops_network.now - 3600 + seconds)
    result = invoke("plot", "river-02", "water_level", "--since", "2h", "--width", "80",
                    "--height", "20")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "river-02 water_level (m)" in lines[0]
    assert len(lines) >= 18 and max(len(line) for line in lines) <= 80
    # Braille or block dots of the line itself, not only the frame.
    assert any(ch in result.output for ch in "▗▖▝▘▀▄▞▚⠁⢀⣀")


def test_plot_user_errors(ops_network, tmp_path):
    assert_user_error(invoke("plot", "nobody", "rain"), "no device named")
    assert_user_error(invoke("plot", "rain-01", "rainfall"), "unknown channel")
    assert_user_error(invoke("plot", "rain-01", "water_level"), "no water_level readings")
    assert_user_error(invoke("plot", "rain-01", "rain", "--since", "later"), "'later'")
    png = tmp_path / "rain.png"
    result = invoke("plot", "rain-01", "rain", "--png", png)
    try:
        import matplotlib  # noqa: F401
    except ModuleNotFoundError:
        assert_user_error(result, "pip install 'huaico[plot]'")
        assert not png.exists()
    else:
        assert result.exit_code == 0, result.output
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def write_config(home, **replacements):
    text = (home.path / "huaico.toml").read_text()
    for old, new in replacements.items():
        assert old in text, old
        text = text.replace(old, new, 1)
    (home.path / "huaico.toml").write_text(text)


def doctor_lines(*args):
    result = invoke("doctor", *args)
    assert "Traceback" not in result.output
    return result, {line[5:19].strip(): line for line in result.output.splitlines()}


def test_doctor_busy_pty_and_missing_port(gateway_home, pty_pair):
    write_config(gateway_home, **{
        "serial = []": 'serial = ["%s", "/dev/ttyNOPE9"]' % pty_pair.path})
    holder = serial.Serial(pty_pair.path, exclusive=True)
    try:
        result = invoke("doctor")
    finally:
        holder.close()
    assert result.exit_code == 1
    busy = [line for line in result.output.splitlines() if pty_pair.path in line]
    assert busy[0].startswith("FAIL serial") and "busy" in busy[0] and "fuser" in busy[0]
    missing = [line for line in result.output.splitlines() if "/dev/ttyNOPE9" in line]
    assert missing[0].startswith("FAIL serial") and "does not exist" in missing[0]

    write_config(gateway_home, **{', "/dev/ttyNOPE9"': ""})
    result = invoke("doctor")
    free = [line for line in result.output.splitlines() if pty_pair.path in line]
    assert free[0].startswith("OK   serial") and "free" in free[0]
    assert result.exit_code == 0, result.output


def test_doctor_modem_emulator(gateway_home, modem_emulator):
    write_config(gateway_home, **{'backend = "none"': 'backend = "modem"',
                                  'port = ""': 'port = "%s"' % modem_emulator.path})
    result, lines = doctor_lines()
    assert result.exit_code == 0, result.output
    assert lines["modem"].startswith("OK") and modem_emulator.path in lines["modem"]
    assert lines["SIM"].startswith("OK")
    assert lines["network"].startswith("OK") and "Claro PE" in lines["network"]
    assert lines["signal"].startswith("OK") and "-71 dBm" in lines["signal"]

    modem_emulator.drop_network()
    modem_emulator.rssi = 3
    result, lines = doctor_lines("--json")
    data = json.loads(result.output)
    checks = {c["check"]: c for c in data["checks"]}
    assert result.exit_code == 1 and data["ok"] is False
    assert checks["network"]["level"] == "FAIL" and "searching" in checks["network"]["detail"]
    assert checks["signal"]["level"] == "WARN" and "-107 dBm" in checks["signal"]["detail"]
    assert "antenna" in checks["network"]["fix"]


def test_doctor_no_modem(gateway_home, pty_pair):
    write_config(gateway_home, **{'backend = "none"': 'backend = "modem"',
                                  'port = ""': 'port = "%s"' % pty_pair.path})
    result, lines = doctor_lines()
    assert result.exit_code == 1
    assert lines["modem"].startswith("FAIL") and "no answer from a modem" in lines["modem"]
    assert "power supply" in lines["modem"]


def test_doctor_broker_up_and_down(gateway_home, mosquitto_broker):
    write_config(gateway_home, **{"enabled = false": "enabled = true",
                                  "port = 1883": "port = %d" % mosquitto_broker.port})
    result, lines = doctor_lines()
    assert lines["broker"].startswith("OK") and "accepts MQTT" in lines["broker"]
    assert result.exit_code == 0, result.output
    mosquitto_broker.stop()
    result, lines = doctor_lines()
    assert result.exit_code == 1
    assert lines["broker"].startswith("FAIL") and "cannot reach 127.0.0.1:%d" \
        % mosquitto_broker.port in lines["broker"]
    assert "systemctl start mosquitto" in lines["broker"]


def test_doctor_database_clock_and_bad_config(gateway_home):
    result, lines = doctor_lines()
    assert lines["database"].startswith("OK") and "integrity_check" in lines["database"]
    assert lines["journal"].startswith("OK") and lines["synchronous"].startswith("OK")
    assert lines["disk"][:4].strip() in ("OK", "WARN", "FAIL") and "free" in lines["disk"]
    assert lines["clock"].startswith("OK")
    assert lines["ntp"][:4].strip() in ("OK", "WARN", "SKIP")

    (gateway_home.path / "huaico.toml").write_text("[gateway\n")
    result, lines = doctor_lines()
    assert result.exit_code == 1
    assert lines["config"].startswith("FAIL") and "not valid TOML" in lines["config"]

    (gateway_home.path / "huaico.toml").unlink()
    gateway_home.database.conn.close()  # checkpoints: the file alone is the database
    gateway_home.config.database_path.write_bytes(b"not a database at all" * 100)
    result, lines = doctor_lines()
    assert result.exit_code == 1
    assert lines["database"].startswith("FAIL")


def test_doctor_clock_in_1970():
    from huaico.ops import doctor
    checks = doctor.check_clock(now=86400 * 3)
    assert checks[0].level == doctor.FAIL and "1970" in checks[0].detail


def test_storage_estimate(gateway_home):
    result = invoke("storage", "estimate", "--devices", 65, "--interval", "5m", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    # Nine columns of small integers, a REAL and two indexes: tens of bytes.
    assert 30 < data["bytes_per_reading"] < 250
    assert data["readings_per_day"] == 65 * 4 * 288
    assert data["bytes_total"] == pytest.approx(data["bytes_per_day"] * 365, rel=1e-6)
    # Retention ([retention] raw_days = 365 by default): raw readings fill a
    # year's worth, then only hourly aggregates (one row per channel and hour) grow.
    assert data["raw_days"] == 365 and 10 < data["bytes_per_hourly_row"] < data["bytes_per_reading"]
    assert data["hourly_bytes_per_day"] == pytest.approx(
        data["bytes_per_hourly_row"] * 65 * 4 * 24, rel=2e-3)  # the row size shown is rounded
    raw_year = data["bytes_per_day"] * 365
    assert data["days_until_full"] == pytest.approx(
        365 + (data["free_bytes"] - raw_year) / data["hourly_bytes_per_day"], rel=1e-4)
    ten = json.loads(invoke("storage", "estimate", "--devices", 65, "--interval", "5m",
                            "--days", 3650, "--json").output)
    assert ten["bytes_total"] == pytest.approx(
        ten["bytes_per_day"] * 365 + ten["hourly_bytes_per_day"] * 3285, rel=1e-3)
    every = json.loads(invoke("storage", "estimate", "--devices", 65, "--interval", "5m",
                              "--days", 3650, "--raw-days", 0, "--json").output)
    assert every["bytes_total"] == pytest.approx(every["bytes_per_day"] * 3650, rel=1e-6)
    assert every["days_until_full"] == int(every["free_bytes"] / every["bytes_per_day"])
    text = invoke("storage", "estimate", "--devices", 1, "--interval", "1h", "--days", 30)
    assert "1 device x 4 readings every 1 h = 96 readings a day" in text.output
    assert "in 30 days" in text.output
    assert_user_error(invoke("storage", "estimate", "--devices", 3, "--interval", "often"),
                      "'often' is not a duration")


def test_serve_without_datasette(gateway_home, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasette", None)
    assert_user_error(invoke("serve"), "pip install 'huaico[serve]'")


def test_canned_queries_answer_on_a_populated_database(ops_network, tmp_path):
    copy = datasette_queries.snapshot(ops_network.home.config.database_path, tmp_path / "snap.db")
    conn = sqlite3.connect("file:%s?mode=ro&immutable=1" % copy, uri=True)
    conn.row_factory = sqlite3.Row
    assert {row[0] for row in conn.execute("SELECT key FROM devices")} == {""}
    answers = {name: [dict(row) for row in conn.execute(query["sql"])]
               for name, query in datasette_queries.queries().items()}
    latest = {(r["device"], r["channel"]): (r["value"], r["unit"])
              for r in answers["latest_readings"]}
    assert latest[("rain-01", "rain")] == (12.3, "mm")
    assert latest[("river-02", "water_level")] == (2.5, "m")
    assert latest[("rain-01", "battery")] == (3.71, "V")
    assert [(r["device"], r["rain_mm"]) for r in answers["rain_24h"]] == [("rain-01", 16.3)]
    assert [(r["rule"], r["level"], r["acknowledged"]) for r in answers["active_alerts"]] == [
        ("river-high", "watch", "no")]
    assert answers["undelivered_messages"] and all(
        r["status"] == "pending" for r in answers["undelivered_messages"])
    assert answers["rejects_by_reason"] == []


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _fetch(url):
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


def test_serve_runs_datasette_with_canned_queries(ops_network):
    try:
        import datasette  # noqa: F401
    except ModuleNotFoundError:
        pytest.fail("datasette is not installed: pip install 'huaico[serve]'")
    port = _free_port()
    env = dict(os.environ, HUAICO_HOME=str(ops_network.home.path), PYTHONPATH=os.getcwd())
    process = subprocess.Popen([sys.executable, "-c", "from huaico.cli.main import main; main()",
                                "serve", "--port", str(port)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = "http://127.0.0.1:%d/huaico/rain_24h.json?_shape=array" % port
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    rows = json.load(answer)
                break
            except OSError:
                assert process.poll() is None, process.stderr.read().decode()
                assert time.monotonic() < deadline, "datasette did not answer on port %d" % port
                time.sleep(0.2)
        assert rows == [{"device": "rain-01", "site": "Quebrada Huaycoloro", "rain_mm": 16.3,
                         "readings": 2, "last_reading": rows[0]["last_reading"]}]
        children = pathlib.Path("/proc/%d/task/%d/children" % (process.pid, process.pid))
        datasette_pids = [int(pid) for pid in children.read_text().split()]
        assert datasette_pids
        # Read-only: a write is refused.
        status, refused = _fetch("http://127.0.0.1:%d/huaico.json?sql=%s" % (
            port, urllib.parse.quote("delete from readings")))
        assert status == 400 and refused["ok"] is False
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        process.stderr.close()
    # Stopping `huaico serve` by its pid stops Datasette too.
    for pid in datasette_pids:
        assert not pathlib.Path("/proc/%d" % pid).exists() or \
            "zombie" in pathlib.Path("/proc/%d/status" % pid).read_text()
    assert len(list(ops_network.home.open().query("SELECT * FROM readings"))) == 9


def test_doctor_warns_when_another_program_has_the_port(gateway_home, pty_pair):
    write_config(gateway_home, **{"serial = []": 'serial = ["%s"]' % pty_pair.path})
    holder = subprocess.Popen([sys.executable, "-c",
                               "import sys, time; f = open(sys.argv[1], 'rb'); "
                               "print('open', flush=True); time.sleep(60)", pty_pair.path],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout.readline() == b"open\n"
        result, lines = doctor_lines()
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    serial_line = [line for line in result.output.splitlines() if pty_pair.path in line][0]
    assert serial_line.startswith("WARN serial")
    assert "also open in pid %d" % holder.pid in serial_line and "ModemManager" in serial_line
