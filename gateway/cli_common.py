"""What every `huaico` command shares: the data-directory option, one-line
user errors instead of tracebacks, and opening the database."""
import functools
import sqlite3

import click

from gateway import config as config_mod
from gateway import db

home_option = click.option(
    "--home", type=click.Path(file_okay=False), envvar="HUAICO_HOME",
    help="Data directory holding huaico.toml, the database and sites/ "
         "(default: $HUAICO_HOME, else ~/.huaico).")


def user_errors(*errors):
    """Decorate a command so that these library errors, config errors and
    database errors end as one line on stderr and a non-zero exit."""
    caught = (config_mod.ConfigError,) + errors

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
