"""The gateway's core commands: `huaico init`, `huaico run` and `huaico device ...`.

Each command is a thin call into config, db, devices or service; user errors
come out as one-line click.ClickException messages, never tracebacks.
"""
import json
import time

import click

from huaico import config as config_mod
from huaico.cli.common import (for_json, home_option, hub_option, local_time, open_home,
                                open_reader, user_errors)
from huaico.devices import registry as devices, stations
from huaico.hub import reader as hub_reader
from huaico.service import datalock, process as service, runner
from huaico.store import db

_user_errors = user_errors(devices.DeviceError, service.ServiceError, datalock.LockedError)


@click.command()
@home_option
@click.option("--force", is_flag=True, help="Overwrite an existing huaico.toml with the defaults.")
@_user_errors
def init(home, force):
    """Create the data directory, a commented huaico.toml and the database.

    Safe to run again: it never overwrites an existing config without --force,
    and it only applies database migrations not yet applied.

    \b
    Example:
        huaico init --home /var/lib/huaico
    """
    path, written = config_mod.write_default(home, force=force)
    click.echo(("wrote %s" if written else "kept %s (use --force to overwrite)") % path)
    config = config_mod.load(home)
    config.sites_dir.mkdir(parents=True, exist_ok=True)
    database = db.open_db(config.database_path)
    applied = db.migrate(database)
    database.conn.close()
    click.echo("database %s: %s" % (config.database_path,
                                    "applied " + ", ".join(applied) if applied else "up to date"))


@click.command()
@home_option
@click.option("--serial", "serial_urls", multiple=True, metavar="URL",
              help="Serial port as a pyserial URL (repeat for several); replaces ingest.serial.")
