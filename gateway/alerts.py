"""Alerts and their messages, written into the outbox inside the caller's transaction.

The rule engine calls raise_alert / update_alert / clear_alert from within
the writer's transaction, so an alert, its CAP event and one outbox row per
recipient commit together with the reading that raised them, or not at all.
Nothing here sends: gateway.dispatch delivers the outbox.

Linking follows CAP 1.2: every event of an episode (Alert, Update on a
level change, the all-clear as an Update at level "clear") has its own
identifier, and updates and the all-clear reference the episode's first
event. Recipients: a group gets an event when its level reaches the group's
min_level, and keeps getting the episode's updates and its all-clear once
it has had any message of it (so nobody is left believing an alert is
still on). Escalation adds the escalate_to group of every group that had
the alert, once per escalate_after_min without an acknowledgement.
"""
import datetime
import json
import logging
import zoneinfo

from gateway import cap, templates
from gateway.rules import LEVELS

log = logging.getLogger("huaico.alerts")


class AlertError(ValueError):
    """An alert or group that does not exist, named."""


def _section(config, name):
    return (config or {}).get(name) or {}


def groups(config):
    """Recipient groups by name, with defaults filled in."""
    alerts = _section(config, "alerts")
    code = country_code(config)
    out = {}
    for group in (config or {}).get("groups") or ():
        name = group.get("name")
        if not name:
            continue
        out[name] = {
            "name": name,
            "language": group.get("language") or alerts.get("language", "es"),
            "numbers": [normalize_number(n, code) for n in group.get("numbers") or ()],
            "escalate_to": group.get("escalate_to") or "",
            "quiet_hours": group.get("quiet_hours") or alerts.get("quiet_hours", ""),
            "min_level": group.get("min_level") or "watch",
        }
    return out


def country_code(config):
    """The gateway's country calling code from [sms] country_code ("+51"), as
    digits, or "" when none is configured."""
    text = str(_section(config, "sms").get("country_code") or "")
    return "".join(ch for ch in text if ch.isdigit())


def normalize_number(number, country=""):
    """The number in E.164 ("+51987654321"): what the outbox and the ack
    checks compare. "00" is the international prefix; a national number
    (with or without its trunk "0") gets the gateway's country code. Without
    a country code a national number stays as its digits, matching nothing
    written in E.164: a number is never guessed from its last digits."""
    number = str(number).strip()
    digits = "".join(ch for ch in number if ch.isdigit())
    if number.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    if country and digits:
        return "+" + country + digits.lstrip("0")
    return digits


def _sender(config):
    return _section(config, "alerts").get("sender") or "huaico"


def _mqtt_prefix(config):
    mqtt = _section(config, "mqtt")
    return mqtt.get("topic_prefix") or "huaico" if mqtt.get("enabled") else None


