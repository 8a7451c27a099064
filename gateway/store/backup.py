"""`huaico backup` and `huaico restore`: the whole gateway in one SQLite file.

A backup is SQLite's online backup of the database (devices and their keys,
readings, rules, alert state, outbox) taken while the gateway runs, plus the
files an operator would otherwise lose: huaico.toml and every sites/*.json
(a board's sensors and key), stored in a table `_backup_files` of the copy.
One file that `sqlite3` opens and that restore checks before touching
anything.

The copy is taken in one backup step (pages=-1): in WAL mode that is one
read transaction, a consistent snapshot that never blocks the gateway's
writer. Copying a few pages at a time would restart from scratch whenever
the gateway commits in between, which at field rates is always.
"""
import datetime
import os
import pathlib
import sqlite3
import time

from huaico import config as config_mod
from huaico import version
from huaico.service import datalock
from huaico.store import db

FILES_TABLE = "_backup_files"
INFO_TABLE = "_backup_info"


class BackupError(RuntimeError):
    """A backup or restore that cannot be done (says what and why)."""


def _gathered_files(config):
    """(name, mode, bytes) of huaico.toml and the site files; site files are
    named sites/NAME.json wherever [gateway] sites_dir puts them."""
    found = []
    toml = config.home / config_mod.CONFIG_NAME
    if toml.exists():
        found.append((config_mod.CONFIG_NAME, toml))
    if config.sites_dir.exists():
        found += [("sites/" + path.name, path) for path in sorted(config.sites_dir.glob("*.json"))]
    return [(name, path.stat().st_mode & 0o777, path.read_bytes()) for name, path in found]


def _fsync_file(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def backup(config, destination):
    """Copy the running gateway's data to `destination`; returns a summary."""
    source_path = config.database_path
    if not source_path.exists():
        raise BackupError("no database at %s: nothing to back up" % source_path)
    destination = pathlib.Path(destination).expanduser().resolve()
    if destination.exists() and destination.is_dir():
        destination = destination / ("huaico-%s.db" % datetime.datetime.now().strftime(
            "%Y%m%d-%H%M%S"))
    tmp = destination.with_name(destination.name + ".tmp")
    tmp.unlink(missing_ok=True)
    # The copy holds device keys: readable by its owner only, from the start.
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
    started = time.time()
    source = sqlite3.connect("file:%s?mode=ro" % source_path, uri=True,
                             timeout=db.BUSY_TIMEOUT_MS / 1000)
    copy = sqlite3.connect(str(tmp), isolation_level=None)
    try:
        source.backup(copy, pages=-1)
        # Self-contained: no -wal file to forget when the backup is copied.
        copy.execute("PRAGMA journal_mode=DELETE")
        copy.execute("CREATE TABLE %s (path TEXT PRIMARY KEY, mode INTEGER, content BLOB)"
                     % FILES_TABLE)
        copy.execute("CREATE TABLE %s (key TEXT PRIMARY KEY, value TEXT)" % INFO_TABLE)
        files = _gathered_files(config)
        copy.executemany("INSERT INTO %s VALUES (?, ?, ?)" % FILES_TABLE, files)
        copy.executemany("INSERT INTO %s VALUES (?, ?)" % INFO_TABLE, [
            ("huaico_version", version.installed()), ("taken", "%.3f" % started),
            ("source", str(source_path))])
        check = copy.execute("PRAGMA quick_check").fetchone()[0]
        summary = _summary(copy)
    finally:
        copy.close()
        source.close()
    if check != "ok":
        tmp.unlink()
        raise BackupError("the copy fails quick_check (%s); the database may be damaged: "
                          "run `huaico doctor`" % check)
    _fsync_file(tmp)
    os.replace(tmp, destination)
    summary.update(path=str(destination), files=len(files), bytes=destination.stat().st_size,
                   seconds=round(time.time() - started, 3))
    return summary


def _summary(conn):
    def count(table):
        return conn.execute("SELECT count(*) FROM %s" % table).fetchone()[0]
    return {"devices": count("devices"), "readings": count("readings"),
            "alerts": count("alerts") if _has(conn, "alerts") else 0}


def _has(conn, table):
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        [table]).fetchone() is not None


