"""Alerts and their messages, written into the outbox inside the caller's transaction.

The rule engine calls raise_alert / update_alert / clear_alert from within
the writer's transaction, so an alert, its CAP event and one outbox row per
recipient commit together with the reading that raised them, or not at all.
Nothing here sends: huaico.alerts.dispatch delivers the outbox.

Linking follows CAP 1.2: every event of an episode (Alert, Update on a
level change, the all-clear as an Update at level "clear") has its own
identifier, and updates and the all-clear reference the episode's first
event. Recipients: a group gets an event when its level reaches the group's
min_level, and keeps getting the episode's updates and its all-clear once
it has had any message of it (so nobody is left believing an alert is
still on). Escalation adds the escalate_to group of every group that had
the alert, once per escalate_after_min without an acknowledgement.

Time and floods (issue 11): every alert and event carries the time of the
reading behind it (onset, peak, end; alert_events.reading_time) besides
when it was processed. SMS to one number about one alert are coalesced:
a message not yet begun is superseded by the newer state (status
'superseded'), so a batch of transitions costs one message. The first
message of an alert and a rise in level go at once; a fall or an
all-clear waits until [alerts] coalesce_s after the last message sent to
that number, so that a flapping gauge does not ring a phone every minute
(coalesce_s = 0 turns this off: every event is its own message). An event whose reading is older than [alerts] late_after_s (a backlog
uploaded after an outage) is told by the group's late_reports: "summary"
(at most one message per alert and number saying what happened and when),
"timeline" (operators: every event with its time, in one message,
refreshed while the backlog comes in) or "none". Late messages wait
coalesce_s, so that a backlog arriving in many batches still makes one.
"""
import datetime
import json
import logging
import zoneinfo

from huaico.alerts import cap, templates
from huaico.rules import store as engine_store
from huaico.rules.engine import LEVELS, site_key

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
            "late_reports": group.get("late_reports") or "summary",
            # A national single shift table needs PDUs made here (the modem
            # backend); gammu-smsd encodes by itself and would send UCS-2.
            "shift_table": (group.get("shift_table") or None)
            if _section(config, "sms").get("backend") == "modem" else None,
        }
    return out


def site(config, name):
    """A site's [[sites]] entry: its place for people and its own actions
    ({language: {level: text}}); an empty dict for a site not listed.
    Sites match as rules match them, without case and spacing."""
    key = site_key(name)
    for entry in (config or {}).get("sites") or ():
        if key is not None and site_key(entry.get("name")) == key:
            return entry
    return {}


def place_of(config, rule, device):
    """The place residents read: the rule's own, else the device's (`huaico
    device add/edit --place`), else the site's name for people ([[sites]]
    place), else the site as devices spell it; a device's name or id only
    when nothing else is known."""
    where = device.get("site") or getattr(rule, "site", None)
    return (rule.place or device.get("place") or site(config, where).get("place") or where
            or device.get("name") or device.get("id"))


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


def zone(config):
    """The time zone of messages and quiet hours: [alerts] timezone, else
    the system's (None)."""
    name = _section(config, "alerts").get("timezone")
    try:
        return zoneinfo.ZoneInfo(name) if name else None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        log.error("event=bad_timezone timezone=%r using=system", name)
        return None


