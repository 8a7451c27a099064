"""`huaico device sensor | threshold | edit`: a station's site config from the
CLI, each change checked by the firmware's own rules (huaico.devices.stations)."""
import json

import click

from huaico.cli.common import home_option, open_home, user_errors
from huaico.devices import stations
from huaico.store import readings as readings_query

_user_errors = user_errors(stations.StationError, readings_query.QueryError)


def _pairs(values, what, separator="="):
    pairs = []
    for text in values:
        key, sep, value = text.partition(separator)
        if not sep or not key or not value:
            raise click.BadParameter("%r is not %s" % (text, what))
        pairs.append((key, stations.parse_value(value)))
    return pairs


def _seconds(span):
    seconds = readings_query.parse_span(span)
    if seconds != int(seconds) or seconds < 1:
        raise stations.StationError("%s: give whole seconds, 1s or more" % span)
    return int(seconds)


@click.group()
def sensor():
    """Declare a station's sensors: type, pins, calibration, interval.

    \b
    Example:
        huaico device sensor add rain-01 rain0 --type rain_gauge --every 1m
    """


@sensor.command("add")
@home_option
@click.argument("name")
@click.argument("sensor_name", metavar="SENSOR")
@click.option("--type", "kind", required=True,
              help="Sensor type: rain_gauge, ultrasonic_level, pressure_level_ma, ds18b20, ph, "
                   "turbidity, soil_moisture, accel_adxl345, hx711, ... (the firmware names "
                   "them all when given one it does not know).")
@click.option("--every", "interval", default="60s", show_default=True, metavar="SPAN",
              help="How often to sample it (30s, 5m).")
@click.option("--pin", "pins", multiple=True, metavar="ROLE=PIN",
              help="A pin by its role (rain=2, trigger=14, echo=15, adc0=26, i2c0=0); "
                   "the board file's pin is used for roles not given.")
@click.option("--index", type=click.IntRange(0, 7), default=0, show_default=True,
              help="Which sensor of its quantity on this board.")
@click.option("--calibration", "points", multiple=True, metavar="VOLTS:VALUE",
              help="A calibration point (up to 3), e.g. --calibration 1.5:4.0 "
                   "--calibration 2.0:7.0 for pH 4 and 7 buffers.")
@click.option("--set", "params", multiple=True, metavar="KEY=VALUE",
              help="Another parameter of the driver (mm_per_tip=0.2, mount_height_m=3.5).")
@click.option("--replace", is_flag=True, help="Change the sensor of that name if it exists.")
@_user_errors
def sensor_add(home, name, sensor_name, kind, interval, pins, index, points, params, replace):
    """Add a sensor to a station's site config, checked by the firmware's rules.

    Flash the board afterwards (`huaico flash NAME`): the site file changes,
    the board does not until then.

    \b
    Example:
        huaico device sensor add rio-01 level0 --type ultrasonic_level \\
            --pin trigger=14 --pin echo=15 --set mount_height_m=3.5 --every 30s
        huaico device sensor add lago-02 ph0 --type ph --pin adc0=26 \\
            --calibration 1.50:4.0 --calibration 2.03:7.0
    """
    config, database = open_home(home)
    entry = {"type": kind, "name": sensor_name, "interval_s": _seconds(interval)}
    if index:
        entry["index"] = index
    if pins:
        entry["pins"] = dict(_pairs(pins, "ROLE=PIN"))
    if points:
        entry["calibration"] = [[stations.parse_value(volts), value] for volts, value in
                                _pairs(points, "VOLTS:VALUE", ":")]
    for key, value in _pairs(params, "KEY=VALUE"):
        if key in ("type", "name", "interval_s", "pins", "calibration", "index"):
            raise stations.StationError("--set %s: that one has an option of its own" % key)
        entry[key] = value
    path = stations.add_sensor(config, database, name, entry, replace=replace)
    click.echo("%s sensor %s (%s) on %s; site file %s: flash the board to apply it"
               % ("set" if replace else "added", sensor_name, kind, name, path))


@sensor.command("remove")
@home_option
@click.argument("name")
@click.argument("sensor_name", metavar="SENSOR")
@_user_errors
def sensor_remove(home, name, sensor_name):
    """Remove a sensor (and the local thresholds that watch it).

    \b
    Example:
        huaico device sensor remove rain-01 batt
    """
    config, database = open_home(home)
    gone = stations.remove_sensor(config, database, name, sensor_name)
    click.echo("removed sensor %s from %s%s: flash the board to apply it" % (
        sensor_name, name, " and %d local threshold%s" % (gone, "" if gone == 1 else "s")
        if gone else ""))


