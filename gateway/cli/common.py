"""What every `huaico` command shares: the data-directory option, one-line
user errors instead of tracebacks, opening the database, and how times,
devices and numbers are shown (local times and names for people; in JSON,
ISO 8601 local times with their offset and numbers as numbers)."""
import contextlib
import datetime
import functools
import sqlite3
import sys

import click

from huaico import config as config_mod
from huaico.devices import stations
from huaico.hub import reader as hub_reader
from huaico.rules.store import SqliteEngineStore
from huaico.store import db

home_option = click.option(
    "--home", type=click.Path(file_okay=False), envvar="HUAICO_HOME",
    help="Data directory holding huaico.toml, the database and sites/ "
         "(default: $HUAICO_HOME, else ~/.huaico).")


def user_errors(*errors):
    """Decorate a command so that these library errors, config errors and
    database errors end as one line on stderr and a non-zero exit."""
    caught = (config_mod.ConfigError, hub_reader.HubReadError) + errors

    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except caught as exc:
                raise click.ClickException(str(exc)) from None
            except sqlite3.DatabaseError as exc:
                raise click.ClickException(
                    "database error: %s (try `huaico doctor`)" % exc) from None
            except Exception as exc:
                # psycopg is imported only by commands given --hub; an error
                # of the hub's server is then one line too (its first: the
                # rest quotes the statement).
                psycopg = sys.modules.get("psycopg")
                if psycopg is None or not isinstance(exc, psycopg.Error):
                    raise
                raise click.ClickException("hub database error: %s"
                                           % str(exc).partition("\n")[0]) from None
        return wrapper
    return decorate


def open_home(home):
    """(config, database) of a data directory that `huaico init` has set up."""
    config = config_mod.load(home)
    if not config.database_path.exists():
        raise click.ClickException("no database at %s: run `huaico init` first"
                                   % config.database_path)
    database = db.open_db(config.database_path)
    db.migrate(database)
    return config, database


hub_option = click.option(
    "--hub", "hub_dsn", metavar="DSN",
    help="Work on the hub's PostgreSQL (a libpq connection string, e.g. 'host=db.example "
         "dbname=huaico user=huaico') instead of this gateway's database (default: "
         "[hub] dsn in huaico.toml, if set).")


def open_reader(home, hub_dsn=None):
    """(config, database) for the read commands: the hub's PostgreSQL when
    --hub or [hub] dsn names it (huaico.hub.reader), else open_home's."""
    config = config_mod.load(home)
    dsn = hub_dsn or config["hub"]["dsn"]
    if dsn:
        return config, hub_reader.open_hub(dsn)
    return open_home(home)


class _GatewayRules:
    """A gateway's rules and alerts for one command, as huaico.hub.operator.HubRules
    has the hub's: store (reads), write() (a transaction), database."""

    def __init__(self, database):
        self.database = database
        self.store = SqliteEngineStore(database)

    @contextlib.contextmanager
    def write(self):
        with db.transaction(self.database) as conn:
            yield SqliteEngineStore(conn)

    def close(self):
        self.database.conn.close()


@contextlib.contextmanager
def open_rules(home, hub_dsn=None):
    """(config, rules and alerts) for `huaico rules` and `huaico alerts`: the
    hub's (huaico.hub.operator) when --hub or [hub] dsn names it, else this
    gateway's; closed when the command ends."""
    config = config_mod.load(home)
    dsn = hub_dsn or config["hub"]["dsn"]
    if dsn:
        from huaico.hub import operator
        opened = operator.open_rules(dsn)
    else:
        opened = _GatewayRules(open_home(home)[1])
    try:
        yield config, opened
    finally:
        opened.close()


# Columns holding epoch seconds, wherever they appear in a command's output.
TIME_FIELDS = frozenset(("time", "last_seen", "created", "updated", "raised", "cleared",
                         "acked", "escalated", "sent", "received", "next_attempt"))


def local_time(epoch):
    """Local wall-clock time to the second, with the zone, for people."""
    if epoch is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def iso_time(epoch):
    """ISO 8601 local time with its offset, for scripts."""
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def for_json(value, key=None):
    """A command's result made ready for --json: epoch fields (TIME_FIELDS)
    as ISO local times, decimal strings under "value" as numbers."""
    if isinstance(value, dict):
        return {k: for_json(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [for_json(item, key) for item in value]
    if key in TIME_FIELDS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return iso_time(value)
    if key == "value" and isinstance(value, str):
        return stations.parse_value(value)
    return value


def device_names(database):
    """{device id: name}, for showing names where tables hold ids."""
    return dict(database.execute("SELECT id, name FROM devices"))


def said_truncated(shown, what, hint):
    """The line that says a list was cut at `limit` (stderr: stdout stays data)."""
    click.echo("(showing the newest %d %s; more match: %s)" % (shown, what, hint), err=True)
