"""Alerts as CAP 1.2 (OASIS Common Alerting Protocol) XML, and as JSON.

Civil-protection systems, sirens and cell-broadcast gateways read CAP; a
flood warning from a community gauge should reach them in it. One function
builds the message in the schema's element order, and both forms are
written from it, so the XML and the JSON cannot say different things.

The alert dict (what the rules engine puts in the outbox):

    id           str    unique per sender; no spaces, commas, "<" or "&"
    sender       str    e.g. "huaico@gw-chosica.example.org"; same rule
    sent         number seconds since the Unix epoch (fractions dropped)
    status       str    "Actual" or "Test" (also "Exercise", "System", "Draft")
    msg_type     str    "Alert", "Update" or "Cancel"
    references   list   [(id, sent), ...] earlier alerts from this sender
                        that an Update, Cancel or all-clear refers to
    level        str    "advisory", "watch", "warning", "emergency", or
                        "clear" for an all-clear (an Update with references)
    event        str    e.g. "Flash flood (huaico)"
    headline     str    short; SMS-sized
    description  str
    instruction  str    what people should do
    language     str    RFC 3066 code, e.g. "es-PE", "qu"; None means CAP's en-US
    area_desc    str    e.g. "Quebrada Carossio, Chosica"
    lat, lon     float  WGS 84 degrees, or None when unknown
    radius_km    float  circle radius, or None (a point)
    device_id    str    the sensor board that raised it, or None
    channel      str    channel name (e.g. "rain"), or None
    value        number the reading that crossed the threshold, or None

Optional keys: `utc_offset_min` (minutes east of UTC for the dateTimes,
default 0, written "-00:00" as CAP 1.2 requires for UTC; keep one offset per
gateway, since references must repeat the earlier `sent` string exactly),
`category` (CAP category; otherwise from the channel), `response` (CAP
responseType; otherwise from the level).
"""
import datetime
import json
import math
import re
import xml.etree.ElementTree as ET

CAP_NS = "urn:oasis:names:tc:emergency:cap:1.2"
CONTENT_TYPE = "application/cap+xml"
STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES = ("Alert", "Update", "Cancel")

# level -> (urgency, severity, certainty, responseType). A threshold crossed
# at a gauge is an observation of rain or water, and a forecast of the flood
# downstream: hence Likely below emergency, Observed at emergency.
LEVELS = {
    "advisory": ("Future", "Minor", "Possible", "Monitor"),
    "watch": ("Expected", "Moderate", "Likely", "Prepare"),
    "warning": ("Immediate", "Severe", "Likely", "Evacuate"),
    "emergency": ("Immediate", "Extreme", "Observed", "Evacuate"),
    "clear": ("Past", "Minor", "Observed", "AllClear"),
}

# Channel name prefix -> CAP category. CAP files floods under Met
# ("Meteorological (inc. flood)") and landslides and mudflows under Geo.
_CATEGORIES = (
    ("rain", "Met"), ("water_level", "Met"), ("air_", "Met"), ("humidity", "Met"),
    ("soil_moisture", "Geo"), ("displacement", "Geo"),
    ("tilt", "Infra"), ("crack", "Infra"), ("vibration", "Infra"), ("strain", "Infra"),
    ("load", "Infra"), ("battery", "Infra"),
    ("ph", "Env"), ("turbidity", "Env"), ("conductivity", "Env"),
    ("dissolved_oxygen", "Env"), ("water_temperature", "Env"),
)
CATEGORIES = ("Geo", "Met", "Safety", "Security", "Rescue", "Fire", "Health",
              "Env", "Transport", "Infra", "CBRNE", "Other")
RESPONSES = ("Shelter", "Evacuate", "Prepare", "Execute", "Avoid", "Monitor",
             "Assess", "AllClear", "None")
