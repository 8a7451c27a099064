"""Readings as operators ask for them: by device, channel and time window,
in physical units, as a table, CSV, JSON or SenML; and the hourly aggregates
that retention (huaico.store.retention) keeps of readings older than raw_days.

Times on the command line are either a span back from now ("24h", "90m",
"2d") or an ISO 8601 date/time ("2025-02-14", "2025-02-14T06:00",
"2025-02-14T06:00-05:00"); a time without a zone is the gateway's local time,
since that is the clock on the wall of the person typing it.

Values are stored as integers with the channel's decimal exponent and shown
through Decimal (`Decimal(123).scaleb(-1)` is 12.3), so that a table says
exactly what the sensor sent, with the channel's resolution.
"""
import csv
import datetime
import decimal
import io
import json
import re

from huaico.devices import registry as devices
from huaico.mqtt import senml
from huaico.protocol import channels
from huaico.protocol.frame import QUALITY_NAMES

_SPAN_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SPAN = re.compile(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d|w)\s*\Z")
FORMATS = ("table", "csv", "json", "senml")
COLUMNS = ("device", "channel", "idx", "time", "value", "unit", "quality", "seq", "unsynced")


class QueryError(ValueError):
    """A filter that cannot be answered (unknown device or channel, bad time)."""


def parse_span(text):
    """Seconds in "90s", "5m", "24h", "2d", "1w"."""
    match = _SPAN.match(str(text))
    if not match:
        raise QueryError("%r is not a duration: use e.g. 30s, 5m, 24h, 7d" % (text,))
    seconds = float(match.group(1)) * _SPAN_UNITS[match.group(2)]
    if seconds <= 0:
        raise QueryError("%r: a duration must be more than zero" % (text,))
    return seconds


def parse_time(text, now):
    """Epoch seconds for "24h" (that long before now) or an ISO 8601 time."""
    if _SPAN.match(str(text)):
        return now - parse_span(text)
    try:
        when = datetime.datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise QueryError("%r is neither a duration (24h, 7d) nor an ISO time "
                         "(2025-02-14T06:00)" % (text,)) from None
    if when.tzinfo is None:
        when = when.astimezone()  # local wall-clock time
    return when.timestamp()


def find_channel(name):
    """The Channel for a name; QueryError listing the known ones."""
    try:
        return channels.get(name)
    except KeyError:
        raise QueryError("unknown channel %r (one of %s)"
                         % (name, ", ".join(sorted(channels.BY_NAME)))) from None


def value_text(value, code):
    """The stored integer in physical units, exact, with the channel's resolution."""
    found = channels.BY_CODE.get(code)
    if found is None:
        return str(value)
    return str(decimal.Decimal(value).scaleb(found.scale))


def channel_name(code):
    found = channels.BY_CODE.get(code)
    return found.name if found is not None else "ch%d" % code


def unit(code):
    found = channels.BY_CODE.get(code)
    return found.unit if found is not None else ""


def quality_name(quality):
    if quality is None or not 0 <= quality < len(QUALITY_NAMES):
        return str(quality)
    return QUALITY_NAMES[quality]


def iso(epoch):
    """Local time with its offset, to the second."""
    return datetime.datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")


def _filters(database, table, time_column, device, channel, since, until, index=None):
    """(WHERE clauses, args) on `table`'s alias for these filters."""
    where, args = [], []
    if device is not None:
        try:
            row = devices.get(database, device)
        except devices.DeviceError as exc:
            raise QueryError(str(exc)) from None
        where.append("%s.device_id = ?" % table)
        args.append(row["id"])
    if channel is not None:
        where.append("%s.channel = ?" % table)
        args.append(find_channel(channel).code)
    for column, op, value in (("idx", "=", index), (time_column, ">=", since),
                              (time_column, "<=", until)):
        if value is not None:
            where.append("%s.%s %s ?" % (table, column, op))
            args.append(value)
    return where, args


def query(database, device=None, channel=None, since=None, until=None, limit=None,
          index=None):
    """Raw rows (dicts of the readings table plus the device name), oldest
    first; with `limit`, the newest `limit` of them."""
    where, args = _filters(database, "r", "time", device, channel, since, until, index)
    sql = ("SELECT coalesce(d.name, r.device_id) AS device, r.* FROM readings r "
           "LEFT JOIN devices d ON d.id = r.device_id")
    if where:
        sql += " WHERE " + " AND ".join(where)
    # Newest first for LIMIT, then reversed: oldest first, channels in order.
    sql += " ORDER BY r.time DESC, r.device_id DESC, r.channel DESC, r.idx DESC"
    if limit:
        sql += " LIMIT %d" % int(limit)
    rows = list(database.query(sql, args))
    rows.reverse()
    return rows


def query_limited(database, limit, **filters):
    """(rows, more): query() with `limit` (0: all), and whether more rows
    matched than were returned, so that a cut list is always said to be."""
    rows = query(database, limit=limit + 1 if limit else None, **filters)
    if limit and len(rows) > limit:
        return rows[1:], True  # oldest first: the extra row is the oldest
    return rows, False