def _utc_offset_min(config):
    offset = datetime.datetime.now(zone(config)).astimezone().utcoffset()
    return int(offset.total_seconds() // 60)


def _alert(store, alert_id):
    alert = engine_store.of(store).alert(alert_id)
    if alert is None:
        raise AlertError("no alert %s" % alert_id)
    return alert


def raise_alert(conn, config, rule, device, index, level, value, now, at=None):
    """A new alert episode; returns (alert id, outbox ids). at is the time
    of the reading that raised it (now when not given)."""
    store = engine_store.of(conn)
    at = now if at is None else at
    alert_id = store.add_alert({
        "rule_id": rule.id, "rule_name": rule.name, "device_id": device.get("id"),
        "idx": index, "kind": rule.kind, "channel": rule.channel,
        "place": place_of(config, rule, device), "level": level, "peak_level": level,
        "value": value, "unit": rule.unit, "status": "active", "raised": now, "onset": at,
        "peak_time": at, "peak_value": value})
    extra = {"window_s": rule.window_s, "lat": device.get("lat"), "lon": device.get("lon"),
             "site": device.get("site") or getattr(rule, "site", None)}
    ids = _event(store, config, _alert(store, alert_id), "Alert", level, value, now, extra, at)
    log.info("event=alert_raised alert=%d rule=%s device=%s level=%s value=%s reading_time=%s",
             alert_id, rule.name, device.get("id"), level, value, at)
    return alert_id, ids


def update_alert(conn, config, alert_id, level, value, now, at=None):
    store = engine_store.of(conn)
    at = now if at is None else at
    alert = _alert(store, alert_id)
    peak = max(alert["peak_level"], level, key=LEVELS.index)
    higher = LEVELS.index(level) > LEVELS.index(alert["peak_level"])
    peak_time = at if higher else alert["peak_time"]
    peak_value = value if higher else alert["peak_value"]
    fields = {"level": level, "peak_level": peak, "value": value, "peak_time": peak_time,
              "peak_value": peak_value}
    store.change_alert(alert_id, fields)
    alert.update(fields)
    log.info("event=alert_update alert=%d level=%s value=%s reading_time=%s",
             alert_id, level, value, at)
    return _event(store, config, alert, "Update", level, value, now, _extra(store, alert), at)


def clear_alert(conn, config, alert_id, value, now, at=None):
    store = engine_store.of(conn)
    at = now if at is None else at
    alert = _alert(store, alert_id)
    store.change_alert(alert_id, {"status": "cleared", "cleared": now, "value": value,
                                  "ended": at})
    alert.update(status="cleared", ended=at)
    log.info("event=alert_cleared alert=%d value=%s reading_time=%s", alert_id, value, at)
    return _event(store, config, alert, "Clear", "clear", value, now, _extra(store, alert), at)


def _extra(store, alert):
    extra = {"window_s": 0, "lat": None, "lon": None, "site": None}
    if alert["rule_id"] is not None:
        row = store.rule_place(alert["rule_id"])
        if row:
            extra["window_s"], extra["site"] = row
    if alert["device_id"]:
        device = store.device(alert["device_id"])
        if device:
            extra["lat"], extra["lon"] = device.get("lat"), device.get("lon")
            extra["site"] = device.get("site") or extra["site"]
    return extra


def _event(store, config, alert, msg_type, level, value, now, extra, at):
    """Record one CAP event of the alert and queue its messages."""
    alert_id = alert["id"]
    extra = dict(extra, reading_time=at)
    late = now - at > float(_section(config, "alerts").get("late_after_s", 900))
    events = store.events(alert_id)
    identifier = "%s.%d.%d" % (_sender(config), alert_id, len(events) + 1)
    first = (events[0]["identifier"], events[0]["time"]) if events else None
    refs = json.dumps([list(first)]) if first else None
    event_id = store.add_event({
        "alert_id": alert_id, "msg_type": msg_type, "level": level, "value": value,
        "time": now, "identifier": identifier, "refs": refs, "reading_time": at})
    # An all-clear is as urgent (quiet hours, rate limits) as what it clears.
    policy_level = alert["level"] if level == "clear" else level
    message = {"Alert": "alert", "Update": "update", "Clear": "clear"}[msg_type]
    ids = []
    sent_to = set()
    received = store.groups_reached(alert_id)
    for group in groups(config).values():
        reached = group["name"] in received
        if message == "clear" and not reached:
            continue
        if not reached and LEVELS.index(level) < LEVELS.index(group["min_level"]):
            continue
        ids += _queue_sms(store, config, alert, event_id, group, message, policy_level, value,
                          now, extra, sent_to, escalation=0, late=late)
    ids += _queue_mqtt(store, config, alert, event_id, identifier, msg_type, level, value,
                       now, extra, first)
    return ids


def _actions(config, extra, language):
    """The site's own actions in a language ({level: text}), if any."""
    return (site(config, extra.get("site")).get("actions") or {}).get(language) or {}


def _text(config, alert, group, message, level, value, extra, now, sms=True):
    at = extra.get("reading_time")
    return templates.render(
        group["language"], message, place=alert["place"], level=level, kind=alert["kind"],
        channel=alert["channel"], value=value, unit=alert["unit"],
        window_s=extra.get("window_s") or 0, alert_id=alert["id"], group=group["name"],
        time=_clock(config, now if at is None else at, now),
        actions=_actions(config, extra, group["language"]),
        shift=group.get("shift_table"), sms=sms)


def _queue_sms(store, config, alert, event_id, group, message, level, value, now, extra,
               sent_to, escalation, late=False):
    """One SMS per number of the group, coalesced with what that number has
    of this alert (see the module docstring)."""
    coalesce_s = float(_section(config, "alerts").get("coalesce_s", 60))
    ids = []
    for number in group["numbers"]:
        if number in sent_to:
            continue
        sent_to.add(number)
        prior = store.messages_to(alert["id"], number)
        if coalesce_s > 0:
            unsent = [row[0] for row in prior if row[1] == "pending" and not row[5]]
            told = [row for row in prior if row[1] == "sent" or (row[1] == "pending" and row[5])]
        else:  # coalescing off: every event is its own message
            unsent, told = [], [row for row in prior if row[1] in ("sent", "pending")]
        last_sent = max((row[4] for row in told if row[4] is not None), default=None)
        if late:
            mode = group["late_reports"]
            if mode == "none" or (mode == "summary" and any(row[2] == "late" for row in told)):
                continue
            kind = "late" if mode == "summary" else "timeline"
            due = now + coalesce_s  # later batches of the backlog join it
        else:
            kind = message
            if coalesce_s > 0 and not told and message != "alert":
                # This number never had the alert (its first message was
                # superseded): the alert at its level now, or what happened.
                kind = "late" if message == "clear" else "alert"
            rising = message == "alert" or escalation or not told or (
                message != "clear" and
                LEVELS.index(level) > max(LEVELS.index(row[3]) for row in told))
            due = now if rising or last_sent is None else max(now, last_sent + coalesce_s)
        text = (_timeline(store, config, alert, group) if kind == "timeline" else
                _late_text(config, alert, group, extra, now) if kind == "late" else
                _text(config, alert, group, kind, level, value, extra, now))
        if unsent:
            store.supersede(unsent)
        ids.append(_insert(store, alert["id"], event_id, "sms", number, group["name"], level,
                           group["language"], text, escalation, now, due, kind))
    return ids


def _clock(config, when, now):
    """A reading time as a resident reads it: "14:05", or "04/12 14:05" for
    another day, in [alerts] timezone (else the system's)."""
    where = zone(config)
    moment = datetime.datetime.fromtimestamp(when, where)
    today = datetime.datetime.fromtimestamp(now, where).date()
    return moment.strftime("%H:%M" if moment.date() == today else "%d/%m %H:%M")


def _late_text(config, alert, group, extra, now):
    """What happened and when: peak level and value, since when, and whether
    it is over."""
    ended = alert.get("ended") if alert.get("status") == "cleared" else None
    return templates.render_late(
        group["language"], place=alert["place"], level=alert["peak_level"],
        kind=alert["kind"], channel=alert["channel"],
        value=alert.get("peak_value", alert["value"]), unit=alert["unit"],
        window_s=extra.get("window_s") or 0, alert_id=alert["id"],
        onset=_clock(config, alert.get("onset") or alert["raised"], now),
        peak=_clock(config, alert.get("peak_time") or alert["raised"], now),
        ended=None if ended is None else _clock(config, ended, now),
        now_level=alert["level"], actions=_actions(config, extra, group["language"]),
        shift=group.get("shift_table"))


def _timeline(store, config, alert, group):
    """Every event of the alert with its reading time, for operators."""
    rows = store.events(alert["id"])
    now = max((row["time"] for row in rows), default=None)
    events = [(_clock(config, row["reading_time"] if row["reading_time"] is not None
                      else row["time"], now), row["level"], row["value"]) for row in rows]
    return templates.render_timeline(group["language"], place=alert["place"],
                                     alert_id=alert["id"], kind=alert["kind"],
                                     unit=alert["unit"], events=events,
                                     shift=group.get("shift_table"))


def _insert(store, alert_id, event_id, transport, recipient, group, level, language, body,
            escalation, now, due=None, kind=None):
    return engine_store.of(store).queue({
        "alert_id": alert_id, "event_id": event_id, "transport": transport,
        "recipient": recipient, "grp": group, "level": level, "language": language,
        "body": body, "escalation": escalation, "next_attempt": now if due is None else due,
        "created": now, "kind": kind})


def cap_dict(config, alert, identifier, msg_type, level, value, now, extra, first,
             status="Actual"):
    """The alert as huaico.alerts.cap wants it (see cap.py's docstring)."""
    language = _section(config, "alerts").get("language", "es")
    group = {"language": language, "name": ""}
    headline = _text(config, alert, group, "clear" if level == "clear" else "alert",
                     alert["level"] if level == "clear" else level, value, extra, now,
                     sms=False)
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
        # The reading's time: a backlog's alert says when it happened.
        "onset": extra.get("reading_time"),
    }