@sensor.command("list")
@home_option
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The sensors and thresholds as JSON.")
@_user_errors
def sensor_list(home, name, as_json):
    """A station's sensors and local thresholds, as its site file holds them.

    \b
    Example:
        huaico device sensor list rain-01
    """
    from huaico.devices import registry as devices

    config, database = open_home(home)
    site = stations.read_site(config, devices.get(database, name))
    sensors, thresholds = site.get("sensors", []), site.get("thresholds", [])
    if as_json:
        click.echo(json.dumps({"sensors": sensors, "thresholds": thresholds}, indent=2))
        return
    rows = [("SENSOR", "TYPE", "EVERY", "PINS", "SETTINGS")]
    for entry in sensors:
        settings = {key: value for key, value in entry.items()
                    if key not in ("name", "type", "interval_s", "pins")}
        rows.append((entry.get("name", "?"), entry.get("type", "?"),
                     "%ss" % entry.get("interval_s", "?"),
                     " ".join("%s=%s" % item for item in sorted(entry.get("pins", {}).items()))
                     or "board's", " ".join("%s=%s" % (key, json.dumps(value))
                                            for key, value in sorted(settings.items())) or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    click.echo("local thresholds:" + ("" if thresholds else " none"))
    for rule in thresholds:
        click.echo("  %s %s %s %s: report every %ss%s" % (
            rule.get("sensor"), rule.get("channel"), "above" if "above" in rule else "below",
            rule.get("above", rule.get("below")), rule.get("report_s"),
            ", clears at %s" % rule["clear"] if "clear" in rule else ""))


@click.group()
def threshold():
    """Local thresholds: the board reports at once and more often while one holds.

    \b
    Example:
        huaico device threshold set rain-01 rain0 rain --above 2 --report-every 30s
    """


@threshold.command("set")
@home_option
@click.argument("name")
@click.argument("sensor_name", metavar="SENSOR")
@click.argument("channel")
@click.option("--above", type=float, help="Holds while the value is above this (channel unit).")
@click.option("--below", type=float, help="Holds while the value is below this.")
@click.option("--clear", type=float, help="Stops holding only past this value (hysteresis).")
@click.option("--report-every", required=True, metavar="SPAN",
              help="How often to report while it holds (30s, 1m).")
@_user_errors
def threshold_set(home, name, sensor_name, channel, above, below, clear, report_every):
    """Set the local threshold of a station's sensor on one channel.

    \b
    Example:
        huaico device threshold set rio-01 level0 water_level --above 2.5 --report-every 30s
    """
    if (above is None) == (below is None):
        raise stations.StationError("give one of --above or --below")
    rule = {"sensor": sensor_name, "channel": channel, "report_s": _seconds(report_every)}
    rule["above" if above is not None else "below"] = above if above is not None else below
    if clear is not None:
        rule["clear"] = clear
    config, database = open_home(home)
    stations.set_threshold(config, database, name, rule)
    click.echo("set threshold on %s %s of %s: flash the board to apply it"
               % (sensor_name, channel, name))


@threshold.command("remove")
@home_option
@click.argument("name")
@click.argument("sensor_name", metavar="SENSOR")
@click.argument("channel")
@_user_errors
def threshold_remove(home, name, sensor_name, channel):
    """Remove a station's local threshold.

    \b
    Example:
        huaico device threshold remove rio-01 level0 water_level
    """
    config, database = open_home(home)
    stations.remove_threshold(config, database, name, sensor_name, channel)
    click.echo("removed threshold on %s %s of %s" % (sensor_name, channel, name))


@click.command("edit")
@home_option
@click.argument("name")
@click.option("--site", help="Where the board is, in words.")
@click.option("--place", help="The place residents read in its alerts (\"\": the site's).")
@click.option("--lat", type=float, help="Latitude in degrees (with --lon).")
@click.option("--lon", type=float, help="Longitude in degrees (with --lat).")
@click.option("--report-every", metavar="SPAN", help="How often the board reports (5m).")
@click.option("--far", is_flag=True,
              help="Accept coordinates far from every other station of the network.")
@_user_errors
def edit(home, name, site, place, lat, lon, report_every, far):
    """Change a station's place, coordinates or report interval.

    Coordinates out of range, or that look swapped (far from every other
    station while swapped they are among them), are refused with a hint.

    \b
    Example:
        huaico device edit rain-01 --site "Quebrada Alta, km 3" --lat -11.93 --lon -76.69
    """
    config, database = open_home(home)
    changed = stations.edit(config, database, name, site=site, place=place, lat=lat, lon=lon,
                            report_s=None if report_every is None else _seconds(report_every),
                            far=far)
    click.echo("changed %s: %s; flash the board to give it the new site file" % (
        name, ", ".join("%s=%s" % item for item in changed.items())))


def register(main):
    """Add these under `huaico device` (made by huaico.cli.core)."""
    device = main.commands["device"]
    device.add_command(sensor)
    device.add_command(threshold)
    device.add_command(edit)
