"""`huaico serve`: the database in a browser with Datasette, read-only, on
127.0.0.1 only, with canned queries for the questions operators ask.

Why a snapshot by default: Datasette's immutable mode (`-i`) is the one
that cannot write, but it also assumes the file never changes and ignores
the WAL, so on the live database it would show stale rows or fail while the
gateway writes. So `serve` copies a consistent snapshot with SQLite's backup
API, blanks the device keys in the copy (a browser is no place for them),
and serves that copy with `-i`. `--live` serves the live file instead
(Datasette then opens it with mode=ro connections): current data, but keys
are visible to whoever reaches the port.

Values in the canned queries are in physical units: the channel registry
(protocol/channels.py) becomes a VALUES table inside each query, so the SQL
needs nothing the database does not have.
"""
import json
import os
import sqlite3
import sys

from huaico.protocol import channels

INSTALL_SERVE = "pip install 'huaico[serve]'"


class ServeError(RuntimeError):
    """Datasette cannot be started (missing extra, bad port)."""


def _channels_cte():
    rows = ", ".join("(%d, '%s', '%s', %r, %d)" % (c.code, c.name, c.unit, 10.0 ** c.scale,
                                                   max(0, -c.scale))
                     for c in sorted(channels.BY_CODE.values(), key=lambda c: c.code))
    return "channels(code, name, unit, factor, digits) AS (VALUES %s)" % rows


def queries():
    """Canned queries: name -> {"title", "sql", "description"}."""
    cte = _channels_cte()
    return {
        "latest_readings": {
            "title": "Latest reading per device and channel",
            "description": "The newest value of every channel of every device, in physical units.",
            "sql": (
                "WITH %s, latest AS (SELECT device_id, channel, idx, max(time) AS time, value, "
                "quality FROM readings GROUP BY device_id, channel, idx) "
                "SELECT coalesce(d.name, l.device_id) AS device, d.site, "
                "coalesce(c.name, 'ch' || l.channel) AS channel, l.idx, "
                "datetime(l.time, 'unixepoch', 'localtime') AS time, "
                "round(l.value * coalesce(c.factor, 1), coalesce(c.digits, 0)) AS value, "
                "c.unit, l.quality FROM latest l LEFT JOIN devices d ON d.id = l.device_id "
                "LEFT JOIN channels c ON c.code = l.channel ORDER BY device, channel, l.idx"
                % cte),
        },
        "rain_24h": {
            "title": "Rain in the last 24 hours per device",
            "description": "Sum of the rain channel (mm) over the last 24 hours, "
                           "good readings only.",
            "sql": (
                "SELECT coalesce(d.name, r.device_id) AS device, d.site, "
                "round(sum(r.value) * 0.1, 1) AS rain_mm, count(*) AS readings, "
                "datetime(max(r.time), 'unixepoch', 'localtime') AS last_reading "
                "FROM readings r LEFT JOIN devices d ON d.id = r.device_id "
                "WHERE r.channel = %d AND r.quality = 0 "
                "AND r.time >= CAST(strftime('%%s', 'now') AS INTEGER) - 86400 "
                "GROUP BY r.device_id ORDER BY rain_mm DESC" % channels.get("rain").code),
        },
        "active_alerts": {
            "title": "Active alerts",
            "description": "Alerts raised and not yet cleared, newest first.",
            "sql": (
                "SELECT a.id, a.level, a.place, a.rule_name AS rule, a.channel, a.value, a.unit, "
                "datetime(a.raised, 'unixepoch', 'localtime') AS raised, "
                "CASE WHEN a.acked IS NULL THEN 'no' ELSE a.acked_by END AS acknowledged, "
                "a.escalation FROM alerts a WHERE a.status = 'active' ORDER BY a.raised DESC"),
        },
        "undelivered_messages": {
            "title": "Messages not delivered",
            "description": "Outbox messages still pending or failed, oldest first.",
            "sql": (
                "SELECT o.id, o.alert_id, o.transport, o.recipient, o.grp AS grp, o.level, "
                "o.status, o.attempts, datetime(o.next_attempt, 'unixepoch', 'localtime') "
                "AS next_attempt, o.hold, o.last_error, "
                "datetime(o.created, 'unixepoch', 'localtime') AS created "
                "FROM outbox o WHERE o.status != 'sent' ORDER BY o.id"),
        },
        "rejects_by_reason": {
            "title": "Rejected frames by reason",
            "description": "Why frames were refused (bad_mac, replayed, ...) and from "
                           "which devices.",
            "sql": (
                "SELECT r.reason, count(*) AS frames, "
                "datetime(max(r.time), 'unixepoch', 'localtime') AS last, "
                "group_concat(DISTINCT coalesce(d.name, r.device_id)) AS devices "
                "FROM rejects r LEFT JOIN devices d ON d.id = r.device_id "
                "GROUP BY r.reason ORDER BY frames DESC"),
        },
    }


def metadata(database_name):
    return {
        "title": "huaico gateway",
        "description": "Read-only view of the gateway database.",
        "databases": {database_name: {"queries": queries()}},
    }


def snapshot(source, target):
    """A consistent copy of the live database (backup API, safe while the
    gateway writes) with device keys blanked; returns target."""
    if os.path.exists(target):
        os.unlink(target)
    src = sqlite3.connect("file:%s?mode=ro" % source, uri=True)
    dst = sqlite3.connect(str(target))
    try:
        src.backup(dst)
        dst.execute("UPDATE devices SET key = ''")
        dst.commit()
        # A single file that never changes, as immutable mode expects.
        dst.execute("PRAGMA journal_mode=DELETE")
    finally:
        src.close()
        dst.close()
    return target


def command(database_path, metadata_path, port, immutable=True):
    """The datasette command line; ServeError when the extra is missing."""
    try:
        import datasette  # noqa: F401  (only checking that the extra is there)
    except ModuleNotFoundError:
        raise ServeError("serve needs Datasette: %s" % INSTALL_SERVE) from None
    where = ["-i", str(database_path)] if immutable else [str(database_path)]
    argv = [sys.executable, "-m", "datasette", "serve"] + where + [
            "--host", "127.0.0.1", "--port", str(port), "--metadata", str(metadata_path),
            "--setting", "sql_time_limit_ms", "5000"]
    return argv


def write_metadata(path, database_name):
    with open(path, "w", encoding="utf-8") as out:
        json.dump(metadata(database_name), out, indent=2)
    return path