_FORBIDDEN = (" ", ",", "<", "&")
# Characters XML 1.0 does not allow in a document (§2.2 Char): C0 controls
# other than tab, LF and CR, lone surrogates, U+FFFE and U+FFFF. ElementTree
# writes them as they are, and the document is then not well-formed.
_NOT_XML_CHAR = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# xs:dateTime in CAP's pattern has four year digits.
_LAST_SENT = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc).timestamp() - 14 * 3600


class CapError(ValueError):
    """An alert dict that cannot become a valid CAP message; names the key."""

    def __init__(self, key, reason):
        ValueError.__init__(self, "alert %s: %s" % (key, reason))
        self.key = key
        self.reason = reason


def cap_datetime(epoch, utc_offset_min=0):
    """CAP 1.2 dateTime: no fractional seconds, numeric offset, UTC as -00:00."""
    zone = datetime.timezone(datetime.timedelta(minutes=utc_offset_min))
    text = datetime.datetime.fromtimestamp(int(epoch), zone).strftime("%Y-%m-%dT%H:%M:%S")
    if utc_offset_min == 0:
        return text + "-00:00"
    sign = "+" if utc_offset_min > 0 else "-"
    return text + "%s%02d:%02d" % (sign, abs(utc_offset_min) // 60, abs(utc_offset_min) % 60)


def _need(alert, key):
    value = alert.get(key)
    if value is None or value == "":
        raise CapError(key, "missing")
    return value


def _token(alert, key):
    value = str(_need(alert, key))
    if any(c in value for c in _FORBIDDEN) or _NOT_XML_CHAR.search(value):
        raise CapError(key, "%r has a space, comma, '<', '&' or a control character" % value)
    return value


def _text(value):
    """Free text made fit for XML: a character XML 1.0 forbids becomes U+FFFD,
    so a stray control code in a site name cannot make the document unreadable."""
    return _NOT_XML_CHAR.sub("\ufffd", str(value))


def _epoch(value, key):
    """An epoch time that CAP's dateTime can carry (years 1970-9999)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not 0 <= value <= _LAST_SENT:
        raise CapError(key, "%r is not an epoch time before the year 10000" % (value,))
    return value


def _one_of(alert, key, allowed, value=None):
    value = _need(alert, key) if value is None else value
    if value not in allowed:
        raise CapError(key, "%r is not one of %s" % (value, ", ".join(allowed)))
    return value


def _category(alert):
    if alert.get("category"):
        return _one_of(alert, "category", CATEGORIES)
    channel = alert.get("channel") or ""
    for prefix, category in _CATEGORIES:
        if channel.startswith(prefix):
            return category
    return "Other"


def _number(alert, key, low, high):
    value = alert.get(key)
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or not low <= value <= high:
        raise CapError(key, "%r is not a number in [%s, %s]" % (value, low, high))
    return value


def _area(alert):
    lat, lon = alert.get("lat"), alert.get("lon")
    if lat is None and lon is None and not alert.get("area_desc"):
        return None
    area = [("areaDesc", alert.get("area_desc") or "huaico device %s" % alert.get("device_id"))]
    if lat is not None or lon is not None:
        lat = _number(alert, "lat", -90, 90)
        lon = _number(alert, "lon", -180, 180)
        radius = 0 if alert.get("radius_km") is None else _number(alert, "radius_km", 0, 40075)
        area.append(("circle", "%s,%s %s" % (_coord(lat), _coord(lon), _coord(radius))))
    return area


def _coord(x):
    """Up to 6 decimals (~0.1 m), without trailing zeros."""
    return ("%.6f" % x).rstrip("0").rstrip(".")


def _parameters(alert):
    names = (("level", "huaico:level"), ("device_id", "huaico:device"),
             ("channel", "huaico:channel"), ("value", "huaico:value"))
    return [("parameter", [("valueName", name), ("value", str(alert[key]))])
            for key, name in names if alert.get(key) is not None]


def cap_message(alert):
    """The CAP message as nested (element, value) pairs in schema order."""
    offset = alert.get("utc_offset_min", 0)
    if isinstance(offset, bool) or not isinstance(offset, int) or not -14 * 60 <= offset <= 14 * 60:
        raise CapError("utc_offset_min", "%r is not whole minutes within +-14 h" % (offset,))
    sender = _token(alert, "sender")
    msg_type = _one_of(alert, "msg_type", MSG_TYPES)
    level = _one_of(alert, "level", tuple(LEVELS))
    sent = _epoch(alert.get("sent"), "sent")
    references = []
    for ref in alert.get("references") or ():
        try:
            ref_id, ref_sent = ref
            ref_id = _token({"references": ref_id}, "references")
            ref_sent = cap_datetime(_epoch(ref_sent, "references"), offset)
        except (TypeError, ValueError, OverflowError) as error:
            raise CapError("references", "%r is not (id, sent): %s" % (ref, error)) from None
        references.append("%s,%s,%s" % (sender, ref_id, ref_sent))
    if msg_type != "Alert" and not references:
        raise CapError("references", "an %s must name the alert(s) it updates" % msg_type)
    if level == "clear" and not references:
        raise CapError("references", "an all-clear must name the alert(s) it clears")
    urgency, severity, certainty, response = LEVELS[level]
    if alert.get("response"):
        response = _one_of(alert, "response", RESPONSES)

    info = []
    if alert.get("language"):
        info.append(("language", alert["language"]))
    info += [
        ("category", _category(alert)),
        ("event", _need(alert, "event")),
        ("responseType", response),
        ("urgency", urgency),
        ("severity", severity),
        ("certainty", certainty),
    ]
    onset = alert.get("onset")
    if isinstance(onset, (int, float)) and not isinstance(onset, bool) and \
            math.isfinite(onset) and onset >= 0:
        # CAP 1.2 3.2.2: when the event began (the reading's time), which
        # for data uploaded late is not when the message was sent.
        info.append(("onset", cap_datetime(onset, offset)))
    info.append(("senderName", "huaico"))
    for key, element in (("headline", "headline"), ("description", "description"),
                         ("instruction", "instruction")):
        if alert.get(key):
            info.append((element, alert[key]))
    info += _parameters(alert)
    area = _area(alert)
    if area is not None:
        info.append(("area", area))

    message = [
        ("identifier", _token(alert, "id")),
        ("sender", sender),
        ("sent", cap_datetime(sent, offset)),
        ("status", _one_of(alert, "status", STATUSES)),
        ("msgType", msg_type),
        ("scope", "Public"),
    ]
    if references:
        message.append(("references", " ".join(references)))
    message.append(("info", info))
    return _clean(message)


def _clean(items):
    return [(name, _clean(value) if isinstance(value, list) else _text(value))
            for name, value in items]


def _build(parent, items):
    for name, value in items:
        child = ET.SubElement(parent, "{%s}%s" % (CAP_NS, name))
        if isinstance(value, list):
            _build(child, value)
        else:
            child.text = value


def cap_xml(alert):
    """CAP 1.2 XML (UTF-8 bytes with declaration). Raises CapError."""
    ET.register_namespace("", CAP_NS)
    root = ET.Element("{%s}alert" % CAP_NS)
    _build(root, cap_message(alert))
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def _as_json(items):
    out = {}
    for name, value in items:
        value = _as_json(value) if isinstance(value, list) else value
        if name == "parameter":
            out.setdefault("parameter", []).append(value)
        else:
            out[name] = value
    return out


def alert_json(alert):
    """The same message as JSON: CAP element names, `references` as a list
    of "sender,identifier,sent" strings, `parameter` as a list. Raises CapError."""
    message = _as_json(cap_message(alert))
    if "references" in message:
        message["references"] = message["references"].split(" ")
    return json.dumps(message, ensure_ascii=False, separators=(",", ":")).encode()
