"""sensors.validate names every wrong field of a sensor entry, under micropython."""
import harness  # noqa: F401 - installs the simulated machine first
from harness import board, check, done

from firmware import sensors


def validate_names_the_problems():
    errors = sensors.validate(board, {"type": "ph", "name": "", "interval_s": 0, "index": 9,
                                      "calibration": [[1.0, 7.0], [1.0, 4.0]], "noise_v": "x"})
    text = "; ".join(errors)
    for word in ("name", "interval_s", "index", "two calibration points", "noise_v"):
        check(word in text, "validate names %r: %s" % (word, text))
    check(sensors.validate(board, {"type": "laser"})[0].startswith("sensor None: unknown type"), "unknown type")
    errors = sensors.validate(board, {"type": "ultrasonic_level", "name": "s", "interval_s": 5,
                                      "pins": {"echo": 99}})
    check(any("mount_height_m is required" in e for e in errors), "required number: %r" % errors)


def good_entries_pass():
    for cfg in ({"type": "rain_gauge", "name": "r", "interval_s": 60},
                {"type": "ph", "name": "p", "interval_s": 60, "calibration": [[1.5, 7.0]]},
                {"type": "hx711", "name": "h", "interval_s": 60, "scale": 2000.0, "output": "strain"}):
        check(sensors.validate(board, cfg) == [], "valid: %r" % (sensors.validate(board, cfg),))
    errors = sensors.validate(board, {"type": "battery", "name": "b", "interval_s": 60, "pins": {"battery": 3}})
    check(any("not ADC-capable" in e for e in errors), "ADC pin checked: %r" % errors)


validate_names_the_problems()
good_entries_pass()
done()
