"""A station's site config edited from the CLI: sensors, local thresholds,
coordinates, key rotation and retirement, each change checked by the
firmware's own rules (firmware/config.py, through huaico.devices.flash) before the
file is written, so that no volunteer edits JSON by hand and no edit can
produce a file the board would refuse at boot.

sites/NAME.json is the truth for what a board carries (the gateway's
devices table holds its identity, key and place). Every change reads the
file, changes one thing, has the firmware check the whole result, and
replaces the file atomically; a refused change leaves it as it was.
"""
import json
import math
import os
import secrets
import time

from huaico.devices import flash, registry as devices
from huaico.store import db

# The distance beyond which a station is "far" from the rest of a network
# (a community network spans a valley, tens of km) and the one within which
# swapped coordinates would put it among them.
FAR_KM = 500.0
NEAR_KM = 100.0


class StationError(devices.DeviceError):
    """A station change refused; `problems` holds the firmware's lines, if any."""

    def __init__(self, message, problems=()):
        devices.DeviceError.__init__(self, message)
        self.problems = list(problems)


def read_site(config, device):
    """The site config as written (sites/NAME.json), or the one `device add`
    would write when the file is missing."""
    path = devices.site_path(config, device["name"])
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return devices.site_config(device, config)
    except ValueError as exc:
        raise StationError("%s is not valid JSON (%s); fix or remove it" % (path, exc)) from None


def check_site(device, site):
    """The firmware's objections to `site` as the board would get it."""
    return flash.validate_site(flash.board_site(device, site))


def require_valid(device, site):
    problems = check_site(device, site)
    if problems:
        raise StationError("the firmware would refuse this site config for %s: %s"
                           % (device["name"], "; ".join(problems)), problems)


def save_site(config, device, site):
    """Check `site` with the firmware's rules, then write it."""
    require_valid(device, site)
    return write_site(config, device, site)


