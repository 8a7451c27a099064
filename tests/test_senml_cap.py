"""SenML readings (RFC 8428) and CAP 1.2 alerts: structure, order, values."""
import json
import re
import xml.etree.ElementTree as ET
from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from huaico.alerts.cap import CAP_NS, CapError, alert_json, cap_datetime, cap_xml
from huaico.mqtt.senml import SenMLError, readings_pack, scaled, senml_json

T0 = 1_767_225_600  # 2026-01-01T00:00:00Z
CHANNELS = {
    1: ("rain", "mm", -1),
    2: ("water_level", "m", -3),
    3: ("ph", "pH", -2),
    4: ("tilt", "deg", -2),
    5: ("battery", "V", -3),
    6: ("count", None, 0),
}


def resolve(pack):
    """RFC 8428 §4.6 resolution, enough for our packs: absolute names and times."""
    base_name, base_time = pack[0]["bn"], pack[0]["bt"]
    return [(base_name + r["n"], base_time + r.get("t", 0), r["v"], r.get("u"), r.get("q"))
            for r in pack]


def test_pack_names_units_times_and_values():
    rows = [
        (1, 0, T0, 123, 0),
        (2, 0, T0 + 60, 1520, 0),
        (2, 1, T0 + 60, -45, 0),
        (3, 0, T0 + 120, 712, 0),
        (6, 0, T0, 7, 0),
    ]
    body = senml_json(readings_pack("lima-07", rows, CHANNELS))
    pack = json.loads(body)
    assert pack[0]["bn"] == "urn:dev:huaico:lima-07:"
    assert pack[0]["bt"] == T0
    assert resolve(pack) == [
        ("urn:dev:huaico:lima-07:rain", T0, 0.0123, "m", None),
        ("urn:dev:huaico:lima-07:water_level", T0 + 60, 1.52, "m", None),
        ("urn:dev:huaico:lima-07:water_level/1", T0 + 60, -0.045, "m", None),
        ("urn:dev:huaico:lima-07:ph", T0 + 120, 7.12, "pH", None),
        ("urn:dev:huaico:lima-07:count", T0, 7.0, None, None),
    ]
    assert "bn" not in pack[1] and "t" not in pack[0]
    # The decimal value as written (12.3 mm), not 0.012300000000000002.
    assert b'"v":0.0123' in body


def test_base_time_is_the_earliest_reading():
    pack = readings_pack("d", [(1, 0, T0 + 30, 1, 0), (1, 0, T0, 2, 0)], CHANNELS)
    assert pack[0]["bt"] == T0
    assert [r.get("t", 0) for r in pack] == [30, 0]


def test_bad_quality_readings_go_out_with_a_non_mandatory_q_field():
    pack = readings_pack("d", [(1, 0, T0, 5, 0), (2, 0, T0, 9999, 4), (3, 0, T0, 1, "stuck")], CHANNELS)
    assert [r.get("q") for r in pack] == [None, 4, "stuck"]
    # RFC 8428 §4.4: a label ending in "_" would make unaware receivers
    # reject the whole pack.
    assert not any(key.endswith("_") for record in pack for key in record)


def test_channels_may_be_a_callable():
    pack = readings_pack("d", [(9, 2, T0, 250, 0)], lambda code: ("strain", "/", -6))
    assert pack[0]["n"] == "strain/2"
    assert pack[0]["v"] == 0.00025


def test_empty_batch_is_an_empty_pack():
    assert readings_pack("d", [], CHANNELS) == []
    assert senml_json([]) == b"[]"


@pytest.mark.parametrize("device_id, rows, channels, reason", [
    ("d", [(99, 0, T0, 1, 0)], CHANNELS, "unknown channel 99"),
    ("d", [(99, 0, T0, 1, 0)], lambda code: {}[code], "unknown channel 99"),
    ("d", [(1, 0, 1000, 1, 0)], CHANNELS, "not an absolute epoch time"),
    ("d", [(1, 0, T0, 1.5, 0)], CHANNELS, "is not an integer"),
    ("d", [(1, 0, T0, True, 0)], CHANNELS, "is not an integer"),
    ("bad id", [(1, 0, T0, 1, 0)], CHANNELS, "characters SenML does not allow"),
    ("d", [(1, 0, T0, 1, 0)], {1: ("rain", "mm", 400)}, "overflows"),
])
def test_unrepresentable_readings_raise_a_typed_error(device_id, rows, channels, reason):
    with pytest.raises(SenMLError, match=reason) as caught:
        readings_pack(device_id, rows, channels)
    assert caught.value.device_id == device_id