def _utc_offset_min(config):
    name = _section(config, "alerts").get("timezone")
    if not name:
        return 0
    try:
        zone = zoneinfo.ZoneInfo(name)
    except zoneinfo.ZoneInfoNotFoundError:
        return 0
    offset = datetime.datetime.now(zone).utcoffset()
    return int(offset.total_seconds() // 60)


def _alert(conn, alert_id):
    cursor = conn.execute("SELECT * FROM alerts WHERE id = ?", [alert_id])
    row = cursor.fetchone()
    if row is None:
        raise AlertError("no alert %s" % alert_id)
    return dict(zip([column[0] for column in cursor.description], row))


def _first_event(conn, alert_id):
    return conn.execute("SELECT identifier, time FROM alert_events WHERE alert_id = ? "
                        "ORDER BY id LIMIT 1", [alert_id]).fetchone()


def raise_alert(conn, config, rule, device, index, level, value, now):
    """A new alert episode; returns (alert id, outbox ids)."""
    place = rule.place or device.get("name") or device.get("id")
    if not rule.place and device.get("site"):
        place = "%s (%s)" % (device.get("name"), device["site"])
    cursor = conn.execute(
        "INSERT INTO alerts (rule_id, rule_name, device_id, idx, kind, channel, place, level, "
        "peak_level, value, unit, status, raised) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?)",
        [rule.id, rule.name, device.get("id"), index, rule.kind, rule.channel, place, level,
         level, value, rule.unit, now])
    alert_id = cursor.lastrowid
    extra = {"window_s": rule.window_s, "lat": device.get("lat"), "lon": device.get("lon")}
    ids = _event(conn, config, _alert(conn, alert_id), "Alert", level, value, now, extra)
    log.info("event=alert_raised alert=%d rule=%s device=%s level=%s value=%s",
             alert_id, rule.name, device.get("id"), level, value)
    return alert_id, ids


def update_alert(conn, config, alert_id, level, value, now):
    alert = _alert(conn, alert_id)
    peak = max(alert["peak_level"], level, key=LEVELS.index)
    conn.execute("UPDATE alerts SET level = ?, peak_level = ?, value = ? WHERE id = ?",
                 [level, peak, value, alert_id])
    alert.update(level=level, peak_level=peak, value=value)
    log.info("event=alert_update alert=%d level=%s value=%s", alert_id, level, value)
    return _event(conn, config, alert, "Update", level, value, now, _extra(conn, alert))


def clear_alert(conn, config, alert_id, value, now):
    alert = _alert(conn, alert_id)
    conn.execute("UPDATE alerts SET status = 'cleared', cleared = ?, value = ? WHERE id = ?",
                 [now, value, alert_id])
    log.info("event=alert_cleared alert=%d value=%s", alert_id, value)
    return _event(conn, config, alert, "Clear", "clear", value, now, _extra(conn, alert))


def _extra(conn, alert):
    extra = {"window_s": 0, "lat": None, "lon": None}
    if alert["rule_id"] is not None:
        row = conn.execute("SELECT window_s FROM rules WHERE id = ?", [alert["rule_id"]]).fetchone()
        if row:
            extra["window_s"] = row[0]
    if alert["device_id"]:
        row = conn.execute("SELECT lat, lon FROM devices WHERE id = ?",
                           [alert["device_id"]]).fetchone()
        if row:
            extra["lat"], extra["lon"] = row
    return extra


def _event(conn, config, alert, msg_type, level, value, now, extra):
    """Record one CAP event of the alert and queue its messages."""
    alert_id = alert["id"]
    count = conn.execute("SELECT count(*) FROM alert_events WHERE alert_id = ?",
                         [alert_id]).fetchone()[0]
    identifier = "%s.%d.%d" % (_sender(config), alert_id, count + 1)
    first = _first_event(conn, alert_id)
    refs = json.dumps([list(first)]) if first else None
    cursor = conn.execute(
        "INSERT INTO alert_events (alert_id, msg_type, level, value, time, identifier, refs) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)", [alert_id, msg_type, level, value, now, identifier, refs])
    event_id = cursor.lastrowid
    # An all-clear is as urgent (quiet hours, rate limits) as what it clears.
    policy_level = alert["level"] if level == "clear" else level
    message = {"Alert": "alert", "Update": "update", "Clear": "clear"}[msg_type]
    ids = []
    sent_to = set()
    received = _groups_reached(conn, alert_id)
    for group in groups(config).values():
        reached = group["name"] in received
        if message == "clear" and not reached:
            continue
        if not reached and LEVELS.index(level) < LEVELS.index(group["min_level"]):
            continue
        ids += _queue_sms(conn, alert, event_id, group, message, policy_level, value, now,
                          extra, sent_to, escalation=0)
    ids += _queue_mqtt(conn, config, alert, event_id, identifier, msg_type, level, value,
                       now, extra, first)
    return ids


def _groups_reached(conn, alert_id):
    return {row[0] for row in conn.execute(
        "SELECT DISTINCT grp FROM outbox WHERE alert_id = ? AND transport = 'sms'", [alert_id])}


def _text(alert, group, message, level, value, extra):
    return templates.render(
        group["language"], message, place=alert["place"], level=level, kind=alert["kind"],
        channel=alert["channel"], value=value, unit=alert["unit"],
        window_s=extra.get("window_s") or 0, alert_id=alert["id"], group=group["name"])


def _queue_sms(conn, alert, event_id, group, message, level, value, now, extra, sent_to,
               escalation):
    text = _text(alert, group, message, level, value, extra)
    ids = []
    for number in group["numbers"]:
        if number in sent_to:
            continue
        sent_to.add(number)
        ids.append(_insert(conn, alert["id"], event_id, "sms", number, group["name"], level,
                           group["language"], text, escalation, now))
    return ids


def _insert(conn, alert_id, event_id, transport, recipient, group, level, language, body,
            escalation, now):
    cursor = conn.execute(
        "INSERT INTO outbox (alert_id, event_id, transport, recipient, grp, level, language, "
        "body, escalation, next_attempt, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [alert_id, event_id, transport, recipient, group, level, language, body, escalation,
         now, now])
    return cursor.lastrowid


def cap_dict(config, alert, identifier, msg_type, level, value, now, extra, first,
             status="Actual"):
    """The alert as gateway.cap wants it (see cap.py's docstring)."""
    language = _section(config, "alerts").get("language", "es")
    group = {"language": language, "name": ""}
    headline = _text(alert, group, "clear" if level == "clear" else "alert",
                     alert["level"] if level == "clear" else level, value, extra)
    return {
        "id": identifier,
        "sender": _sender(config),
        "sent": now,
        "status": status,
        "msg_type": "Update" if msg_type == "Clear" else msg_type,
        "references": [tuple(first)] if first and msg_type != "Alert" else [],
        "level": level,
        "event": "%s %s" % (alert["kind"], alert["channel"] or "station"),
        "headline": headline,
        "description": "rule %s at %s" % (alert["rule_name"], alert["place"]),
        "instruction": templates.load(language)["actions"].get(
            "equipment" if alert["kind"] in templates.EQUIPMENT else alert["level"], "")
        if language in templates.languages() and level != "clear" else "",
        "language": language,
        "area_desc": alert["place"],
        "lat": extra.get("lat"),
        "lon": extra.get("lon"),
        "radius_km": None,
        "device_id": alert["device_id"],
        "channel": alert["channel"],
        "value": value,
        "utc_offset_min": _utc_offset_min(config),
    }


