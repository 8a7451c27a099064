"""`huaico hub ...` (the city tier's workers and device keys) and `huaico device import`.

The hub is configured by options and environment variables rather than a
huaico.toml: it has no data directory, only a PostgreSQL database
(HUAICO_HUB_DSN) and the central broker (HUAICO_HUB_BROKER).
"""
import json
import logging
import os
import signal
import threading

import click

from huaico.cli.common import home_option, open_home, user_errors
from huaico.devices import registry as devices
from huaico.hub import (devices as hub_devices, retention as hub_retention, schema as hub_schema,
                        store as hub_store)
from huaico.service.process import setup_logging

log = logging.getLogger("huaico.hub")

dsn_option = click.option(
    "--dsn", envvar="HUAICO_HUB_DSN", required=True,
    help="PostgreSQL connection string of the hub's database ($HUAICO_HUB_DSN), "
         "e.g. 'host=db.example port=5432 dbname=huaico user=huaico'.")


def _connect(dsn):
    try:
        import psycopg
    except ImportError:
        raise click.ClickException(
            "the hub needs psycopg: pip install 'huaico[hub]'") from None
    try:
        return psycopg.connect(dsn)
    except psycopg.OperationalError as exc:
        raise click.ClickException("cannot connect to PostgreSQL: %s" % exc) from None


keep_option = click.option(
    "--keep-days", type=click.IntRange(min=0), envvar="HUAICO_HUB_KEEP_DAYS", default=0,
    show_default=True,
    help="Drop months of readings and raw frames that ended more than this many days ago "
         "($HUAICO_HUB_KEEP_DAYS; at least 31; 0 keeps everything).")
RETENTION_EVERY_S = 3600.0


def _check_keep(keep_days):
    try:
        hub_retention.check(keep_days)
    except hub_retention.RetentionError as exc:
        raise click.BadParameter(str(exc), param_hint="--keep-days") from None


def _upkeep_loop(dsn, keep_days, stopping):
    """Once an hour while the worker runs: next months' partitions (a worker
    may run longer than the three months made ahead at its start) and, with
    keep_days, retention. Any worker may: both take advisory locks, so one
    of them does it at a time."""
    while True:
        try:
            with _connect(dsn) as conn:
                hub_schema.migrate(conn)
                done = hub_retention.apply(conn, keep_days) if keep_days else None
            if done and not done["skipped"]:
                log.info("event=hub_retention cutoff=%d dropped=%s deleted=%s", done["cutoff"],
                         ",".join(done["dropped"]) or "-", json.dumps(done["deleted"]))
        except Exception as exc:  # the next pass tries again; storing frames goes on
            log.warning("event=hub_upkeep_failed error=%r", str(exc))
        if stopping.wait(RETENTION_EVERY_S):
            return