HOURLY_COLUMNS = ("device", "channel", "idx", "hour", "n", "mean", "min", "max", "total",
                  "unit")


def hourly(database, device=None, channel=None, since=None, until=None, limit=None):
    """(rows, more) of hourly aggregates for people and scripts, oldest
    first; values in physical units (total: the sum, for rain)."""
    if "readings_hourly" not in database.table_names():
        raise QueryError("no hourly aggregates here: the hub keeps raw readings until "
                         "their partition is dropped (huaico hub retention)")
    where, args = _filters(database, "h", "hour", device, channel, since, until)
    sql = ("SELECT coalesce(d.name, h.device_id) AS device, h.* FROM readings_hourly h "
           "LEFT JOIN devices d ON d.id = h.device_id")
    if where:
        sql += " WHERE " + " AND ".join(where)
    sql += " ORDER BY h.hour DESC, h.device_id DESC, h.channel DESC, h.idx DESC"
    if limit:
        sql += " LIMIT %d" % (int(limit) + 1)
    rows = list(database.query(sql, args))
    more = bool(limit) and len(rows) > limit
    rows = rows[:limit] if limit else rows
    rows.reverse()
    shown = []
    for row in rows:
        code = row["channel"]
        mean = decimal.Decimal(row["total"]) / row["n"]
        scale = channels.BY_CODE[code].scale if code in channels.BY_CODE else 0
        shown.append({
            "device": row["device"], "channel": channel_name(code), "idx": row["idx"],
            "hour": iso(row["hour"]), "n": row["n"],
            "mean": float(mean.scaleb(scale).quantize(decimal.Decimal(1).scaleb(scale - 1))),
            "min": float(value_text(row["minimum"], code)),
            "max": float(value_text(row["maximum"], code)),
            "total": float(value_text(row["total"], code)), "unit": unit(code)})
    return shown, more


def render_hourly(shown, fmt):
    if fmt == "json":
        return json.dumps(shown, indent=2, ensure_ascii=False)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, HOURLY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(shown)
        return out.getvalue().rstrip("\n")
    if fmt == "senml":
        raise QueryError("hourly aggregates have no SenML form; use table, csv or json")
    if not shown:
        return "no hourly aggregates match (readings become hourly after [retention] raw_days)"
    return table(HOURLY_COLUMNS, [[item[c] for c in HOURLY_COLUMNS] for item in shown],
                 right={"idx", "n", "mean", "min", "max", "total"})


def public(row):
    """A reading for people and scripts: names, physical value as a string, units."""
    return {
        "device": row["device"], "channel": channel_name(row["channel"]), "idx": row["idx"],
        "time": iso(row["time"]), "value": value_text(row["value"], row["channel"]),
        "unit": unit(row["channel"]), "quality": quality_name(row["quality"]),
        "seq": row["seq"], "unsynced": bool(row["unsynced"]),
    }


def _senml_channel(code):
    found = channels.BY_CODE[code]
    return found.name, found.unit, found.scale


def render(rows, fmt):
    """The rows as text in one of FORMATS."""
    if fmt == "senml":
        pack = []
        by_device = {}
        for row in rows:
            by_device.setdefault(row["device_id"], []).append(
                (row["channel"], row["idx"], row["time"], row["value"], row["quality"]))
        for device_id, items in by_device.items():
            try:
                pack += senml.readings_pack(device_id, items, _senml_channel)
            except senml.SenMLError as exc:
                raise QueryError(str(exc)) from None
        return senml.senml_json(pack).decode()
    shown = [public(row) for row in rows]
    if fmt == "json":
        # Numbers in JSON as numbers, with the exact decimal's nearest float.
        for item in shown:
            item["value"] = float(item["value"])
        return json.dumps(shown, indent=2, ensure_ascii=False)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(shown)
        return out.getvalue().rstrip("\n")
    if not shown:
        return "no readings match"
    return table(COLUMNS, [[item[c] for c in COLUMNS] for item in shown],
                 right={"idx", "value", "seq"})


def table(header, rows, right=()):
    """Aligned columns with a header; `right` names columns aligned right."""
    cells = [[str(h).upper() for h in header]] + [
        ["-" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(header))]
    lines = []
    for line in cells:
        lines.append("  ".join(
            cell.rjust(width) if name in right else cell.ljust(width)
            for cell, width, name in zip(line, widths, header)).rstrip())
    return "\n".join(lines)


def series(database, device, channel, since, until=None, index=0):
    """(epoch times, float values, Channel) of one channel of one device, oldest first."""
    found = find_channel(channel)
    rows = query(database, device=device, channel=channel, since=since,
                 until=until, index=index)
    return ([row["time"] for row in rows],
            [senml.scaled(row["value"], found.scale) for row in rows], found)
