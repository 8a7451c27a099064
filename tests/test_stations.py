"""A station from the CLI on a real data directory, every change checked by
the real firmware/config.py: sensors, local thresholds, rotate-key keeping
everything but the key, retire cancelling alerts and rules (on a network fed
through the real writer and rule engine), edit and coordinate checks."""
import json

from click.testing import CliRunner

from huaico.cli.main import main
from huaico.devices import registry as devices
from huaico.store import db


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args],
                              catch_exceptions=False)


def ok(*args):
    result = invoke(*args)
    assert result.exit_code == 0, result.stdout + result.stderr
    return result


def refused(*args):
    result = invoke(*args)
    assert result.exit_code == 1, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    return lines[0]


def _site(home, name):
    return json.loads((home.path / "sites" / (name + ".json")).read_text())


def test_sensors_and_thresholds_from_the_cli_checked_by_the_firmware(gateway_home):
    gateway_home.add("rio-01")
    ok("device", "sensor", "add", "rio-01", "rain0", "--type", "rain_gauge", "--every", "1m",
       "--set", "mm_per_tip=0.2")
    ok("device", "sensor", "add", "rio-01", "level0", "--type", "ultrasonic_level",
       "--pin", "trigger=14", "--pin", "echo=15", "--set", "mount_height_m=3.5",
       "--every", "30s")
    ok("device", "sensor", "add", "rio-01", "ph0", "--type", "ph", "--pin", "adc0=26",
       "--calibration", "1.50:4.0", "--calibration", "2.03:7.0")
    ok("device", "threshold", "set", "rio-01", "level0", "water_level", "--above", "2.5",
       "--report-every", "30s")
    site = _site(gateway_home, "rio-01")
    by_name = {entry["name"]: entry for entry in site["sensors"]}
    assert by_name["rain0"] == {"type": "rain_gauge", "name": "rain0", "interval_s": 60,
                                "mm_per_tip": 0.2}
    assert by_name["level0"]["pins"] == {"trigger": 14, "echo": 15}
    assert by_name["ph0"]["calibration"] == [[1.5, 4.0], [2.03, 7.0]]
    assert site["thresholds"] == [{"sensor": "level0", "channel": "water_level", "above": 2.5,
                                   "report_s": 30}]
    before = (gateway_home.path / "sites" / "rio-01.json").read_bytes()
    # The firmware's own checks, word for word, and the file untouched.
    line = refused("device", "sensor", "add", "rio-01", "level1", "--type", "ultrasonic_level")
    assert "sensor 'level1': mount_height_m is required" in line
    line = refused("device", "sensor", "add", "rio-01", "x", "--type", "rain_gauge",
                   "--pin", "rain=2", "--set", "mm_per_tip=50")
    assert "mm_per_tip must be a number in 0.01..10.0, not 50" in line
    assert "unknown type 'radar'" in refused("device", "sensor", "add", "rio-01", "r",
                                             "--type", "radar")
    assert "is not a configured sensor name" in refused(
        "device", "threshold", "set", "rio-01", "nope", "rain", "--above", "1",
        "--report-every", "30s")
    assert (gateway_home.path / "sites" / "rio-01.json").read_bytes() == before
    listed = ok("device", "sensor", "list", "rio-01").stdout
    assert "level0   ultrasonic_level  30s    echo=15 trigger=14  mount_height_m=3.5" in listed
    assert "level0 water_level above 2.5: report every 30s" in listed
    # Removing a sensor takes its thresholds along.
    assert "and 1 local threshold" in ok("device", "sensor", "remove", "rio-01",
                                         "level0").stdout
    assert _site(gateway_home, "rio-01")["thresholds"] == []


def test_rotate_key_keeps_the_whole_site_but_the_key_and_warns(gateway_home):
    gateway_home.add("rain-01")
    ok("device", "sensor", "add", "rain-01", "rain0", "--type", "rain_gauge")
    ok("device", "threshold", "set", "rain-01", "rain0", "rain", "--above", "2",
       "--report-every", "30s")
    before = _site(gateway_home, "rain-01")
    result = ok("device", "rotate-key", "rain-01")
    assert "blind until reflashed" in result.stderr and "huaico flash rain-01" in result.stderr
    after = _site(gateway_home, "rain-01")
    assert after["key"] != before["key"]
    assert devices.get(gateway_home.open(), "rain-01")["key"] == after["key"]
    after["key"] = before["key"]
    assert after == before


