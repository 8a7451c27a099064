"""The check shared by check_timing.py and check_rates.py: a read costs the datasheet's time, within budget."""
from harness import check, elapsed_ms, setup

from firmware.drivers import Q_OK
from firmware.read_times import read_ms
from firmware.sim import bus


def read_takes_the_datasheet_time_and_fits_its_budget(cfg, world, least_ms):
    """A read takes at least least_ms (the datasheet) and at most firmware/read_times.py's budget,
    live and dead."""
    budget = read_ms(cfg)
    sensor, model = setup(cfg, world)
    if hasattr(model, "power_up"):
        # Powered up as the read starts (a rail switched for it): the part's start-up time, if
        # any, falls inside the read, not in the check's own set-up (a collection there made an
        # HX711 read 5 ms short).
        model.power_up()
    readings, ms = elapsed_ms(sensor.read)
    kind = cfg["type"]
    check(all(r[3] == Q_OK for r in readings), "%s ok: %r" % (kind, readings))
    check(ms >= least_ms, "%s read took %.1f ms, less than the datasheet's %.1f" % (kind, ms, least_ms))
    check(ms <= budget, "%s read took %.1f ms, over its %d ms budget" % (kind, ms, budget))
    bus.faults.add(cfg["name"])
    readings, ms = elapsed_ms(sensor.read)
    check(all(r[3] != Q_OK for r in readings), "%s dead: flagged %r" % (kind, readings))
    check(ms <= budget, "%s dead read took %.1f ms, over its %d ms budget" % (kind, ms, budget))
