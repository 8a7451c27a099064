"""Time that things take, on the simulated board: the sensors' datasheet times count against the
watchdog (firmware/read_times.py, summed by firmware/config.py), and the whole firmware reads its
sensors on the board's clock, where a DS18B20, an HX711, a sonar and an accelerometer window cost
what their datasheets say (the device models in firmware/sim/devices charge it)."""
import pytest

from firmware import config
from tests.fixtures.firmware import run_sim, site_config

SLOW = [
    {"type": "rain_gauge", "name": "rain0", "interval_s": 60},
    {"type": "ds18b20", "name": "water", "interval_s": 60, "rom": "28aa000000000001"},
    {"type": "ds18b20", "name": "air", "interval_s": 60, "rom": "28aa000000000002", "output": "air_temp",
     "index": 1},
    {"type": "ultrasonic_level", "name": "sonar", "interval_s": 60, "mount_height_m": 5.0},
    {"type": "hx711", "name": "cell", "interval_s": 60, "scale": 2000.0},
]


def test_watchdog_budget_counts_each_sensors_datasheet_time():
    # Two DS18B20s (up to 1.6 s each with the retry), five pings (0.5 s), an HX711 at 10 SPS
    # (0.8 s) and the rain gauge: 4.75 s with 50 ms a read of bus work, where 500 ms a sensor
    # allowed 2.5 s, and the loop went over the Pico's 8 s watchdog.
    errors = config.check(site_config("pico", sensors=SLOW), sensor_check=False)
    budget = [e for e in errors if e.startswith("watchdog.timeout_ms")]
    assert budget and "sensors 4750" in budget[0], errors
    fewer = [s for s in SLOW if s["name"] not in ("air", "sonar")]
    assert config.check(site_config("pico", sensors=fewer), sensor_check=False) == []


@pytest.mark.parametrize("kind, least_ms", [("ds18b20", 750), ("hx711", 400 + 300), ("accel_adxl345", 310)])
def test_first_reading_waits_the_datasheet_time_on_the_board(kind, least_ms, tmp_path, compiled_runner):
    """Before the first frame the firmware waited out the sensor (board ticks, "ms")."""
    sensor = {"type": kind, "name": "s", "interval_s": 60}
    if kind == "hx711":
        sensor["scale"] = 2000.0
    site = site_config("pico", sensors=[{"type": "rain_gauge", "name": "rain0", "interval_s": 60}, sensor])
    scenario = {"duration_s": 20, "world": {"water_temp_c": 12.0, "load_kg": 1.0}}
    code, events, output = run_sim(tmp_path, site, scenario, speed=50, runner=compiled_runner)
    assert code == 0, output[-3000:]
    boot = [e for e in events if e["ev"] == "running"][0]
    frame = [e for e in events if e["ev"] == "frame"][0]
    # An HX711 converts from its power-up, the board's (ticks count from the first power-on), so
    # its settling overlaps the boot's flash writes; the others start when the firmware asks.
    origin = 0 if kind == "hx711" else boot["ms"]
    assert frame["ms"] - origin >= least_ms, (boot, frame)
    assert frame["ms"] - boot["ms"] <= least_ms + 1000, (boot, frame)
    assert not [e for e in events if e["ev"] == "board_reset"], output[-3000:]
    assert "sensor s:" not in output