def test_retire_cancels_its_alerts_and_disables_its_rules(ops_network):
    home = ops_network.home
    database = home.open()
    river = devices.get(database, "river-02")
    active = database.execute("SELECT id FROM alerts WHERE device_id = ? AND status = 'active'",
                              [river["id"]]).fetchall()
    assert len(active) == 1
    result = ok("device", "retire", "river-02")
    assert result.stdout.splitlines() == [
        "retired river-02",
        "  cancelled alert #%d WATCH river-high (no all-clear sent)" % active[0][0],
        "  cancelled 1 undelivered message of those alerts",
        "  disabled rule river-high (`huaico rules edit NAME --enable` to turn one back on)"]
    assert database.execute("SELECT status FROM alerts WHERE id = ?", active[0]).fetchone()[0] \
        == "cancelled"
    assert database.execute("SELECT enabled FROM rules WHERE name = 'river-high'"
                            ).fetchone()[0] == 0
    assert database.execute("SELECT count(*) FROM alert_state WHERE device_id = ?",
                            [river["id"]]).fetchone()[0] == 0
    assert database.execute("SELECT count(*) FROM outbox WHERE alert_id = ? AND status = "
                            "'pending'", active[0]).fetchone()[0] == 0
    assert "0 active alerts" in ok("status").stdout.splitlines()[0]


def test_edit_and_coordinates_refused_with_a_hint(gateway_home):
    ok("device", "add", "quebrada-alta", "--board", "pico", "--site", "Quebrada Alta",
       "--lat", "-11.93", "--lon", "-76.69")
    line = refused("device", "add", "q2", "--board", "pico", "--site", "s", "--lat", "-76.69",
                   "--lon", "-11.95")
    assert "2 km with the two swapped: did you mean --lat -11.95 --lon -76.69?" in line
    assert "latitude -176.69 is outside -90..90: swapped? did you mean --lat -11.95 " \
           "--lon -176.69?" in refused(
        "device", "add", "q2", "--board", "pico", "--site", "s", "--lat", "-176.69",
        "--lon", "-11.95")
    changed = ok("device", "edit", "quebrada-alta", "--site", "Quebrada Alta km 3", "--lat",
                 "-11.94", "--lon", "-76.70", "--report-every", "5m").stdout
    assert changed.startswith("changed quebrada-alta: site=Quebrada Alta km 3, lat=-11.94, "
                              "lon=-76.7, report_s=300")
    site = _site(gateway_home, "quebrada-alta")
    assert (site["site"], site["lat"], site["lon"], site["report_s"]) == (
        "Quebrada Alta km 3", -11.94, -76.7, 300)
    row = devices.get(db.open_db(gateway_home.config.database_path), "quebrada-alta")
    assert (row["site"], row["lat"], row["lon"]) == ("Quebrada Alta km 3", -11.94, -76.7)
    ok("device", "add", "antarctica", "--board", "pico", "--site", "base", "--lat", "-76.69",
       "--lon", "-11.95", "--far")
    assert "must be whole seconds 1..86400" in refused("device", "edit", "quebrada-alta",
                                                       "--report-every", "3d")


def test_a_device_place_is_what_residents_read_and_stays_off_the_board(gateway_home):
    ok("device", "add", "pluvio-alto", "--board", "pico", "--site", "Quebrada Alta",
       "--place", "Quebrada Alta, km 3")
    row = devices.get(db.open_db(gateway_home.config.database_path), "pluvio-alto")
    assert row["place"] == "Quebrada Alta, km 3"
    assert "place" not in _site(gateway_home, "pluvio-alto")  # the firmware never needs it
    changed = ok("device", "edit", "pluvio-alto", "--place", "Quebrada Alta, colegio").stdout
    assert changed.startswith("changed pluvio-alto: place=Quebrada Alta, colegio")
    assert "place" not in _site(gateway_home, "pluvio-alto")
    ok("device", "edit", "pluvio-alto", "--place", "")  # back to the site's
    row = devices.get(db.open_db(gateway_home.config.database_path), "pluvio-alto")
    assert row["place"] is None