# Primary units of the IANA SenML Units registry that our channels may use:
# RFC 8428 §12.1, RFC 8798 §2 (deg, kg/m3) and ISO 7027-1:2016 (NTU).
PRIMARY_UNITS = {"m", "kg", "s", "V", "Cel", "pH", "S/m", "kg/m3", "deg", "m/s", "m/s2",
                 "count", "/", "dBW", "NTU"}


def test_every_registry_channel_goes_out_in_a_primary_unit():
    from huaico.protocol import channels
    for channel in channels.BY_CODE.values():
        pack = readings_pack("d", [(channel.code, 0, T0, 1, 0)],
                             lambda code: (channel.name, channel.unit, channel.scale))
        assert pack[0]["u"] in PRIMARY_UNITS, (channel.name, pack[0]["u"])
        assert "bver" not in pack[0]


@pytest.mark.parametrize("unit, value_int, scale, primary_unit, value", [
    ("mm", 123, -1, "m", 0.0123),                 # 12.3 mm of rain
    ("mm/h", 360, -1, "m/s", 0.00001),            # 36 mm/h
    ("m/h", 1800, -3, "m/s", 0.0005),             # 1.8 m/h rise
    ("%", 355, -1, "/", 0.355),                   # soil moisture 35.5 %
    ("dBm", -97, 0, "dBW", -127.0),               # RSSI -97 dBm
    ("NTU", 125, -1, "NTU", 12.5),
])
def test_secondary_units_are_converted_to_primary_ones(unit, value_int, scale, primary_unit, value):
    pack = readings_pack("d", [(1, 0, T0, value_int, 0)], {1: ("x", unit, scale)})
    assert (pack[0]["u"], pack[0]["v"]) == (primary_unit, value)


@settings(max_examples=300, deadline=None)
@given(value_int=st.integers(-(2 ** 31), 2 ** 31), scale=st.integers(-9, 6),
       index=st.integers(0, 7), offset=st.integers(0, 86400))
def test_values_equal_the_scaled_integer(value_int, scale, index, offset):
    channels = {1: ("water_level", "m", scale)}
    pack = json.loads(senml_json(readings_pack("d", [(1, 0, T0, 0, 0), (1, index, T0 + offset, value_int, 0)], channels)))
    value = pack[1]["v"]
    assert value == pytest.approx(value_int * 10 ** scale, rel=1e-15, abs=0)
    # Exactly the double nearest the decimal value, and JSON keeps it.
    assert value == float(Decimal(value_int).scaleb(scale)) == scaled(value_int, scale)
    assert pack[1].get("t", 0) == offset


# --- CAP 1.2 -----------------------------------------------------------------

# The CAP 1.2 schema's sequences (OASIS CAP v1.2 §3.2, cap-v1.2 XSD).
ALERT_ORDER = ["identifier", "sender", "sent", "status", "msgType", "source", "scope",
               "restriction", "addresses", "code", "note", "references", "incidents", "info"]
ALERT_REQUIRED = ["identifier", "sender", "sent", "status", "msgType", "scope"]
INFO_ORDER = ["language", "category", "event", "responseType", "urgency", "severity",
              "certainty", "audience", "eventCode", "effective", "onset", "expires",
              "senderName", "headline", "description", "instruction", "web", "contact",
              "parameter", "resource", "area"]
INFO_REQUIRED = ["category", "event", "urgency", "severity", "certainty"]
AREA_ORDER = ["areaDesc", "polygon", "circle", "geocode", "altitude", "ceiling"]
# The XSD's pattern for every CAP dateTime.
CAP_DATETIME = re.compile(r"\d\d\d\d-\d\d-\d\dT\d\d:\d\d:\d\d[-,+]\d\d:\d\d\Z")
CIRCLE = re.compile(r"-?\d+(\.\d+)?,-?\d+(\.\d+)? \d+(\.\d+)?\Z")
NS = "{%s}" % CAP_NS


