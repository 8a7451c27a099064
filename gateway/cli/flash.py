"""`huaico flash`: the volunteer's one command; a thin call into gateway/devices/flash.py."""
import pathlib
import tempfile

import click

from huaico.cli.common import home_option, open_home, user_errors
from huaico.devices import flash, registry as devices


_user_errors = user_errors(flash.FlashError, devices.DeviceError)


@click.command("flash")
@home_option
@click.argument("device")
@click.option("--port", metavar="PORT",
              help="Serial port or URL (/dev/ttyACM0, COM3, socket://HOST:PORT); "
                   "default: the one board plugged in.")
@click.option("--dry-run", is_flag=True, help="Build the bundle and list it; touch no board.")
@click.option("--out", type=click.Path(file_okay=False), help="With --dry-run: write the bundle here.")
@click.option("--check", is_flag=True,
              help="Compare the board's files with the bundle; exit 1 when they differ.")
@click.option("--no-compile", is_flag=True, help="Copy .py sources instead of mpy-cross .mpy files.")
@click.option("--wait", type=click.IntRange(0, 3600), default=60, show_default=True, metavar="SECONDS",
              help="How long to wait for the board's first frame after the restart (0: do not restart).")
@_user_errors
def flash_command(home, device, port, dry_run, out, check, no_compile, wait):
    """Put a device's firmware and site config on its board, then wait until it reports.

    Checks first (the device, its site config sites/DEVICE.json, the port, the
    MicroPython on the board), compiles firmware/, protocol/ and the board file
    with mpy-cross for the board's CPU, copies them with mpremote, restarts
    the board and waits for its first frame. Running it again copies only the
    files that changed. The board's stored frames (/data) are kept.

    \b
    Example:
        huaico flash quebrada-alta --port /dev/ttyACM0
        huaico flash quebrada-alta --dry-run --out bundle/
        huaico flash quebrada-alta --check
    """
    if out and not dry_run:
        raise click.ClickException("--out goes with --dry-run: add --dry-run, or drop --out to flash a board")
    if dry_run and check:
        raise click.ClickException("--check reads a board and --dry-run touches none: use one of them")
    config, database = open_home(home)
    try:
        record, bundle = flash.prepare(database, config, device, compile=not no_compile)
    finally:
        database.conn.close()
    kind = "mpy-cross -march=%s" % bundle.board.ARCH if bundle.compiled else ".py sources"
    if dry_run:
        if out:
            bundle.write(out)
        click.echo("Bundle for %r (board %s, %s, %d files)%s:"
                   % (device, bundle.board.NAME, kind, len(bundle.files), " written to %s" % out if out else ""))
        for path in bundle.ordered():
            click.echo("  %-34s %6d bytes" % (path, len(bundle.files[path])))
        return
    url = flash.choose_port(port)
    flash.check_port(url)
    info = flash.probe(url, bundle.board.NAME)
    flash.check_board(info, bundle.board, bundle, url)
    if check:
        diffs = flash.differences(bundle, flash.board_files(url, bundle))
        if not diffs:
            click.echo("The board on %s matches the bundle for %r (%d files)." % (url, device, len(bundle.files)))
            return
        click.echo("The board on %s differs from the bundle for %r:" % (url, device))
        for line in diffs:
            click.echo("  " + line)
        raise click.exceptions.Exit(1)
    click.echo("Flashing %r onto the board on %s (%s; %s)." % (device, url, info.describe(), kind))
    with tempfile.TemporaryDirectory(prefix="huaico-flash-") as staging:
        with click.progressbar(length=len(bundle.files), label="Copying",
                               item_show_func=lambda item: item) as bar:
            removed = flash.deploy(url, bundle, info, pathlib.Path(staging),
                                   progress=lambda path: bar.update(1, path))
    for line in removed:
        click.echo("  " + line)
    if info.virtual:
        click.echo("Copied %d files to the virtual board; it cannot be restarted from here "
                   "(the MicroPython unix port exits on a reset): start it with firmware/sim/run.py."
                   % len(bundle.files))
        return
    if not wait:
        click.echo("Copied %d files; restart the board to start the firmware." % len(bundle.files))
        return
    click.echo("Restarting the board and waiting up to %ds for its first frame..." % wait)
    watch = flash.reboot_and_watch(url, wait)
    click.echo(watch.verdict(device, flash.version()))


def register(main):
    main.add_command(flash_command)
