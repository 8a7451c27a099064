"""Devices: provisioning ids and keys, and the site config file each board reads.

A device id (the COSE kid) is 4 random bytes and its key 32 random bytes
from `secrets`; both live in the devices table and in sites/NAME.json, the
file the volunteer flashes onto the board. Rotating a key rewrites that file
and the old key stops verifying at once (the writer reads keys from the
table on every batch that needs one). A retired device keeps its history
but its frames are rejected as "retired".
"""
import json
import os
import secrets
import time

from huaico.store import db

KID_BYTES = 4
KEY_BYTES = 32
_ID_TRIES = 16
_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


class DeviceError(ValueError):
    """A device command that cannot be done (names the device and why)."""


def _board(name):
    """The board module boards/NAME.py, from a checkout or from the wheel."""
    from huaico.devices import flash  # imported here: flash builds on this module

    try:
        return flash.load_board(name)
    except flash.FlashError as exc:
        raise DeviceError(str(exc)) from None


def _check_name(name):
    if not name or len(name) > 32 or not set(name) <= _NAME_CHARS:
        raise DeviceError("device name %r: use 1-32 letters, digits, '-' or '_'" % name)


def get(database, name):
    """The device row (a dict) named `name`; DeviceError when there is none."""
    rows = list(database.query("SELECT * FROM devices_live WHERE name = ?", [name]))
    if not rows:
        raise DeviceError("no device named %r (see `huaico device list`)" % name)
    return rows[0]


def all_devices(database):
    return list(database.query("SELECT * FROM devices_live ORDER BY name"))


def site_config(device, config):
    """The board's site config (firmware/config.py reads and checks it at
    boot) for a device row. Sensors start with the battery monitor only,
    which every board has; the volunteer adds the rest (see firmware/config.py)."""
    if device["transport"] == "mqtt":
        mqtt = config["mqtt"]
        # The firmware's defaults for MQTT (burst 8, 1 s per write) add up
        # to more than a Pico W's 8 s watchdog allows between feeds; these fit.
        transport = {"type": "mqtt", "ssid": "", "password": "",
                     "host": mqtt["host"], "port": mqtt["port"],
                     "io_timeout_ms": 250, "burst": 4}
    else:
        transport = {"type": "uart", "baud": config["ingest"]["baudrate"]}
    # The firmware's pacing (firmware/config.py): sleep until the next due event, no cap
    # but the watchdog's; report every 15 minutes in dry weather.
    sleep = {"mode": "light"}
    return {
        "device_id": device["id"],
        "key": device["key"],
        "board": device["board"],
        "name": device["name"],
        "site": device["site"],
        "lat": device["lat"],
        "lon": device["lon"],
        "signed": not device["allow_unsigned"],
        "sensors": [{"type": "battery", "name": "battery", "interval_s": 300}],
        "report_s": 900,
        "transport": transport,
        "sleep": sleep,
    }


def site_path(config, name):
    return config.sites_dir / (name + ".json")


def write_site_config(device, config):
    """Write sites/NAME.json atomically, readable by its owner only (it holds the key)."""
    path = site_path(config, device["name"])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(site_config(device, config), out, indent=2, sort_keys=True)
        out.write("\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    return path


def add(database, config, name, board, site, lat=None, lon=None, transport=None,
        allow_unsigned=False, place=None):
    """Provision a device: new id and key, a row, and its site config file.
    place is what residents read in its alerts (default: the site's)."""
    _check_name(name)
    board_module = _board(board)
    transport = transport or board_module.TRANSPORTS[0]
    if transport not in board_module.TRANSPORTS:
        raise DeviceError("board %s has no %s transport (it has %s)"
                          % (board, transport, ", ".join(board_module.TRANSPORTS)))
    if lat is not None and not -90 <= lat <= 90:
        raise DeviceError("latitude %r is outside -90..90" % lat)
    if lon is not None and not -180 <= lon <= 180:
        raise DeviceError("longitude %r is outside -180..180" % lon)
    if database.execute("SELECT 1 FROM devices WHERE name = ?", [name]).fetchone():
        raise DeviceError("a device named %r exists already" % name)
    for _ in range(_ID_TRIES):
        kid = secrets.token_hex(KID_BYTES)
        if not database.execute("SELECT 1 FROM devices WHERE id = ?", [kid]).fetchone():
            break
    else:
        raise DeviceError("could not find a free device id")
    device = {
        "id": kid, "name": name, "site": site, "board": board, "transport": transport,
        "lat": lat, "lon": lon, "key": secrets.token_hex(KEY_BYTES),
        "allow_unsigned": int(bool(allow_unsigned)), "retired": 0, "last_seq": None,
        "seq_window": 0, "last_seen": None, "battery_mv": None, "rssi": None,
        "created": time.time(), "place": place or None,
    }
    database["devices"].insert(device)
    write_site_config(device, config)
    return device


def rotate_key(database, config, name):
    """A new key for the device; its site file is rewritten, the old key is dead."""
    device = get(database, name)
    if device["retired"]:
        raise DeviceError("device %r is retired" % name)
    device["key"] = secrets.token_hex(KEY_BYTES)
    database.execute("UPDATE devices SET key = ? WHERE id = ?", [device["key"], device["id"]])
    # Sequence numbers are unique under one key: a new key starts them afresh.
    reset_sequence(database, name)
    write_site_config(device, config)
    return device


def reset_sequence(database, name):
    """Forget the device's sequence numbers and epochs (protocol/SPEC.md 1.3):
    its next frame starts a new replay window, and readings stored before now
    no longer make a frame with the same number a resend. For a board that
    lost its flash and counts again from a low number (refused as
    seq_reset). Returns the device as it was before."""
    with db.transaction(database):
        device = get(database, name)
        # The row takes what the readings after it said (last_seen, battery,
        # RSSI: huaico.store.db m010) and stops at them: the numbers those
        # readings carry are the ones being forgotten.
        database.execute(
            "UPDATE devices SET last_seq = NULL, seq_window = 0, epoch = NULL, old_epochs = '', "
            "seq_reset_at = ?, last_seen = ?, battery_mv = ?, rssi = ?, "
            "seen_rowid = (SELECT coalesce(max(rowid), 0) FROM readings) WHERE id = ?",
            [time.time(), device["last_seen"], device["battery_mv"], device["rssi"],
             device["id"]])
    return device


def retire(database, name):
    """Reject the device's frames from now on ("retired"); its readings stay."""
    device = get(database, name)
    database.execute("UPDATE devices SET retired = 1 WHERE id = ?", [device["id"]])
    device["retired"] = 1
    return device


def public(device, show_key=False):
    """The device row for display: the key only when asked for."""
    shown = dict(device)
    if not show_key:
        shown.pop("key", None)
    shown.pop("seq_window", None)
    return shown
