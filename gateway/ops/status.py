"""The network at a glance: every device with when it was last heard, its
battery and signal, its newest value per channel, and the active alerts.

A device is stale when it has not been heard for longer than the threshold
(`--stale`, else `[status] stale_after` in huaico.toml, else 15 minutes):
a silent rain gauge during a storm is exactly what an operator must see
first, so stale devices are listed first and marked. A device whose frames
arrive but are refused (a re-flashed board counting again, an old key) is
not silent: its newest refusals since it was last stored are shown with the
reason and what to do, so nobody drives out to a board that is transmitting.

The gateway's clock is shown as the running gateway last saved it
(huaico.clock): an untrusted clock means boards are getting no time.
"""
import time

from huaico import clock as clock_mod
from huaico.store import readings as readings_query

# What an operator does about a refusal that a board will not get over by itself.
_REMEDY = {
    "seq_reset": "huaico device reset-sequence %s",
    "old_epoch": "huaico device reset-sequence %s",
    "bad_mac": "flash the site file of %s again (huaico device rotate-key changed its key?)",
    "retired": "%s is retired",
}

DEFAULT_STALE = "15m"
STALE_MARK = "!"


def stale_after(config, option=None):
    """Seconds: the --stale option, else [status] stale_after, else 15 minutes."""
    if option:
        return readings_query.parse_span(option)
    configured = config.get("status", {}).get("stale_after", DEFAULT_STALE)
    return readings_query.parse_span(configured)


def ago(seconds, now):
    """"3 min ago" for an epoch time; "never" for None."""
    if seconds is None:
        return "never"
    age = now - seconds
    if age < 0:
        return "in the future (%s): check clocks" % _span(-age)
    if age < 10:
        return "just now"
    return _span(age) + " ago"


