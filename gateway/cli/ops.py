"""Operators' commands: `huaico status | readings | plot | doctor | storage | serve`.

One function per command, each a thin call into a library module (status,
readings_query, plotting, doctor, storage, datasette_queries); user errors
come out as one-line click.ClickException messages, never tracebacks.
"""
import json
import shutil
import signal
import subprocess
import sys
import time

import click

from huaico import config as config_mod
from huaico.cli.common import (for_json, home_option, hub_option, open_home, open_reader,
                                said_truncated, user_errors)
from huaico.devices import registry as devices
from huaico.ops import datasette_queries, doctor as doctor_mod, plotting
from huaico.ops import status as status_mod
from huaico.store import estimate as storage_mod, readings as readings_query

json_option = click.option("--json", "as_json", is_flag=True,
                           help="Machine-readable JSON instead of text.")
since_option = click.option("--since", metavar="SPAN|ISO",
                            help="From this long ago (24h, 7d) or this time "
                                 "(2025-02-14T06:00, local time unless it has a zone).")
until_option = click.option("--until", metavar="SPAN|ISO",
                            help="Up to this long ago or this time (default: now).")


_user_errors = user_errors(devices.DeviceError, readings_query.QueryError,
                           plotting.PlotError, datasette_queries.ServeError)


def _times(since, until):
    now = time.time()
    return (None if since is None else readings_query.parse_time(since, now),
            None if until is None else readings_query.parse_time(until, now))


@click.command()
@home_option
@hub_option
@click.option("--stale", metavar="SPAN",
              help="Mark devices not heard for longer than this (default: [status] "
                   "stale_after in huaico.toml, else 15m).")
@json_option
@_user_errors
def status(home, hub_dsn, stale, as_json):
    """Devices with last seen, battery, signal and last values; active alerts.

    Stale devices (not heard for longer than --stale) come first, marked
    with "!" and STALE, in red on a terminal.

    \b
    Example:
        huaico status
        huaico status --stale 30m --json
        huaico status --hub 'host=db.example dbname=huaico user=huaico'
    """
    config, database = open_reader(home, hub_dsn)
    result = status_mod.collect(database, status_mod.stale_after(config, stale))
    if as_json:
        click.echo(json.dumps(for_json(result), indent=2, ensure_ascii=False))
        return
    for line in status_mod.render(result, style=click.style):
        click.echo(line)


@click.command()
@home_option
@hub_option
@click.option("--device", help="Only this device (its name).")
@click.option("--channel", help="Only this channel (rain, water_level, battery, ...).")
@since_option
@until_option
@click.option("--limit", type=click.IntRange(min=0), default=1000, show_default=True,
              help="The newest N readings (0: all).")
@click.option("--format", "fmt", type=click.Choice(readings_query.FORMATS), default="table",
              show_default=True, help="table for people; csv, json or SenML JSON for programs.")
@click.option("--hourly", is_flag=True,
              help="The hourly aggregates (count, mean, min, max, total) that readings older "
                   "than [retention] raw_days become.")
@_user_errors
def readings(home, hub_dsn, device, channel, since, until, limit, fmt, hourly):
    """Readings in physical units, filtered by device, channel and time.

    When more readings match than --limit, the newest are shown and a line
    on stderr says so (stdout stays clean for csv and json).

    \b
    Example:
        huaico readings --device rain-01 --channel rain --since 24h
        huaico readings --since 2025-02-14 --until 2025-02-15 --format csv --limit 0 > feb14.csv
        huaico readings --device rain-01 --since 1h --format senml
        huaico readings --hourly --device rain-01 --channel rain --since 400d --until 365d
        huaico readings --hub 'host=db.example dbname=huaico' --channel rain --since 1h
    """
    _, database = open_reader(home, hub_dsn)
    start, end = _times(since, until)
    if hourly:
        shown, more = readings_query.hourly(database, device=device, channel=channel,
                                            since=start, until=end, limit=limit)
        click.echo(readings_query.render_hourly(shown, fmt))
        if more:
            said_truncated(len(shown), "hours", "--limit 0 for all, or a later --since")
        return
    rows, more = readings_query.query_limited(database, limit, device=device, channel=channel,
                                              since=start, until=end)
    click.echo(readings_query.render(rows, fmt))
    if more:
        said_truncated(len(rows), "readings", "--limit 0 for all, or a later --since")


@click.command()
@home_option
@hub_option
@click.argument("device_name", metavar="DEVICE")
@click.argument("channel")
@click.option("--since", metavar="SPAN|ISO", default="24h", show_default=True,
              help="From this long ago or this time.")
@until_option
@click.option("--index", type=click.IntRange(0, 7), default=0, show_default=True,
              help="Which sensor of that quantity on the board.")
@click.option("--png", "png_path", type=click.Path(dir_okay=False, writable=True),
              help="Write a PNG picture here instead (needs the plot extra: matplotlib).")
@click.option("--width", type=click.IntRange(min=20), help="Columns (default: the terminal's).")
@click.option("--height", type=click.IntRange(min=8), help="Rows (default: fits the terminal).")
@_user_errors
def plot(home, hub_dsn, device_name, channel, since, until, index, png_path, width, height):
    """Draw one channel of one device over time, in the terminal.

    \b
    Example:
        huaico plot rain-01 rain --since 24h
        huaico plot river-02 water_level --since 7d --png river-02.png
        huaico plot --hub 'host=db.example dbname=huaico' rain-01 rain --since 24h
    """
    _, database = open_reader(home, hub_dsn)
    start, end = _times(since, until)
    times, values, found = readings_query.series(database, device_name, channel, start, end, index)
    if not times:
        raise click.ClickException("no %s readings from %s in that time (see `huaico readings "
                                   "--device %s`)" % (channel, device_name, device_name))
    title = "%s %s%s (%s)" % (device_name, channel, "/%d" % index if index else "", found.unit)
    if png_path:
        plotting.png(png_path, times, values, title, found.unit)
        click.echo("wrote %s (%d readings)" % (png_path, len(times)))
        return
    size = shutil.get_terminal_size((100, 30))
    click.echo(plotting.terminal(times, values, title, found.unit, width=width or size.columns,
                                 height=height or max(10, min(30, size.lines - 4))))


