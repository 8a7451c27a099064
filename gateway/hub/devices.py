"""Device keys in one place: provisioned at the hub, exported to the gateways.

A city provisions every board once, at the hub (`huaico hub device add`):
the hub's devices table is where ids and keys are made. A gateway gets the
keys of its own boards through an explicit file (`huaico hub device export
NAME... -o FILE`, then `huaico device import FILE` on the gateway), so a key
is typed nowhere and exists in exactly the places that must verify it. The
file holds keys in clear, like a site file: it is written 0600 and should
travel over SSH (scp), never by mail.

Import is idempotent: a device the gateway has with the same id and key is
left alone, one whose key the hub rotated gets the new key (and its site
file is rewritten), a new one is inserted with its site file. A name that
the gateway uses for another id is refused: two boards cannot share a name.
"""
import json
import os
import secrets
import time

from huaico.devices import registry as devices

FORMAT = "huaico-device-keys/1"
FIELDS = ("id", "name", "site", "board", "transport", "lat", "lon", "key", "allow_unsigned")


class KeysFileError(ValueError):
    """A keys file that cannot be imported (names the device or field)."""


def add(conn, name, board, site, lat=None, lon=None, transport=None, allow_unsigned=False):
    """Provision a device at the hub: a new id and key in the hub's devices table."""
    devices._check_name(name)
    board_module = devices._board(board)
    transport = transport or board_module.TRANSPORTS[0]
    if transport not in board_module.TRANSPORTS:
        raise devices.DeviceError("board %s has no %s transport (it has %s)"
                                  % (board, transport, ", ".join(board_module.TRANSPORTS)))
    with conn.transaction():
        cur = conn.cursor()
        cur.execute("SELECT 1 FROM devices WHERE name = %s", [name])
        if cur.fetchone():
            raise devices.DeviceError("a device named %r exists already" % name)
        device = {"id": secrets.token_hex(devices.KID_BYTES), "name": name, "site": site,
                  "board": board, "transport": transport, "lat": lat, "lon": lon,
                  "key": secrets.token_hex(devices.KEY_BYTES),
                  "allow_unsigned": bool(allow_unsigned), "created": time.time()}
        cur.execute("INSERT INTO devices (id, name, site, board, transport, lat, lon, key, "
                    "allow_unsigned, created) VALUES (%(id)s, %(name)s, %(site)s, %(board)s, "
                    "%(transport)s, %(lat)s, %(lon)s, %(key)s, %(allow_unsigned)s, %(created)s)",
                    device)
    return device


def export(conn, names):
    """The keys document for these device names (all devices when names is empty)."""
    cur = conn.cursor()
    cur.execute("SELECT %s FROM devices WHERE NOT retired ORDER BY name" % ", ".join(FIELDS))
    rows = [dict(zip(FIELDS, row)) for row in cur.fetchall()]
    if names:
        known = {row["name"] for row in rows}
        missing = [name for name in names if name not in known]
        if missing:
            raise devices.DeviceError("no device named %s at the hub" % ", ".join(missing))
        rows = [row for row in rows if row["name"] in names]
    return {"format": FORMAT, "exported": time.time(), "devices": rows}


def write(path, document):
    """The document to `path`, created 0600 (it holds keys)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        json.dump(document, out, indent=1, sort_keys=True)
        out.write("\n")


def read(path):
    try:
        with open(path, encoding="utf-8") as source:
            document = json.load(source)
    except (OSError, ValueError) as exc:
        raise KeysFileError("cannot read keys file %s: %s" % (path, exc)) from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise KeysFileError("%s is not a %s file" % (path, FORMAT))
    for entry in document.get("devices", []):
        for field in ("id", "name", "key", "board"):
            if not isinstance(entry.get(field), str):
                raise KeysFileError("%s: device %r has no %s" % (path, entry.get("name"), field))
        try:
            if len(bytes.fromhex(entry["key"])) != devices.KEY_BYTES:
                raise ValueError
            bytes.fromhex(entry["id"])
        except ValueError:
            raise KeysFileError("%s: device %s: id or key is not hex of the right length"
                                % (path, entry["name"])) from None
    return document


def import_keys(database, config, document):
    """Apply a keys document to the gateway's SQLite database; returns
    [(name, "added" / "key updated" / "unchanged")]."""
    done = []
    for entry in document["devices"]:
        devices._check_name(entry["name"])
        by_id = database.execute("SELECT name, key FROM devices WHERE id = ?",
                                 [entry["id"]]).fetchone()
        by_name = database.execute("SELECT id FROM devices WHERE name = ?",
                                   [entry["name"]]).fetchone()
        if by_name is not None and by_name[0] != entry["id"]:
            raise KeysFileError("device %s is id %s here but %s at the hub: retire or rename "
                                "the gateway's one first" % (entry["name"], by_name[0],
                                                             entry["id"]))
        if by_id is not None and by_id[1] == entry["key"]:
            done.append((entry["name"], "unchanged"))
            continue
        if by_id is not None:
            database.execute("UPDATE devices SET key = ? WHERE id = ?",
                             [entry["key"], entry["id"]])
            # As `huaico device rotate-key`: a new key starts numbers afresh.
            devices.reset_sequence(database, entry["name"])
            done.append((entry["name"], "key updated"))
        else:
            database["devices"].insert({
                "id": entry["id"], "name": entry["name"], "site": entry.get("site") or "",
                "board": entry["board"], "transport": entry.get("transport") or "uart",
                "lat": entry.get("lat"), "lon": entry.get("lon"), "key": entry["key"],
                "allow_unsigned": int(bool(entry.get("allow_unsigned"))), "retired": 0,
                "seq_window": 0, "created": time.time()})
            done.append((entry["name"], "added"))
        devices.write_site_config(devices.get(database, entry["name"]), config)
    return done
