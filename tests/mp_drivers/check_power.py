"""Power groups (firmware/power.py) on the simulated board, under micropython: parts on a
switched rail answer only while it is on and settled, and drivers power them for each read.
(The rain gauge's switched pull-up and the MPU6050's start-up: check_power_rain.py and
check_power_imu.py, each a process of its own for the heap.)"""
import harness  # noqa: F401 - installs the simulated machine first
from harness import board, check, fresh, run

from firmware import sensors
from firmware.drivers import Q_OK
from firmware.power import Group
from firmware.sim import bus
from firmware.sim.devices import wire

_PIN = 12  # free on the check's board (harness.Board.PINS)
LOOP = {"type": "pressure_level_ma", "name": "loop", "interval_s": 60, "range_m": 5.0, "power": "probe"}


def _site(cfg, group, settle_ms, on=1):
    fresh({"water_level_m": 1.25, "vibration_rms_ms2": 0.5})
    models = wire(board, {"power": {group: {"pin": _PIN, "on": on, "settle_ms": settle_ms}}, "sensors": [cfg]})
    power = Group(_PIN, on, settle_ms)
    return sensors.make(board, cfg, power), models[cfg["name"]], power


def a_part_is_powered_only_for_its_read():
    sensor, model, power = _site(LOOP, "probe", 20)
    rail = model.rail
    check(not rail.powered, "off until read")
    for k in range(3):
        code, index, value, quality = sensor.read()[0]
        check(quality == Q_OK and abs(value - 1250) <= 20, "loop reading %r" % ((code, index, value, quality),))
        check(not rail.powered and rail.ups == k + 1, "off again after read %d (ups %d)" % (k, rail.ups))
    check(rail.since_us < rail.off_us and rail.off_us - rail.since_us >= 20000,
          "the settle time was spent powered: %d us" % (rail.off_us - rail.since_us))


def an_unpowered_loop_reads_the_floor():
    sensor, model, power = _site(LOOP, "probe", 20)
    sensor.power = None  # read without powering: the ADC sees the unpowered loop
    code, index, value, quality = sensor.read()[0]
    check(quality != Q_OK, "an unpowered 4-20 mA loop reads the floor, flagged: %r" % (quality,))


def active_low_groups_switch_the_right_way():
    sensor, model, power = _site(LOOP, "probe", 20, on=0)
    check(not model.rail.powered, "a P-MOSFET's gate high: off")
    check(sensor.read()[0][3] == Q_OK and not model.rail.powered, "on for the read at level 0, off after")


run((
    (a_part_is_powered_only_for_its_read, ()),
    (an_unpowered_loop_reads_the_floor, ()),
    (active_low_groups_switch_the_right_way, ()),
))