def _broker(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise click.BadParameter("HOST:PORT, not %r" % text)
    return host, int(port)


@click.group("hub")
def hub():
    """The city tier: workers that verify forwarded frames and store them in PostgreSQL.

    \b
    Example:
        export HUAICO_HUB_DSN='host=127.0.0.1 dbname=huaico user=huaico'
        huaico hub init
        huaico hub run --broker 127.0.0.1:1883 --worker-id hub-1
    """


@hub.command("init")
@dsn_option
@user_errors()
def hub_init(dsn):
    """Create or upgrade the hub's schema and its monthly partitions.

    \b
    Example:
        huaico hub init --dsn 'host=127.0.0.1 dbname=huaico user=huaico'
    """
    with _connect(dsn) as conn:
        applied = hub_schema.migrate(conn)
    click.echo("applied %s" % (", ".join(applied) if applied else "nothing (up to date)"))


@hub.command("run")
@dsn_option
@click.option("--broker", envvar="HUAICO_HUB_BROKER", default="127.0.0.1:1883",
              show_default=True, help="The central broker, HOST:PORT ($HUAICO_HUB_BROKER).")
@click.option("--worker-id", required=True,
              help="This worker's MQTT client id: keep it across restarts (its session "
                   "holds the messages it had not stored).")
@click.option("--group", default="huaico-hub", show_default=True,
              help="Shared subscription group: workers of one group split the frames.")
@click.option("--prefix", default="huaico-city", show_default=True,
              help="Topic prefix the gateways forward under ([upstream] topic_prefix).")
@click.option("--batch-ms", default=10, show_default=True,
              help="Messages arriving within this time share one commit.")
@click.option("--config", "config_path", envvar="HUAICO_HUB_CONFIG",
              type=click.Path(dir_okay=False, exists=True),
              help="A huaico.toml whose [alerts], [[groups]], [[sites]], [mqtt] and [sms] "
                   "the hub's rules and dispatcher use ($HUAICO_HUB_CONFIG); without it the "
                   "worker only stores frames.")
@click.option("--duration", type=float, help="Stop after this many seconds.")
@keep_option
@click.option("--log-format", type=click.Choice(["kv", "json"]), default="kv")
@user_errors()
def hub_run(dsn, broker, worker_id, group, prefix, batch_ms, config_path, duration, keep_days,
            log_format):
    """Run one hub worker until SIGTERM or SIGINT. Start as many as needed, on
    any machines: they share the frames through `$share/GROUP/PREFIX/+/frames`.

    \b
    Example:
        huaico hub run --broker central.example:1883 --worker-id hub-1 --keep-days 730
        huaico hub run --worker-id hub-2 --config /etc/huaico/hub.toml
    """
    from huaico.hub.worker import Worker, config_from, run
    if keep_days:
        _check_keep(keep_days)
    setup_logging("info", log_format)
    host, port = _broker(broker)
    _connect(dsn).close()
    config, sms = config_from(config_path)
    worker = Worker(dsn, host, port, worker_id, group=group, prefix=prefix, batch_ms=batch_ms,
                    config=config, sms=sms)
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    worker.start()
    threading.Thread(target=_upkeep_loop, args=(dsn, keep_days, stopping),
                     name="hub-upkeep", daemon=True).start()
    log.info("event=hub_started worker=%s broker=%s topic=%s pid=%d", worker_id, broker,
             worker.topic, os.getpid())
    run(worker, duration, stopping)
    log.info("event=hub_stopped counts=%s", json.dumps(worker.counts, sort_keys=True))


@hub.command("status")
@dsn_option
@click.option("--json", "as_json", is_flag=True, help="Counters as JSON.")
@user_errors()
def hub_status(dsn, as_json):
    """The hub's counters: frames stored, duplicates dropped, rejects by reason.

    \b
    Example:
        huaico hub status --json
    """
    with _connect(dsn) as conn:
        counts = hub_store.counters(conn)
    if as_json:
        click.echo(json.dumps(counts, sort_keys=True))
        return
    if not counts:
        click.echo("no frames yet")
    for name, value in counts.items():
        click.echo("%-28s %d" % (name, value))


@hub.command("retention")
@dsn_option
@keep_option
@click.option("--json", "as_json", is_flag=True, help="What was done, as JSON.")
@user_errors(hub_retention.RetentionError)
def hub_retention_cmd(dsn, keep_days, as_json):
    """Drop the months of readings and raw frames older than --keep-days now
    (`hub run --keep-days` does it once an hour).

    \b
    Example:
        huaico hub retention --keep-days 730
    """
    if not keep_days:
        raise click.UsageError("--keep-days (or $HUAICO_HUB_KEEP_DAYS) says how long to keep")
    _check_keep(keep_days)
    with _connect(dsn) as conn:
        done = hub_retention.apply(conn, keep_days)
    if as_json:
        click.echo(json.dumps(done, sort_keys=True))
        return
    if done["skipped"]:
        click.echo("another retention pass is running; nothing done")
        return
    click.echo("dropped %s" % (", ".join(done["dropped"]) or "no month"))
    click.echo("deleted %s" % ", ".join("%d from %s" % (n, table)
                                       for table, n in done["deleted"].items()))


@hub.group("device")
def hub_device():
    """Devices of the whole city: provisioned here, keys exported to gateways.

    \b
    Example:
        huaico hub device add rain-01 --board pico_w --site "Quebrada Huaycoloro"
        huaico hub device export rain-01 -o gateway-east.keys
    """


@hub_device.command("add")
@dsn_option
@click.argument("name")
@click.option("--board", required=True, help="Board name, e.g. pico, pico_w, esp32.")
@click.option("--site", required=True, help="Where the board is, in words.")
@click.option("--lat", type=float, help="Latitude in degrees.")
@click.option("--lon", type=float, help="Longitude in degrees.")
@click.option("--transport", type=click.Choice(["uart", "mqtt"]),
              help="How the board reaches its gateway (default: the board's first).")
@user_errors(devices.DeviceError)
def hub_device_add(dsn, name, board, site, lat, lon, transport):
    """Provision a device for the whole city: a new id and key at the hub.

    \b
    Example:
        huaico hub device add rain-01 --board pico_w --site "Quebrada Huaycoloro"
    """
    with _connect(dsn) as conn:
        hub_schema.migrate(conn)
        added = hub_devices.add(conn, name, board, site, lat=lat, lon=lon, transport=transport)
    click.echo("added %s id=%s (export its key to its gateway: huaico hub device export %s)"
               % (name, added["id"], name))


@hub_device.command("export")
@dsn_option
@click.argument("names", nargs=-1)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Keys file to write (0600; copy it to the gateway over SSH).")
@user_errors(devices.DeviceError)
def hub_device_export(dsn, names, output):
    """Write the keys of these devices (all when none is named) for `huaico
    device import` on their gateway.

    \b
    Example:
        huaico hub device export rain-01 rain-02 -o gateway-east.keys
    """
    with _connect(dsn) as conn:
        document = hub_devices.export(conn, list(names))
    hub_devices.write(output, document)
    click.echo("wrote %d device key(s) to %s" % (len(document["devices"]), output))


@click.command("import")
@home_option
@click.argument("path", type=click.Path(dir_okay=False, exists=True))
@user_errors(devices.DeviceError, hub_devices.KeysFileError)
def device_import(home, path):
    """Take device keys exported by the hub (`huaico hub device export`):
    new devices are added with their site files, rotated keys replaced.

    \b
    Example:
        huaico device import gateway-east.keys
    """
    config, database = open_home(home)
    for name, what in hub_devices.import_keys(database, config, hub_devices.read(path)):
        click.echo("%s: %s" % (name, what))


def register(main):
    main.add_command(hub)
    main.commands["device"].add_command(device_import)