@click.command()
@home_option
@click.option("--quick", is_flag=True,
              help="PRAGMA quick_check instead of the full integrity_check (large databases).")
@json_option
def doctor(home, quick, as_json):
    """Check ports, modem, broker, database, disk and clock; say what to fix.

    Prints one line per check: OK, WARN, FAIL or SKIP (not configured), and
    for problems what to do. Exits with status 1 when any check FAILs.

    \b
    Example:
        huaico doctor
        huaico doctor --json | jq '.checks[] | select(.level == "FAIL")'
    """
    checks = doctor_mod.run(home, quick=quick)
    failed = any(check.level == doctor_mod.FAIL for check in checks)
    if as_json:
        click.echo(json.dumps({"ok": not failed, "checks": [c.as_dict() for c in checks]},
                              indent=2))
    else:
        colours = {doctor_mod.OK: "green", doctor_mod.WARN: "yellow", doctor_mod.FAIL: "red"}
        for check in checks:
            click.echo(click.style(check.line(), fg=colours.get(check.level)))
    if failed:
        sys.exit(1)


@click.group()
def storage():
    """Disk use of the readings.

    \b
    Example:
        huaico storage estimate --devices 65 --interval 5m
    """


@storage.command("estimate")
@home_option
@click.option("--devices", "device_count", type=click.IntRange(min=1), required=True,
              help="How many boards.")
@click.option("--interval", required=True, metavar="SPAN",
              help="How often each board sends a frame (30s, 5m, 1h).")
@click.option("--readings-per-frame", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Readings in each frame (channels sampled).")
@click.option("--days", type=click.IntRange(min=1), default=365, show_default=True,
              help="For how long.")
@click.option("--raw-days", type=click.IntRange(min=0), metavar="DAYS",
              help="Raw readings kept this long, hourly aggregates after; 0 keeps all "
                   "(default: [retention] raw_days in huaico.toml).")
@json_option
@_user_errors
def storage_estimate(home, device_count, interval, readings_per_frame, days, raw_days, as_json):
    """How much disk for how long, measured on a real SQLite file.

    Inserts a sample into a temporary database with huaico's schema,
    measures the bytes one reading and one hourly aggregate take, and scales
    them up with the retention in force; compares with the free space where
    the database lives.

    \b
    Example:
        huaico storage estimate --devices 65 --interval 5m --readings-per-frame 4 --days 365
        huaico storage estimate --devices 100 --interval 1m --days 3650 --raw-days 90
    """
    interval_s = readings_query.parse_span(interval)
    config = config_mod.load(home)
    where = config.database_path.parent
    while not where.exists():
        where = where.parent
    result = storage_mod.estimate(
        device_count, interval_s, readings_per_frame, days,
        free_bytes=shutil.disk_usage(where).free,
        raw_days=config["retention"]["raw_days"] if raw_days is None else raw_days)
    if as_json:
        click.echo(json.dumps(result, indent=2))
        return
    for line in storage_mod.render(result, doctor_mod.human_bytes, where):
        click.echo(line)


@click.command()
@home_option
@click.option("--port", type=click.IntRange(1, 65535), default=8001, show_default=True,
              help="Port on 127.0.0.1 (reach it from elsewhere with `ssh -L 8001:localhost:8001`).")
@click.option("--live", is_flag=True,
              help="Serve the live database (current data, device keys visible) instead of "
                   "a snapshot taken now.")
@_user_errors
def serve(home, port, live):
    """Browse the database read-only with Datasette on 127.0.0.1.

    By default a snapshot is taken now (device keys blanked) and served in
    immutable mode; canned queries: latest readings, rain in the last 24 h,
    active alerts, undelivered messages, rejects by reason. Needs the serve
    extra (Datasette). Stop it with Ctrl-C.

    \b
    Example:
        huaico serve --port 8001
        ssh -L 8001:localhost:8001 pi@gateway   # then open http://localhost:8001
    """
    config, database = open_home(home)
    database.conn.close()
    work = config.home / "serve"
    work.mkdir(exist_ok=True)
    name = "huaico"
    if live:
        served = config.database_path
        name = served.stem
    else:
        served = datasette_queries.snapshot(config.database_path, work / "huaico.db")
    meta = datasette_queries.write_metadata(work / "metadata.json", name)
    argv = datasette_queries.command(served, meta, port, immutable=not live)
    click.echo("serving %s%s read-only on http://127.0.0.1:%d/ (Ctrl-C stops)"
               % (served, "" if live else " (snapshot)", port), err=True)
    process = subprocess.Popen(argv)
    # SIGTERM to us must not leave Datasette running without its parent.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        code = process.wait()
    except KeyboardInterrupt:
        code = 0
    finally:
        if process.poll() is None:
            process.terminate()
            process.wait(10)
    if code:
        raise click.ClickException("datasette exited with status %d" % code)


def register(main):
    """Add these commands to the `huaico` group (gateway/cli/main.py)."""
    for command in (status, readings, plot, doctor, storage, serve):
        main.add_command(command)
