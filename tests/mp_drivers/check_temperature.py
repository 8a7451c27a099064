"""DS18B20 driver on the simulated board, under micropython: values within
resolution of bus.world, and a failed sensor flagged without an exception."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import board, check, dead_is_flagged, fresh, near, one, run, setup

from firmware import sensors
from firmware.drivers import Q_NO_RETURN, Q_OK
from firmware.sim import bus
from firmware.sim.devices import wire


def ds18b20():
    cfg = {"type": "ds18b20", "name": "wt", "interval_s": 60}
    sensor, model = setup(cfg, {"water_temp_c": 17.3125})
    code, index, value, q = one(sensor)
    check(code == 5 and q == Q_OK, "ds18b20 ok")
    near(value, 1731, 1, "ds18b20 cdegC")
    bus.world["water_temp_c"] = -3.5
    near(one(sensor)[2], -350, 0, "ds18b20 negative")
    dead_is_flagged(sensor, "wt")
    model.converting = True  # never finishes: bounded wait, flagged
    check(one(sensor)[3] == Q_NO_RETURN, "ds18b20 conversion timeout")


def ds18b20_by_rom_and_power_on():
    fresh({"water_temp_c": 10.0, "air_temp_c": 30.0})
    a = {"type": "ds18b20", "name": "w", "interval_s": 60, "rom": "28aa000000000001"}
    a["rom"] = a["rom"][:14] + "%02x" % _crc(a["rom"][:14])
    b = {"type": "ds18b20", "name": "a", "interval_s": 60, "output": "air_temp", "index": 1}
    models = wire(board, {"sensors": [a, b]})
    b["rom"] = "".join("%02x" % x for x in models["a"].rom)
    sw = sensors.make(board, a)
    sa = sensors.make(board, b)
    near(one(sw)[2], 1000, 1, "water by rom")
    r = one(sa)
    check(r[0] == 6 and r[1] == 1, "air channel, index 1")
    near(r[2], 3000, 1, "air by rom")
    models["w"].write = lambda byte: None  # never converts: keeps its 85.0 power-on value
    check(one(sw)[3] != Q_OK, "85.0 power-on value is suspect")


def _crc(hexdigits):
    from firmware.sim.onewire import _crc8_byte
    crc = 0
    for i in range(0, len(hexdigits), 2):
        crc = _crc8_byte(crc, int(hexdigits[i:i + 2], 16))
    return crc


run((
    (ds18b20, ()),
    (ds18b20_by_rom_and_power_on, ()),
))