def _queue_mqtt(conn, config, alert, event_id, identifier, msg_type, level, value, now, extra,
                first):
    prefix = _mqtt_prefix(config)
    if prefix is None:
        return []
    message = cap_dict(config, alert, identifier, msg_type, level, value, now, extra, first)
    topic = "%s/alerts/%d" % (prefix, alert["id"])
    policy = alert["level"] if level == "clear" else level
    return [
        _insert(conn, alert["id"], event_id, "mqtt", topic, None, policy, None,
                cap.alert_json(message).decode("utf-8"), 0, now),
        _insert(conn, alert["id"], event_id, "mqtt", topic + "/cap", None, policy, None,
                cap.cap_xml(message).decode("utf-8"), 0, now),
    ]


def escalate(conn, config, alert_id, now, reason):
    """Send the alert's latest event to the escalate_to group of every group
    that has had it and whose target has not; returns outbox ids."""
    alert = _alert(conn, alert_id)
    table = groups(config)
    reached = _groups_reached(conn, alert_id)
    targets = [table[g]["escalate_to"] for g in sorted(reached) if g in table]
    targets = [t for t in dict.fromkeys(targets) if t and t in table and t not in reached]
    conn.execute("UPDATE alerts SET escalation = escalation + 1, escalated = ? WHERE id = ?",
                 [now, alert_id])
    if not targets:
        return []
    event = conn.execute("SELECT id, msg_type, level, value FROM alert_events "
                         "WHERE alert_id = ? ORDER BY id DESC LIMIT 1", [alert_id]).fetchone()
    event_id, msg_type, level, value = event
    message = {"Alert": "alert", "Update": "update", "Clear": "clear"}[msg_type]
    level = alert["level"] if level == "clear" else level
    extra = _extra(conn, alert)
    sent_to = set()
    ids = []
    for target in targets:
        ids += _queue_sms(conn, alert, event_id, table[target], message, level, value, now,
                          extra, sent_to, escalation=1)
    log.warning("event=alert_escalated alert=%d to=%s reason=%s", alert_id,
                ",".join(targets), reason)
    return ids


def escalate_due(conn, config, now):
    """Escalate every active, unacknowledged alert whose last escalation
    (or raising) is escalate_after_min old."""
    minutes = _section(config, "alerts").get("escalate_after_min", 15)
    if not minutes or minutes <= 0:
        return []
    due = conn.execute(
        "SELECT id FROM alerts WHERE status = 'active' AND acked IS NULL "
        "AND coalesce(escalated, raised) <= ?", [now - minutes * 60]).fetchall()
    ids = []
    for (alert_id,) in due:
        ids += escalate(conn, config, alert_id, now, "not acknowledged in %s min" % minutes)
    return ids


def acknowledge(conn, alert_id, by, now):
    """Mark an alert acknowledged; False when it already was. Raises AlertError."""
    alert = _alert(conn, alert_id)
    if alert["acked"] is not None:
        return False
    conn.execute("UPDATE alerts SET acked = ?, acked_by = ? WHERE id = ?", [now, by, alert_id])
    log.info("event=alert_acked alert=%d by=%s", alert_id, by)
    return True


def queue_gateway_alert(conn, config, event, detail, since, now):
    """A message to operators about the gateway itself (SMS delivery failing
    and restored) on <prefix>/alerts/gateway, through the outbox; returns
    outbox ids (none without MQTT)."""
    prefix = _mqtt_prefix(config)
    if prefix is None:
        return []
    body = json.dumps({"event": event, "detail": detail, "since": since, "time": now,
                       "sender": _sender(config)}, sort_keys=True)
    return [_insert(conn, None, None, "mqtt", prefix + "/alerts/gateway", None, "warning",
                    None, body, 0, now)]


def queue_test(conn, config, group_name, now):
    """A test message to every number of a group, through the outbox like
    any alert; returns outbox ids."""
    table = groups(config)
    if group_name not in table:
        raise AlertError("no group %r (have %s)" % (group_name, ", ".join(table) or "none"))
    group = table[group_name]
    text = templates.render(group["language"], "test", group=group_name)
    return [_insert(conn, None, None, "sms", number, group_name, "test", group["language"],
                    text, 0, now) for number in dict.fromkeys(group["numbers"])]