def write_site(config, device, site):
    """Replace sites/NAME.json atomically, readable by its owner only (it
    holds the key)."""
    path = devices.site_path(config, device["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(site, out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path


# Sensors and local thresholds.

def parse_value(text):
    """A number when it reads as one, else the text (pin names, ROM ids)."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            continue
    return text


def add_sensor(config, database, name, sensor, replace=False):
    """Add (or, with replace, change) one sensor entry {type, name, ...}."""
    device = devices.get(database, name)
    site = read_site(config, device)
    sensors = site.setdefault("sensors", [])
    at = [i for i, entry in enumerate(sensors) if entry.get("name") == sensor["name"]]
    if at and not replace:
        raise StationError("%s has a sensor named %r already (change it with `device sensor "
                           "add --replace`)" % (name, sensor["name"]))
    if at:
        sensors[at[0]] = sensor
    else:
        sensors.append(sensor)
    return save_site(config, device, site)


def remove_sensor(config, database, name, sensor_name):
    """Remove a sensor and the local thresholds that watch it; returns how
    many thresholds went with it."""
    device = devices.get(database, name)
    site = read_site(config, device)
    kept = [entry for entry in site.get("sensors", []) if entry.get("name") != sensor_name]
    if len(kept) == len(site.get("sensors", [])):
        raise StationError("%s has no sensor named %r (see `huaico device sensor list %s`)"
                           % (name, sensor_name, name))
    site["sensors"] = kept
    thresholds = site.get("thresholds", [])
    site["thresholds"] = [rule for rule in thresholds if rule.get("sensor") != sensor_name]
    save_site(config, device, site)
    return len(thresholds) - len(site["thresholds"])


def set_threshold(config, database, name, threshold):
    """Add or replace the local threshold on (sensor, channel)."""
    device = devices.get(database, name)
    site = read_site(config, device)
    key = (threshold["sensor"], threshold["channel"])
    site["thresholds"] = [rule for rule in site.get("thresholds", [])
                          if (rule.get("sensor"), rule.get("channel")) != key] + [threshold]
    return save_site(config, device, site)


def remove_threshold(config, database, name, sensor_name, channel):
    device = devices.get(database, name)
    site = read_site(config, device)
    thresholds = site.get("thresholds", [])
    kept = [rule for rule in thresholds
            if (rule.get("sensor"), rule.get("channel")) != (sensor_name, channel)]
    if len(kept) == len(thresholds):
        raise StationError("%s has no local threshold on %s %s" % (name, sensor_name, channel))
    site["thresholds"] = kept
    return save_site(config, device, site)


# Place and identity.

def _km(a, b):
    """Great-circle distance in km between (lat, lon) pairs."""
    lat1, lon1, lat2, lon2 = map(math.radians, (a[0], a[1], b[0], b[1]))
    h = (math.sin((lat2 - lat1) / 2) ** 2
         + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2)
    return 6371.0 * 2 * math.asin(min(1.0, math.sqrt(h)))


def check_coordinates(database, lat, lon, exclude=None, far=False):
    """Refuse coordinates that are out of range or look swapped, with a hint.

    Out of range with the other order in range is a swap. Both orders in
    range (Lima: -12, -77 vs -77, -12) is caught against the network's other
    stations: given far from all of them while swapped lands among them."""
    mean = "did you mean --lat %s --lon %s?" % (lon, lat)
    if lat is not None and not -90 <= lat <= 90:
        raise StationError("latitude %s is outside -90..90%s"
                           % (lat, ": swapped? " + mean if lon is not None and -90 <= lon <= 90
                              else ""))
    if lon is not None and not -180 <= lon <= 180:
        raise StationError("longitude %s is outside -180..180" % lon)
    if (lat is None) != (lon is None):
        raise StationError("give --lat and --lon together")
    if lat is None:
        return
    if far or not -90 <= lon <= 90:
        return
    others = [(row["name"], (row["lat"], row["lon"])) for row in database.query(
        "SELECT name, lat, lon FROM devices WHERE lat IS NOT NULL AND lon IS NOT NULL "
        "AND retired = 0")
        if row["name"] != exclude]
    if not others:
        return
    given = min((_km((lat, lon), where), name) for name, where in others)
    swapped = min((_km((lon, lat), where), name) for name, where in others)
    if given[0] > FAR_KM and swapped[0] < NEAR_KM:
        raise StationError(
            "--lat %s --lon %s is %.0f km from the nearest station (%s) and %.0f km with the "
            "two swapped: %s (--far if it really is that far)"
            % (lat, lon, given[0], given[1], swapped[0], mean))


def edit(config, database, name, site=None, lat=None, lon=None, report_s=None, far=False,
         place=None):
    """Change a station's place, coordinates or report interval, in the
    devices table and its site file together; returns the fields changed.
    place (what residents read; "" for the site's) lives in the table only:
    the board never needs it."""
    device = devices.get(database, name)
    if lat is not None or lon is not None:
        check_coordinates(database, lat, lon, exclude=name, far=far)
    changes = {key: value for key, value in (("site", site), ("lat", lat), ("lon", lon))
               if value is not None}
    written = read_site(config, device)
    written.update(changes)
    if report_s is not None:
        written["report_s"] = report_s
    if not changes and report_s is None and place is None:
        raise StationError("nothing to change: give --site, --place, --lat/--lon or "
                           "--report-every")
    device.update(changes)
    require_valid(device, written)
    # Written inside the transaction (checked before it, so the write lock is
    # not held while the firmware's checks run): a failed write rolls the
    # table back, and the two never disagree.
    table = dict(changes, **({"place": place or None} if place is not None else {}))
    with db.transaction(database) as conn:
        if table:
            conn.execute("UPDATE devices SET %s WHERE id = ?"
                         % ", ".join("%s = ?" % key for key in table),
                         list(table.values()) + [device["id"]])
        write_site(config, device, written)
    return dict(table, **({"report_s": report_s} if report_s is not None else {}))


def rotate_key(config, database, name):
    """A new key; the site file keeps everything else (sensors, thresholds,
    transport). The board is blind until it is flashed with the new file."""
    device = devices.get(database, name)
    if device["retired"]:
        raise StationError("device %r is retired" % name)
    site = read_site(config, device)
    device["key"] = secrets.token_hex(devices.KEY_BYTES)
    site["key"] = device["key"]
    require_valid(device, site)
    with db.transaction(database) as conn:
        conn.execute("UPDATE devices SET key = ? WHERE id = ?", [device["key"], device["id"]])
        write_site(config, device, site)
    return device


def retire(database, name, now=None):
    """Retire a device, cancel its active alerts (no all-clear is sent: the
    danger was not seen to pass), cancel their undelivered messages and
    disable the rules written for it alone. Returns what was done."""
    now = time.time() if now is None else now
    device = devices.get(database, name)
    with db.transaction(database) as conn:
        alerts = [dict(zip(("id", "level", "rule_name"), row)) for row in conn.execute(
            "SELECT id, level, rule_name FROM alerts WHERE device_id = ? AND status = 'active' "
            "ORDER BY id", [device["id"]])]
        ids = [alert["id"] for alert in alerts]
        marks = ",".join("?" * len(ids))
        messages = 0
        if ids:
            conn.execute("UPDATE alerts SET status = 'cancelled', cleared = ? WHERE id IN (%s)"
                         % marks, [now] + ids)
            messages = conn.execute(
                "UPDATE outbox SET status = 'failed', last_error = 'cancelled: device retired' "
                "WHERE status = 'pending' AND alert_id IN (%s)" % marks, ids).rowcount
        conn.execute("DELETE FROM alert_state WHERE device_id = ?", [device["id"]])
        rules = [row[0] for row in conn.execute(
            "SELECT name FROM rules WHERE enabled = 1 AND device IN (?, ?) ORDER BY name",
            [device["name"], device["id"]])]
        conn.execute("UPDATE rules SET enabled = 0, updated = ? WHERE enabled = 1 AND "
                     "device IN (?, ?)", [now, device["name"], device["id"]])
        conn.execute("UPDATE devices SET retired = 1 WHERE id = ?", [device["id"]])
    return {"alerts": alerts, "messages_cancelled": messages, "rules_disabled": rules}
