"""Administration commands: `huaico backup | restore | service ...`.

Thin calls into huaico.store.backup and huaico.service.systemd_unit; anything that
changes the machine shows what it will do and asks first (--yes skips the
question, --dry-run only shows).
"""
import json
import os

import click

from huaico import config as config_mod
from huaico.cli.common import home_option, user_errors
from huaico.service import datalock, systemd_unit
from huaico.store import backup as backup_mod

_user_errors = user_errors(backup_mod.BackupError, datalock.LockedError, systemd_unit.UnitError)


def _count(n, noun):
    return "%s %s%s" % (format(n, ","), noun, "" if n == 1 else "s")


@click.command()
@home_option
@click.argument("file", type=click.Path(dir_okay=True, writable=True))
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_user_errors
def backup(home, file, as_json):
    """Copy the database, device keys, huaico.toml and site files to FILE.

    Safe while the gateway runs: SQLite's online backup takes a consistent
    snapshot without stopping ingest. FILE is one SQLite file (readable by
    its owner only: it holds device keys); given a directory, a dated name
    is made in it. Copy it off the gateway: an SD card fails whole.

    \b
    Example:
        huaico backup /media/usb/huaico-$(date +%F).db
    """
    config = config_mod.load(home)
    done = backup_mod.backup(config, file)
    if as_json:
        click.echo(json.dumps(done, indent=2))
        return
    click.echo("backed up %s, %s, %s and %s to %s (%s bytes, %.1f s)" % (
        _count(done["devices"], "device"), _count(done["readings"], "reading"),
        _count(done["alerts"], "alert"), _count(done["files"], "file"), done["path"],
        format(done["bytes"], ","), done["seconds"]))


@click.command()
@home_option
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--dry-run", is_flag=True, help="Only show what would be done.")
@_user_errors
def restore(home, file, yes, dry_run):
    """Put back a backup made by `huaico backup`: database, keys, config, site files.

    Refuses while a gateway runs on the data directory (stop it first). The
    database it replaces is kept as huaico.db.before-restore. The next
    `huaico run` applies any migrations the backup's version lacked.

    \b
    Example:
        sudo systemctl stop huaico
        huaico restore /media/usb/huaico-2026-12-01.db
        sudo systemctl start huaico
    """
    config = config_mod.load(home)
    pid = datalock.holder(config.home)
    if pid is not None:
        raise datalock.LockedError(datalock.lock_path(config.home), pid)
    for line in backup_mod.plan(config, file):
        click.echo(line)
    if dry_run:
        return
    if not yes:
        click.confirm("restore?", abort=True)
    done = backup_mod.restore(config, file)
    click.echo("restored %s and %s into %s" % (
        _count(done["devices"], "device"), _count(done["readings"], "reading"), config.home))


@click.group()
def service():
    """Run the gateway as a systemd service.

    \b
    Example:
        sudo huaico service install --dry-run
    """


_name_option = click.option("--name", default="huaico", show_default=True,
                            help="Unit name; also the data directory /var/lib/NAME.")
_user_option = click.option("--user", default="huaico", show_default=True,
                            help="System user the gateway runs as (made if missing).")
_group_option = click.option("--serial-group", default=systemd_unit.SERIAL_GROUP,
                             show_default=True, help="Group that owns the serial ports.")
_watchdog_option = click.option("--watchdog", type=click.IntRange(10, 3600),
                                default=systemd_unit.WATCHDOG_S, show_default=True,
                                metavar="SECONDS",
                                help="Restart the gateway when it stops answering this long.")


@service.command("unit")
@_name_option
@_user_option
@_group_option
@_watchdog_option
@_user_errors
def service_unit(name, user, serial_group, watchdog):
    """Print the systemd unit that `service install` would write.

    \b
    Example:
        huaico service unit > huaico.service && systemd-analyze verify huaico.service
    """
    click.echo(systemd_unit.render(systemd_unit.executable(), name, user, serial_group,
                                   watchdog), nl=False)


@service.command("install")
@_name_option
@_user_option
@_group_option
@_watchdog_option
@click.option("--unit-dir", default=systemd_unit.UNIT_DIR, show_default=True,
              type=click.Path(file_okay=False), help="Where to write the unit.")
@click.option("--no-start", is_flag=True, help="Enable at boot but do not start now.")
@click.option("--dry-run", is_flag=True, help="Only show the steps and the unit.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@_user_errors
def service_install(name, user, serial_group, watchdog, unit_dir, no_start, dry_run, yes):
    """Install huaico as a systemd service: user, unit file, enable, start.

    Shows every step and the unit first, and asks. Its data directory is
    /var/lib/NAME (HUAICO_HOME in the unit); see its log with
    `journalctl -u NAME -f`. Needs root unless --dry-run.

    \b
    Example:
        sudo huaico service install --dry-run
        sudo huaico service install
        journalctl -u huaico -f
    """
    exe = systemd_unit.executable()
    steps = systemd_unit.plan(exe, name, user, serial_group, unit_dir, start=not no_start,
                              watchdog_s=watchdog)
    unit_text = systemd_unit.render(exe, name, user, serial_group, watchdog)
    click.echo("huaico service install will:")
    for description, _ in steps:
        click.echo("  - " + description)
    click.echo("\nThe unit:\n")
    click.echo(unit_text)
    if dry_run:
        click.echo("(dry run: nothing was changed)")
        return
    if os.geteuid() != 0:
        raise click.ClickException("installing a service needs root: run it with sudo "
                                   "(or --dry-run to see the steps only)")
    if not yes:
        click.confirm("go ahead?", abort=True)
    systemd_unit.install(steps, unit_text, click.echo)
    click.echo("installed %s.service; data in /var/lib/%s; log: journalctl -u %s -f"
               % (name, name, name))


def register(main):
    """Add these commands to the `huaico` group (gateway/cli/main.py)."""
    for command in (backup, restore, service):
        main.add_command(command)