def _span(seconds):
    for name, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "%d %s" % (seconds // size, name)
    return "%d s" % seconds


def _last_values(database, device_id):
    # The newest reading of each channel, in SQL that means the same in
    # SQLite and in the hub's PostgreSQL (huaico.hub.reader): the newest
    # time per channel, then that reading (the highest seq on a tie). As
    # fast here as SQLite's bare columns beside max(), which PostgreSQL lacks.
    newest = database.execute(
        "SELECT channel, idx, max(time) FROM readings WHERE device_id = ? "
        "GROUP BY channel, idx ORDER BY channel, idx", [device_id]).fetchall()
    found = []
    for code, idx, at in newest:
        value, quality = database.execute(
            "SELECT value, quality FROM readings WHERE device_id = ? AND channel = ? AND "
            "idx = ? AND time = ? ORDER BY seq DESC LIMIT 1", [device_id, code, idx, at]
        ).fetchone()
        found.append({"channel": readings_query.channel_name(code), "idx": idx,
                      "value": readings_query.value_text(value, code),
                      "unit": readings_query.unit(code),
                      "quality": readings_query.quality_name(quality), "time": at})
    return found


def active_alerts(database):
    if "alerts" not in database.table_names():
        return []
    return list(database.query(
        "SELECT a.id, a.level, a.rule_name AS rule, coalesce(d.name, a.device_id) AS device, "
        "a.place, a.channel, a.value, a.unit, a.raised, a.acked, a.acked_by, a.escalation "
        "FROM alerts a LEFT JOIN devices d ON d.id = a.device_id "
        "WHERE a.status = 'active' ORDER BY a.raised"))


def _refused(database, row):
    """The refusals of the device's frames since its last stored one:
    {"reason", "detail", "time", "count", "remedy"} of the newest, or None."""
    where = "FROM rejects WHERE device_id = ? AND time > ? AND reason NOT IN ('replayed')"
    args = [row["id"], row["last_seen"] or 0]
    found = database.execute("SELECT reason, detail, time " + where +
                             " ORDER BY time DESC LIMIT 1", args).fetchone()
    if found is None:
        return None
    reason, detail, at = found
    count = database.execute("SELECT count(*) " + where + " AND reason = ?",
                             args + [reason]).fetchone()[0]
    remedy = _REMEDY.get(reason)
    return {"reason": reason, "detail": detail, "time": at, "count": count,
            "remedy": remedy % row["name"] if remedy else None}


def _clock(database):
    saved = clock_mod.saved_state(database) if "gateway_state" in database.table_names() else None
    if saved is None:
        return None
    return {"trusted": saved[0], "source": saved[1], "detail": saved[2], "as_of": saved[3]}


def collect(database, stale_s, now=None):
    """The status as plain data (what --json prints)."""
    now = time.time() if now is None else now
    found = []
    for row in database.query("SELECT * FROM devices_live ORDER BY name"):
        retired = bool(row["retired"])
        stale = not retired and (row["last_seen"] is None or now - row["last_seen"] > stale_s)
        found.append({
            "refused": _refused(database, row),
            "name": row["name"], "id": row["id"], "site": row["site"], "board": row["board"],
            "retired": retired, "last_seen": row["last_seen"],
            "age_s": None if row["last_seen"] is None else round(now - row["last_seen"], 1),
            "stale": stale,
            "battery_v": None if row["battery_mv"] is None else row["battery_mv"] / 1000,
            "rssi_dbm": row["rssi"],
            "values": _last_values(database, row["id"]),
        })
    alerts = active_alerts(database)
    return {"time": now, "stale_after_s": stale_s, "devices": found, "alerts": alerts,
            "stale": sum(1 for d in found if d["stale"]), "clock": _clock(database),
            "sms": sms_health(database)}


def sms_health(database):
    """What the running gateway last saw of SMS delivery (huaico.alerts.dispatch
    writes it): {"state": "ok" | "failing", "since", "detail"}, or None."""
    if "health" not in database.table_names():
        return None
    row = database.execute("SELECT state, since, detail FROM health WHERE name = 'sms'"
                           ).fetchone()
    return None if row is None else {"state": row[0], "since": row[1], "detail": row[2]}


def _values_text(values):
    parts = []
    for item in values:
        name = item["channel"] if not item["idx"] else "%s/%d" % (item["channel"], item["idx"])
        text = "%s %s %s" % (name, item["value"], item["unit"])
        if item["quality"] != "ok":
            text += " (%s)" % item["quality"]
        parts.append(text.rstrip())
    return ", ".join(parts) or "-"


def render(status, style=lambda text, **kw: text):
    """Lines for a person; `style` is click.style (colour shows on a TTY only)."""
    now = status["time"]
    devices = status["devices"]
    if not devices:
        return ["No devices yet. Add one with: huaico device add rain-01 --board pico "
                "--site \"Quebrada Huaycoloro\""]
    lines = ["%d device%s, %d stale (not heard for %s), %d active alert%s" % (
        len(devices), "" if len(devices) == 1 else "s", status["stale"],
        _span(status["stale_after_s"]), len(status["alerts"]),
        "" if len(status["alerts"]) == 1 else "s"), ""]
    # Stale devices first: they are what needs a person.
    ordered = sorted(devices, key=lambda d: (not d["stale"], d["retired"], d["name"]))
    header = ("", "DEVICE", "SITE", "LAST SEEN", "BATTERY", "SIGNAL", "LAST VALUES")
    rows = [header]
    for item in ordered:
        mark = STALE_MARK if item["stale"] else ""
        seen = ago(item["last_seen"], now)
        if item["stale"] and item["refused"]:
            seen += " STALE: frames refused"
        elif item["stale"]:
            seen += " STALE"
        elif item["retired"]:
            seen += " (retired)"
        rows.append((mark, item["name"], item["site"] or "-", seen,
                     "-" if item["battery_v"] is None else "%.2f V" % item["battery_v"],
                     "-" if item["rssi_dbm"] is None else "%d dBm" % item["rssi_dbm"],
                     _values_text(item["values"])))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    for number, row in enumerate(rows):
        text = "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip()
        if number and ordered[number - 1]["stale"]:
            text = style(text, fg="red", bold=True)
        elif number == 0:
            text = style(text, bold=True)
        lines.append(text)
    lines.append("")
    for item in ordered:
        refused = item["refused"]
        if refused:
            text = "%s transmits but %d frame%s refused (%s), last %s: %s" % (
                item["name"], refused["count"], "" if refused["count"] == 1 else "s",
                refused["reason"], ago(refused["time"], now), refused["detail"])
            if refused["remedy"]:
                text += " -> " + refused["remedy"]
            lines.append(style(text, fg="red", bold=True))
    clock = status.get("clock")
    if clock is not None and not clock["trusted"]:
        lines.append(style("Gateway clock NOT trusted (%s, as of %s): acks carry no time." % (
            clock["detail"], ago(clock["as_of"], now)), fg="red", bold=True))
    elif clock is not None:
        lines.append("Gateway clock trusted (%s)." % clock["source"])
    sms = status.get("sms")
    if sms and sms["state"] != "ok":
        lines.append(style("SMS delivery FAILING since %s: %s" % (
            ago(sms["since"], now), sms["detail"]), fg="red", bold=True))
    if any(item["refused"] for item in ordered) or clock is not None or (sms and sms["state"] != "ok"):
        lines.append("")
    if not status["alerts"]:
        lines.append("No active alerts.")
        return lines
    lines.append(style("Active alerts:", bold=True))
    for alert in status["alerts"]:
        value = "" if alert["value"] is None else " %g %s" % (alert["value"], alert["unit"] or "")
        acked = ("acked by %s" % alert["acked_by"]) if alert["acked"] else "NOT acknowledged"
        text = "  #%d %s %s at %s (%s %s%s), raised %s, %s" % (
            alert["id"], alert["level"].upper(), alert["rule"], alert["place"],
            alert["device"], alert["channel"] or "-", value.rstrip(),
            ago(alert["raised"], now), acked)
        colour = "red" if alert["level"] in ("warning", "emergency") else "yellow"
        lines.append(style(text, fg=colour))
    return lines