def _queue_mqtt(store, config, alert, event_id, identifier, msg_type, level, value, now, extra,
                first):
    prefix = _mqtt_prefix(config)
    if prefix is None:
        return []
    message = cap_dict(config, alert, identifier, msg_type, level, value, now, extra, first)
    topic = "%s/alerts/%d" % (prefix, alert["id"])
    policy = alert["level"] if level == "clear" else level
    return [
        _insert(store, alert["id"], event_id, "mqtt", topic, None, policy, None,
                cap.alert_json(message).decode("utf-8"), 0, now),
        _insert(store, alert["id"], event_id, "mqtt", topic + "/cap", None, policy, None,
                cap.cap_xml(message).decode("utf-8"), 0, now),
    ]


def escalate(conn, config, alert_id, now, reason):
    """Send the alert's latest event to the escalate_to group of every group
    that has had it and whose target has not; returns outbox ids."""
    store = engine_store.of(conn)
    alert = _alert(store, alert_id)
    table = groups(config)
    reached = store.groups_reached(alert_id)
    targets = [table[g]["escalate_to"] for g in sorted(reached) if g in table]
    targets = [t for t in dict.fromkeys(targets) if t and t in table and t not in reached]
    store.change_alert(alert_id, {"escalation": alert["escalation"] + 1, "escalated": now})
    if not targets:
        return []
    event = store.events(alert_id)[-1]
    event_id, msg_type, level = event["id"], event["msg_type"], event["level"]
    message = {"Alert": "alert", "Update": "update", "Clear": "clear"}[msg_type]
    level = alert["level"] if level == "clear" else level
    value = event["value"]
    extra = dict(_extra(store, alert), reading_time=event["reading_time"])
    sent_to = set()
    ids = []
    for target in targets:
        ids += _queue_sms(store, config, alert, event_id, table[target], message, level, value,
                          now, extra, sent_to, escalation=1)
    log.warning("event=alert_escalated alert=%d to=%s reason=%s", alert_id,
                ",".join(targets), reason)
    return ids


