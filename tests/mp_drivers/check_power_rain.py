"""A rain gauge whose reed pull-up is on a power group (firmware/power.py), under micropython:
every tip counted once while the pull-up's rail is held, shared and switched."""
import time

import harness  # noqa: F401 - installs the simulated machine first
from harness import board, check, fresh, run

from firmware import sensors
from firmware.power import Group
from firmware.sim.devices import wire

_PIN = 12  # free on the check's board (harness.Board.PINS)
RAIN = {"type": "rain_gauge", "name": "rain0", "interval_s": 60, "mm_per_tip": 0.2, "debounce_ms": 20,
        "power": "pullup"}


def _site(cfg, settle_ms):
    fresh()
    models = wire(board, {"power": {"pullup": {"pin": _PIN, "settle_ms": settle_ms}}, "sensors": [cfg]})
    power = Group(_PIN, 1, settle_ms)
    return sensors.make(board, cfg, power), models[cfg["name"]], power


def _tips(model, sensor, n):
    """n tips, each a bucket's closure and release bounce; the count the gauge then holds."""
    for _ in range(n):
        model.tip()
        time.sleep_ms(300)
    return sensor.pending()


def pullup_switching_is_no_tip():
    sensor, model, power = _site(RAIN, 0)
    rail = model.rail
    check(rail.powered and power.users == 1, "the gauge holds its pull-up's rail up")
    check(_tips(model, sensor, 5) == 5, "5 tips on the powered pull-up")
    # Another part on the same rail is read: the rail stays up, nothing is lost.
    for _ in range(10):
        power.up()
        power.down()
    check(rail.ups == 1 and rail.powered, "the rail never switched while the gauge holds it: %d ups" % rail.ups)
    check(_tips(model, sensor, 3) == 8, "tips between another part's reads all count")
    # The rail really switches: off, a tip nobody can see, on again. The pull-up going
    # off pulls the pin low, an edge like a closing reed: it must not count. (The handler runs
    # as a hard IRQ under micropython.heap_lock(), firmware/sim/io.py: it must not allocate.)
    power.down()
    check(not rail.powered and sensor.pending() == 8, "the rail's falling edge is no tip: %d" % sensor.pending())
    model.tip()
    check(sensor.pending() == 8, "a tip with the pull-up unpowered makes no edge")
    power.up()
    check(sensor.pending() == 8, "powering up again is no tip: %d" % sensor.pending())
    check(_tips(model, sensor, 4) == 12, "tips after the rail is back count once each: %d" % sensor.pending())


run((
    (pullup_switching_is_no_tip, ()),
))