@click.option("--udp", metavar="HOST:PORT", help="UDP listen address; replaces ingest.udp.")
@click.option("--log-format", type=click.Choice(service.LOG_FORMATS), default="kv",
              show_default=True, help="key=value lines or JSON lines on stderr.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              help="Overrides gateway.log.")
@click.option("--status-every", type=float, default=10.0, show_default=True, metavar="SECONDS",
              help="How often to print the status line (and publish counters).")
@click.option("--once", is_flag=True, help="Stop once nothing has arrived for a second.")
@click.option("--for", "duration", type=float, metavar="SECONDS", help="Stop after this long.")
@click.option("--no-rules", is_flag=True,
              help="Store and ack only: no rules, no alerts (a relay or a bench set-up).")
@click.option("--metrics", metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics; replaces "
                   "metrics.listen.")
@_user_errors
def run(home, serial_urls, udp, log_format, log_level, status_every, once, duration, no_rules,
        metrics):
    """Run the gateway: read frames, store them, ack them, run rules, send alerts.

    Stops cleanly on SIGTERM or Ctrl-C: readers stop, queued frames are
    committed and acked, then it exits. One gateway per data directory: a
    second `run` on the same one refuses, naming the first's pid. Database
    migrations of a newer huaico are applied at start and logged
    (event=migrated). Under systemd (Type=notify) it reports ready and feeds
    the watchdog while its writer makes progress.

    \b
    Example:
        huaico run --serial /dev/ttyUSB0 --serial /dev/ttyACM0 --udp 0.0.0.0:5683
        huaico run --metrics 127.0.0.1:9464
    """
    config = config_mod.load(home)
    service.setup_logging(log_level or config["gateway"]["log"], log_format)
    if not config.database_path.exists():
        raise click.ClickException("no database at %s: run `huaico init` first"
                                   % config.database_path)
    runner.run(config, duration=duration, once=once, serial_urls=list(serial_urls) or None,
               udp=udp, status_every=status_every, rules=not no_rules, metrics=metrics)


@click.group()
def device():
    """Provision and manage boards: ids, keys and site config files.

    \b
    Example:
        huaico device add rain-01 --board pico_w --site "Quebrada Huaycoloro"
    """


@device.command("add")
@home_option
@click.argument("name")
@click.option("--board", required=True, help="Board name, e.g. pico, pico_w, esp32.")
@click.option("--site", required=True, help="Where the board is, in words.")
@click.option("--place", help="The place residents read in its alerts, if not the site's.")
@click.option("--lat", type=float, help="Latitude in degrees.")
@click.option("--lon", type=float, help="Longitude in degrees.")
@click.option("--transport", type=click.Choice(["uart", "mqtt"]),
              help="How the board reaches the gateway (default: the board's first).")
@click.option("--allow-unsigned", is_flag=True,
              help="Accept frames without a MAC from this device (bench set-ups only).")
@click.option("--far", is_flag=True,
              help="Accept coordinates far from every other station of the network.")
@_user_errors
def device_add(home, name, board, site, place, lat, lon, transport, allow_unsigned, far):
    """Add a device: a new id and key, and its site config file sites/NAME.json.

    Copy the site file onto the board (`huaico flash` does it); it holds the
    key, so keep it private. Declare its sensors with `huaico device sensor
    add`. Coordinates that look swapped are refused with a hint.

    \b
    Example:
        huaico device add rain-01 --board pico_w --site "Quebrada Huaycoloro" \\
            --lat -11.95 --lon -76.69 --transport mqtt
    """
    config, database = open_home(home)
    stations.check_coordinates(database, lat, lon, far=far)
    added = devices.add(database, config, name, board, site, lat=lat, lon=lon,
                        transport=transport, allow_unsigned=allow_unsigned, place=place)
    click.echo("added %s id=%s site file %s" % (name, added["id"],
                                                 devices.site_path(config, name)))


def _age(seconds):
    if seconds is None:
        return "never"
    age = time.time() - seconds
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if age >= size:
            return "%d%s ago" % (age // size, unit)
    return "%ds ago" % max(age, 0)


@device.command("list")
@home_option
@hub_option
@click.option("--json", "as_json", is_flag=True, help="JSON array instead of a table.")
@_user_errors
def device_list(home, hub_dsn, as_json):
    """List devices with their site, board, last frame and battery.

    \b
    Example:
        huaico device list --json
        huaico device list --hub 'host=db.example dbname=huaico'
    """
    _, database = open_reader(home, hub_dsn)
    rows = [devices.public(row) for row in devices.all_devices(database)]
    if as_json:
        click.echo(json.dumps(for_json(rows), indent=2))
        return
    header = ("NAME", "ID", "BOARD", "TRANSPORT", "SITE", "LAST SEQ", "LAST SEEN", "BATTERY", "STATE")
    table = [header]
    for row in rows:
        table.append((row["name"], row["id"], row["board"], row["transport"], row["site"],
                      "-" if row["last_seq"] is None else str(row["last_seq"]),
                      _age(row["last_seen"]),
                      "-" if row["battery_mv"] is None else "%.2f V" % (row["battery_mv"] / 1000),
                      "retired" if row["retired"] else "active"))
    widths = [max(len(str(line[i])) for line in table) for i in range(len(header))]
    for line in table:
        click.echo("  ".join(str(cell).ljust(width) for cell, width in zip(line, widths)).rstrip())


@device.command("show")
@home_option
@hub_option
@click.argument("name")
@click.option("--show-key", is_flag=True, help="Also print the device key (a secret).")
@click.option("--json", "as_json", is_flag=True, help="JSON object instead of lines.")
@_user_errors
def device_show(home, hub_dsn, name, show_key, as_json):
    """Show one device; the key only with --show-key.

    \b
    Example:
        huaico device show rain-01
        huaico device show --hub 'host=db.example dbname=huaico' rain-01
    """
    config, database = open_reader(home, hub_dsn)
    row = devices.public(devices.get(database, name), show_key=show_key)
    if isinstance(database, hub_reader.HubDatabase):
        row["site_file"] = None  # site files are written where the board is flashed
    else:
        row["site_file"] = str(devices.site_path(config, name))
    if as_json:
        click.echo(json.dumps(for_json(row), indent=2))
        return
    shown = dict(row)
    shown["allow_unsigned"] = "yes" if row["allow_unsigned"] else "no"
    shown["retired"] = "yes" if row["retired"] else "no"
    shown["last_seen"] = "never" if row["last_seen"] is None else "%s (%s)" % (
        local_time(row["last_seen"]), _age(row["last_seen"]))
    shown["created"] = local_time(row["created"])
    shown["battery_mv"] = None if row["battery_mv"] is None else "%.2f V" % (
        row["battery_mv"] / 1000)
    shown["rssi"] = None if row["rssi"] is None else "%d dBm" % row["rssi"]
    for key, value in shown.items():
        label = {"battery_mv": "battery", "last_seq": "last seq", "last_seen": "last seen",
                 "allow_unsigned": "unsigned ok", "site_file": "site file"}.get(key, key)
        click.echo("%-14s %s" % (label, "-" if value is None else value))


@device.command("rotate-key")
@home_option
@click.argument("name")
@_user_errors
def device_rotate_key(home, name):
    """Give a device a new key; its site file keeps everything else.

    The old key stops working at once: the board is blind (its frames are
    rejected as bad_mac) until it is flashed with the new site file.

    \b
    Example:
        huaico device rotate-key rain-01
    """
    config, database = open_home(home)
    stations.rotate_key(config, database, name)
    click.echo("new key for %s in %s (sensors and settings kept)" % (
        name, devices.site_path(config, name)))
    click.echo("WARNING: %s is blind until reflashed: the gateway rejects its frames (bad_mac) "
               "until `huaico flash %s` gives it the new key" % (name, name), err=True)


@device.command("reset-sequence")
@home_option
@click.argument("name")
@_user_errors
def device_reset_sequence(home, name):
    """Accept a board that counts its frames again from a low number.

    A board that lost its flash (re-flashed, new chip) and whose firmware
    sends no epoch restarts its sequence numbers: the gateway refuses its
    frames as seq_reset (`huaico status` says so) and the board keeps them.
    This forgets the device's numbers; its next frames are stored. Boards
    with epochs (protocol version 2) need it only when a re-flash happened
    to draw an epoch they had before (refused as old_epoch).

    \b
    Example:
        huaico device reset-sequence rain-01
    """
    config, database = open_home(home)
    before = devices.reset_sequence(database, name)
    click.echo("sequence numbers of %s reset (last seq was %s, epoch %s); its next frames "
               "are stored" % (name, "-" if before["last_seq"] is None else before["last_seq"],
                               "-" if before["epoch"] is None else before["epoch"]))


@device.command("retire")
@home_option
@click.argument("name")
@_user_errors
def device_retire(home, name):
    """Retire a device: its frames are rejected from now on, its readings stay.

    Its active alerts are cancelled (no all-clear is sent: nobody saw the
    danger pass), their undelivered messages with them, and rules written
    for this device alone are disabled; it says which.

    \b
    Example:
        huaico device retire rain-01
    """
    _, database = open_home(home)
    done = stations.retire(database, name)
    click.echo("retired %s" % name)
    for alert in done["alerts"]:
        click.echo("  cancelled alert #%d %s %s (no all-clear sent)"
                   % (alert["id"], alert["level"].upper(), alert["rule_name"]))
    if done["messages_cancelled"]:
        click.echo("  cancelled %d undelivered message%s of those alerts" % (
            done["messages_cancelled"], "" if done["messages_cancelled"] == 1 else "s"))
    if done["rules_disabled"]:
        click.echo("  disabled rule%s %s (`huaico rules edit NAME --enable` to turn one back on)"
                   % ("" if len(done["rules_disabled"]) == 1 else "s",
                      ", ".join(done["rules_disabled"])))


def register(main):
    """Add these commands to the `huaico` group (gateway/cli/main.py)."""
    main.add_command(init)
    main.add_command(run)
    main.add_command(device)
