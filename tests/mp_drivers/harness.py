"""Installs the simulated board for a driver check script run by the real micropython.

    micropython -X heapsize=102400 tests/mp_drivers/check_x.py

Puts the repository on sys.path, makes firmware/sim's peripherals (the
simulated machine in this process) and `onewire` the ones drivers import,
makes `time` the board's virtual clock (board_time.py: busy time is real,
a sleep only moves the clock) and the device models follow it, so a
DS18B20's 750 ms conversion costs the check nothing and `elapsed_ms` tells
what a read took on the board; and gives a board with every pin role the drivers use. `check` counts
failures; `done()` prints "N passed, M failed" and exits 1 on a failure.
"""
import sys

ROOT = "/".join(sys.argv[0].split("/")[:-3]) or "."
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import board_time  # noqa: E402
from firmware.sim import hwclock  # noqa: E402

sys.modules["time"] = board_time
sys.modules["utime"] = board_time
hwclock.follow(board_time.now_us)

import firmware.sim.peripherals as machine  # noqa: E402
sys.modules["machine"] = machine
# The simulated peripherals are the simulator's code, silicon on a board:
# load them all before any driver, so they sit below the board's share of
# the heap instead of splitting it when a check first names an ADC.
for _name in ("ADC", "I2C", "UART"):
    getattr(machine, _name)
import firmware.sim.onewire as onewire  # noqa: E402
sys.modules["onewire"] = onewire

import random  # noqa: E402

from firmware.sim import bus  # noqa: E402

random.seed(4)


class Board:
    NAME = "sim"
    PINS = {"rain": 15, "trigger": 16, "echo": 17, "onewire": 18, "i2c0": 0, "adc0": 26,
            "adc1": 27, "hx711_sck": 20, "hx711_dt": 21, "battery": 28}
    I2C = {0: (5, 4), 1: (7, 6)}
    ADC_PINS = (26, 27, 28, 29)
    ADC_VREF = 3.3


board = Board()
_tally = [0, 0]


def check(ok, what):
    if ok:
        _tally[0] += 1
    else:
        _tally[1] += 1
        print("FAIL", what)


def near(value, want, tol, what):
    check(abs(value - want) <= tol, "%s: %r not within %r of %r" % (what, value, tol, want))


def fresh(world=None):
    """A new board's wiring and world."""
    bus.reset()
    if world:
        bus.world.update(world)


def done():
    print("%d passed, %d failed" % (_tally[0], _tally[1]))
    sys.exit(1 if _tally[1] else 0)


def _forget_models():
    """Unload the device models of the last case: they are the simulator's, not the board's heap
    (on a board they are silicon), while the drivers stay loaded as on a board with those sensors."""
    import firmware.sim.devices as devices
    for name in list(sys.modules):
        if name.startswith("firmware.sim.devices."):
            del sys.modules[name]
            leaf = name[len("firmware.sim.devices."):]
            if hasattr(devices, leaf):
                delattr(devices, leaf)


def run(cases):
    """Run (function, args) cases, each after a collection (and with the last
    case's device models unloaded), an exception counting as a failure; then
    report and exit as done() does."""
    import gc
    for test, args in cases:
        _forget_models()
        gc.collect()
        try:
            test(*args)
        except Exception as exc:
            sys.print_exception(exc)
            check(False, "%s%r raised %r" % (test.__name__, args, exc))
    done()


def setup(cfg, world, on=board):
    """The sensor for one config entry on a fresh board (`on`), and its device model."""
    from firmware import sensors
    from firmware.sim.devices import wire
    fresh(world)
    models = wire(on, {"sensors": [cfg]})
    errors = sensors.validate(on, cfg)
    check(not errors, "%s validates: %r" % (cfg["name"], errors))
    return sensors.make(on, cfg), models[cfg["name"]]


def elapsed_ms(fn, *args):
    """(what fn(*args) returned, the board's milliseconds it took)."""
    start = board_time.now_us()
    out = fn(*args)
    return out, (board_time.now_us() - start) / 1000


def one(sensor):
    readings = sensor.read()
    check(len(readings) == 1, "one reading: %r" % (readings,))
    return readings[0]


def dead_is_flagged(sensor, name, reads=2):
    """A failed sensor gives flagged readings, never an exception."""
    bus.faults.add(name)
    for _ in range(reads):
        for reading in sensor.read():
            check(reading[3] != 0, "%s dead: flagged, got %r" % (name, reading))
    bus.faults.discard(name)