def inspect(path):
    """Open a backup file and check it: (summary, files, info); BackupError
    when it is not a readable huaico backup."""
    path = pathlib.Path(path).expanduser()
    if not path.is_file():
        raise BackupError("no backup file at %s" % path)
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
        try:
            check = conn.execute("PRAGMA integrity_check").fetchone()[0]
            if not all(_has(conn, t) for t in (FILES_TABLE, INFO_TABLE, "devices", "_migrations")):
                raise BackupError("%s is a SQLite file but not a huaico backup "
                                  "(make one with `huaico backup FILE`)" % path)
            files = conn.execute("SELECT path, mode, content FROM %s" % FILES_TABLE).fetchall()
            info = dict(conn.execute("SELECT key, value FROM %s" % INFO_TABLE))
            summary = _summary(conn)
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError("%s is not a readable backup: %s" % (path, exc)) from None
    if check != "ok":
        raise BackupError("%s fails integrity_check: %s" % (path, check))
    return summary, files, info


def plan(config, path):
    """What restore would do, as lines for the operator to confirm."""
    summary, files, info = inspect(path)
    taken = datetime.datetime.fromtimestamp(float(info.get("taken", 0))).astimezone()
    lines = ["backup %s taken %s by huaico %s: devices %d, readings %d, alerts %d"
             % (path, taken.strftime("%Y-%m-%d %H:%M:%S %Z"), info.get("huaico_version", "?"),
                summary["devices"], summary["readings"], summary["alerts"])]
    if config.database_path.exists():
        lines.append("replace %s (kept as %s)" % (config.database_path,
                                                 _kept(config.database_path).name))
    else:
        lines.append("create %s" % config.database_path)
    for name, _, _ in files:
        lines.append("write %s" % _destination(config, name))
    return lines


def _kept(path):
    return path.with_name(path.name + ".before-restore")


def _destination(config, name):
    """Where a file of the backup goes: huaico.toml into the data directory,
    sites/NAME.json into sites_dir; anything else is refused."""
    if name == config_mod.CONFIG_NAME:
        return config.home / name
    folder, _, leaf = name.partition("/")
    if folder == "sites" and leaf.endswith(".json") and "/" not in leaf and leaf[:1] not in ".":
        return config.sites_dir / leaf
    raise BackupError("backup holds a file huaico does not restore: %r" % name)


def _write(path, mode, content):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode & 0o777 or 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(content)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def restore(config, path):
    """Put a backup back; refuses (datalock.LockedError) while a gateway runs.
    The database replaced is kept next to it as huaico.db.before-restore
    (with its -wal), a replaced huaico.toml as huaico.toml.before-restore."""
    summary, files, _ = inspect(path)
    placed = [(_destination(config, name), mode, content) for name, mode, content in files]
    target = config.database_path
    with datalock.DataDirLock(config.home):
        tmp = target.with_name(target.name + ".restoring")
        tmp.unlink(missing_ok=True)
        os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        source = sqlite3.connect("file:%s?mode=ro" % pathlib.Path(path).expanduser(), uri=True)
        fresh = sqlite3.connect(str(tmp), isolation_level=None)
        try:
            source.backup(fresh, pages=-1)
            fresh.execute("DROP TABLE %s" % FILES_TABLE)
            fresh.execute("DROP TABLE %s" % INFO_TABLE)
            fresh.execute("PRAGMA journal_mode=WAL")
        finally:
            fresh.close()
            source.close()
        _fsync_file(tmp)
        kept = _kept(target)
        # Renamed with its WAL rather than checkpointed: the file being
        # replaced may be the damaged one, and must not be touched.
        for suffix in ("", "-wal"):
            old = pathlib.Path(str(target) + suffix)
            if old.exists():
                os.replace(old, str(kept) + suffix)
        pathlib.Path(str(target) + "-shm").unlink(missing_ok=True)
        os.replace(tmp, target)
        for destination, mode, content in placed:
            if destination.name == config_mod.CONFIG_NAME and destination.exists() \
                    and destination.read_bytes() != content:
                os.replace(destination, _kept(destination))
            _write(destination, mode, content)
    return summary