def alert(**changes):
    base = {
        "id": "gw-chosica-0042",
        "sender": "huaico@gw-chosica.example.org",
        "sent": T0 + 0.75,
        "status": "Actual",
        "msg_type": "Alert",
        "references": [],
        "level": "warning",
        "event": "Flash flood (huaico)",
        "headline": "Huaico warning: Quebrada Carossio",
        "description": "Rain 38.2 mm in 1 h at gauge lima-07 (threshold 30 mm) & rising <fast>",
        "instruction": "Move to high ground now.",
        "language": "es-PE",
        "area_desc": "Quebrada Carossio, Chosica",
        "lat": -11.9436,
        "lon": -76.7081,
        "radius_km": 2.5,
        "device_id": "lima-07",
        "channel": "rain",
        "value": 38.2,
    }
    base.update(changes)
    return base


def local(element):
    assert element.tag.startswith(NS), "%s is outside the CAP 1.2 namespace" % element.tag
    return element.tag[len(NS):]


def check_sequence(element, order, required):
    names = [local(child) for child in element]
    positions = [order.index(name) for name in names]
    assert positions == sorted(positions), "%s children out of schema order: %s" % (local(element), names)
    for name in required:
        assert name in names, "%s lacks <%s>" % (local(element), name)
    return names


def parse(xml_bytes):
    assert xml_bytes.startswith(b"<?xml version='1.0' encoding='utf-8'?>")
    root = ET.fromstring(xml_bytes)
    assert root.tag == NS + "alert"
    return root


def text(parent, path):
    return parent.find(path.replace("/", "/cap:").join(["cap:", ""]), {"cap": CAP_NS}).text


def test_cap_alert_structure_order_and_values():
    root = parse(cap_xml(alert()))
    names = check_sequence(root, ALERT_ORDER, ALERT_REQUIRED)
    assert "references" not in names
    (info,) = root.findall(NS + "info")
    check_sequence(info, INFO_ORDER, INFO_REQUIRED)
    (area,) = info.findall(NS + "area")
    check_sequence(area, AREA_ORDER, ["areaDesc"])
    for element in root.iter():
        local(element)

    assert text(root, "identifier") == "gw-chosica-0042"
    assert text(root, "sent") == "2026-01-01T00:00:00-00:00"
    assert CAP_DATETIME.match(text(root, "sent"))
    assert text(root, "scope") == "Public"
    assert text(root, "msgType") == "Alert"
    assert text(root, "info/category") == "Met"
    assert text(root, "info/language") == "es-PE"
    assert (text(root, "info/urgency"), text(root, "info/severity"), text(root, "info/certainty")) \
        == ("Immediate", "Severe", "Likely")
    assert text(root, "info/description").endswith("& rising <fast>")
    assert text(root, "info/area/circle") == "-11.9436,-76.7081 2.5"
    assert CIRCLE.match(text(root, "info/area/circle"))
    params = {p.find(NS + "valueName").text: p.find(NS + "value").text
              for p in info.findall(NS + "parameter")}
    assert params == {"huaico:level": "warning", "huaico:device": "lima-07",
                      "huaico:channel": "rain", "huaico:value": "38.2"}


@pytest.mark.parametrize("level, expected", [
    ("advisory", ("Future", "Minor", "Possible", "Monitor")),
    ("watch", ("Expected", "Moderate", "Likely", "Prepare")),
    ("warning", ("Immediate", "Severe", "Likely", "Evacuate")),
    ("emergency", ("Immediate", "Extreme", "Observed", "Evacuate")),
])
def test_levels_map_to_urgency_severity_certainty(level, expected):
    root = parse(cap_xml(alert(level=level)))
    got = tuple(text(root, "info/" + name) for name in ("urgency", "severity", "certainty", "responseType"))
    assert got == expected