def escalate_due(conn, config, now):
    """Escalate every active, unacknowledged alert whose last escalation
    (or raising) is escalate_after_min old."""
    minutes = _section(config, "alerts").get("escalate_after_min", 15)
    if not minutes or minutes <= 0:
        return []
    store = engine_store.of(conn)
    ids = []
    for alert_id in store.escalation_due(now - minutes * 60):
        ids += escalate(store, config, alert_id, now, "not acknowledged in %s min" % minutes)
    return ids


def acknowledge(conn, alert_id, by, now):
    """Mark an alert acknowledged; False when it already was. Raises AlertError."""
    store = engine_store.of(conn)
    alert = _alert(store, alert_id)
    if alert["acked"] is not None:
        return False
    store.change_alert(alert_id, {"acked": now, "acked_by": by})
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
    return [_insert(engine_store.of(conn), None, None, "mqtt", prefix + "/alerts/gateway", None, "warning",
                    None, body, 0, now)]


def queue_test(conn, config, group_name, now):
    """A test message to every number of a group, through the outbox like
    any alert; returns outbox ids."""
    table = groups(config)
    if group_name not in table:
        raise AlertError("no group %r (have %s)" % (group_name, ", ".join(table) or "none"))
    group = table[group_name]
    text = templates.render(group["language"], "test", group=group_name,
                            time=_clock(config, now, now), shift=group["shift_table"])
    store = engine_store.of(conn)
    return [_insert(store, None, None, "sms", number, group_name, "test", group["language"],
                    text, 0, now) for number in dict.fromkeys(group["numbers"])]