def test_update_and_all_clear_reference_earlier_alerts():
    earlier = [("gw-chosica-0041", T0 - 600), ("gw-chosica-0042", T0)]
    update = parse(cap_xml(alert(id="gw-chosica-0043", msg_type="Update", references=earlier[1:])))
    check_sequence(update, ALERT_ORDER, ALERT_REQUIRED + ["references"])
    assert text(update, "references") == \
        "huaico@gw-chosica.example.org,gw-chosica-0042,2026-01-01T00:00:00-00:00"

    clear = parse(cap_xml(alert(id="gw-chosica-0044", msg_type="Update", level="clear",
                                references=earlier, utc_offset_min=-300)))
    triples = text(clear, "references").split(" ")
    assert triples == [
        "huaico@gw-chosica.example.org,gw-chosica-0041,2025-12-31T18:50:00-05:00",
        "huaico@gw-chosica.example.org,gw-chosica-0042,2025-12-31T19:00:00-05:00",
    ]
    for triple in triples:
        assert CAP_DATETIME.match(triple.split(",")[2])
    assert text(clear, "info/responseType") == "AllClear"
    assert text(clear, "info/urgency") == "Past"
    assert text(clear, "sent") == "2025-12-31T19:00:00-05:00"


@pytest.mark.parametrize("offset, suffix", [(0, "-00:00"), (-300, "-05:00"), (330, "+05:30"), (-570, "-09:30")])
def test_cap_datetime_offsets(offset, suffix):
    value = cap_datetime(T0 + 0.999, offset)
    assert CAP_DATETIME.match(value)
    assert value.endswith(suffix)
    assert "Z" not in value and "." not in value


def test_area_is_omitted_without_location_and_point_without_radius():
    root = parse(cap_xml(alert(lat=None, lon=None, area_desc=None)))
    assert root.find("cap:info/cap:area", {"cap": CAP_NS}) is None
    root = parse(cap_xml(alert(radius_km=None)))
    assert text(root, "info/area/circle") == "-11.9436,-76.7081 0"


@pytest.mark.parametrize("channel, category", [
    ("rain", "Met"), ("water_level", "Met"), ("tilt", "Infra"), ("crack_width", "Infra"),
    ("turbidity", "Env"), ("displacement", "Geo"), (None, "Other"),
])
def test_category_follows_the_channel(channel, category):
    assert text(parse(cap_xml(alert(channel=channel))), "info/category") == category


@pytest.mark.parametrize("changes, key", [
    ({"id": "has space"}, "id"),
    ({"id": ""}, "id"),
    ({"sender": "a,b"}, "sender"),
    ({"status": "Real"}, "status"),
    ({"msg_type": "Update"}, "references"),
    ({"msg_type": "Cancel"}, "references"),
    ({"level": "clear", "msg_type": "Update"}, "references"),
    ({"level": "panic"}, "level"),
    ({"event": None}, "event"),
    ({"lat": 91.0}, "lat"),
    ({"lon": float("nan")}, "lon"),
    ({"sent": "yesterday"}, "sent"),
    ({"references": [("x",)], "msg_type": "Update"}, "references"),
    ({"utc_offset_min": 2000}, "utc_offset_min"),
    ({"category": "Weather"}, "category"),
])
def test_invalid_alerts_raise_a_typed_error_naming_the_key(changes, key):
    with pytest.raises(CapError) as caught:
        cap_xml(alert(**changes))
    assert caught.value.key == key


def test_json_form_says_what_the_xml_says():
    data = alert(msg_type="Update", references=[("gw-chosica-0041", T0 - 600)])
    message = json.loads(alert_json(data))
    root = parse(cap_xml(data))
    for name in ("identifier", "sender", "sent", "status", "msgType", "scope"):
        assert message[name] == text(root, name)
    assert message["references"] == text(root, "references").split(" ")
    info = message["info"]
    for name in ("category", "event", "urgency", "severity", "certainty", "headline", "instruction"):
        assert info[name] == text(root, "info/" + name)
    assert info["area"] == {"areaDesc": "Quebrada Carossio, Chosica", "circle": "-11.9436,-76.7081 2.5"}
    assert {"valueName": "huaico:device", "value": "lima-07"} in info["parameter"]
