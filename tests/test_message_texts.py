"""Every shipped text, rendered with realistic values, as residents get it.

For every language, level, rule kind, channel and event kind (alert,
update, clear, late, timeline, repeat, test): one SMS part (160 GSM-7
septets for Spanish, English and Quechua with a 30-character place; 70
UCS-2 characters for Chinese), the alphabet expected, the parts as an
independent decoder (smspdudecoder) reads them, the order level, place,
measurement, time, action, acknowledgement, and no raw code, device id or
jargon. Then the same through the alert pipeline: what the outbox stores is
what goes out, and names a place, never a device."""
import re

import pytest

from huaico.alerts import lifecycle as alerts, templates
from huaico.protocol import channels
from huaico.rules import engine as rules
from huaico.sms import pdu as sms_pdu
from huaico.sms.pdu import submit_pdus
from tests.fixtures.alerting import rule as make_rule
from tests.test_sms_pdu import independent_decode, independent_join

PLACE = "Quebrada Huaycoloro, km 3 alto"
ZH_PLACE = "华容道河口三号桥"
DEVICE_ID = "0a0b0c0d"
DEVICE_NAME = "pluvio-alto"
ALERT_ID = 12345
WHEN = "04/12 14:05"  # the longest time text: a reading of another day
LATIN = ("es", "en", "qu")

# A realistic value in each channel's unit, as a rule reports it.
VALUES = {"rain": 42.5, "rain_tips": 38.2, "rain_rate": 62.0, "water_level": 2.85,
          "water_temp": 18.25, "air_temp": 31.5, "ph": 8.62, "turbidity": 1250.0,
          "conductivity": 0.125, "dissolved_oxygen": 0.0031, "soil_moisture": 48.5,
          "tilt_x": 2.35, "tilt_y": -1.85, "crack_width": 0.0042, "displacement": 0.085,
          "vibration_rms": 3.25, "vibration_peak": 12.5, "strain": 0.000425,
          "battery": 3.41, "rssi": -105.0, "uptime": 86400.0, "load": 1250.5,
          "water_level_rate": 0.65}
# Rule kinds with the channels they apply to, their unit and window.
CASES = [("accumulation", "rain", "mm", 3600), ("accumulation", "rain_tips", "mm", 600),
         ("rise", "water_level", "m", 600), ("intensity-duration", "rain", "x curve", 0),
         ("k-of-n", "rain", "mm", 3600), ("basin-mean", "rain", "mm", 86400),
         ("battery", "battery", "V", 0), ("quality", "water_level", "m", 0),
         ("silent", None, "s", 0)]
CASES += [(kind, name, channels.get(name).unit, 0) for name in VALUES
          for kind in ("above", "below")]
JARGON = re.compile(r"\b(ACK|10min|1h|24h|deg|Cel|x curve|cambio|changed|tikrakun)\b|\(cambio\)")
CODES = [name for name in VALUES if "_" in name]


def _value(kind, channel):
    if kind == "silent":
        return 7500.0
    if kind == "intensity-duration":
        return 1.35
    return VALUES[channel]


def rendered(language, place):
    """(event kind, level, rule kind, channel, text) for every combination."""
    out = []
    for level in rules.LEVELS:
        for kind, channel, unit, window_s in CASES:
            common = dict(place=place, kind=kind, channel=channel, unit=unit,
                          window_s=window_s, alert_id=ALERT_ID)
            value = _value(kind, channel)
            for message in ("alert", "update", "clear"):
                text = templates.render(language, message, level=level, value=value,
                                        time=WHEN, **common)
                out.append((message, level, kind, channel, text))
            alert = out[-3][-1]
            out.append(("repeat", level, kind, channel, templates.repeat(language, alert)))
            for ended in (None, "04/12 15:40"):
                out.append(("late", level, kind, channel, templates.render_late(
                    language, level=level, value=value, onset="04/12 13:05", peak=WHEN,
                    ended=ended, now_level="watch", **common)))
            out.append(("timeline", level, kind, channel, templates.render_timeline(
                language, place=place, alert_id=ALERT_ID, kind=kind, unit=unit,
                events=[("13:05", "watch", value), ("13:35", level, value),
                        ("14:05", "clear", value)])))
    out.append(("test", "", "", None, templates.render(language, "test", group="lideres",
                                                       time="14:05")))
    return out


@pytest.mark.parametrize("language, place", [(language, PLACE) for language in LATIN]
                         + [("zh", ZH_PLACE), ("zh", PLACE)])
def test_every_text_is_one_part_in_its_alphabet_and_reads_plainly(language, place):
    texts = templates.load(language)
    ack = {"es": "Responda SI", "en": "Reply OK", "qu": "Kutichiy SI", "zh": "回复OK"}[language]
    seen = 0
    for message, level, kind, channel, text in rendered(language, place):
        where = "%s %s %s %s %s: %r" % (language, message, level, kind, channel, text)
        encoding, _, cut = sms_pdu.layout(text)
        expected = sms_pdu.GSM7 if language in LATIN else sms_pdu.UCS2
        if language == "zh" and message == "timeline":
            expected = encoding  # an operator's timeline may be all digits and Latin
        assert encoding == expected, where
        if message != "timeline":  # operators' timelines may run long
            assert len(cut) == 1, where
            limit = 160 if encoding == sms_pdu.GSM7 else 70
            assert len(cut[0]) <= limit, where
        joined, _ = independent_join(submit_pdus("+51987000101", text, 7), 7)
        assert joined == text, where
        assert not JARGON.search(text), where
        assert DEVICE_ID not in text and DEVICE_NAME not in text, where
        for code in CODES:
            assert code not in text, where
        if message in ("alert", "update"):
            level_word = texts["levels"][level]
            assert text.startswith(level_word), where
            action = templates.sms_form(language, templates._action(texts, level, kind))
            shown = place[:4]  # a place too long for one part is shortened
            positions = [text.index(level_word), text.index(shown), text.index(WHEN),
                         text.index(action), text.index(ack)]
            assert positions == sorted(positions), where
            assert text.endswith("%s %d" % (ack, ALERT_ID)), where
        seen += 1
    assert seen > 1000


def test_every_channel_has_words_in_every_language():
    for language in templates.languages():
        texts = templates.load(language)
        assert set(VALUES) <= set(texts["channels"]), language
        assert {"advisory", "watch", "warning", "emergency"} == set(texts["levels"])
        # One plain word per level.
        assert all(" " not in word for word in texts["levels"].values()), language


def test_spanish_with_the_shift_table_keeps_accents_in_one_part():
    for level in rules.LEVELS:
        text = templates.render("es", "alert", place=PLACE, level=level, kind="rise",
                                channel="water_level", value=0.85, unit="m", window_s=600,
                                alert_id=ALERT_ID, time=WHEN, shift="es")
        pdus = submit_pdus("+51987000101", text, 3, shift="es")
        assert "río subió" in text and len(pdus) == 1
        # The UDH names the Spanish single shift table (IEI 0x24, language 2).
        assert independent_decode(pdus[0][0])["concat"] is None
        assert pdus[0][0][2:4] == "51" and "03240102" in pdus[0][0]
    plain = templates.render("es", "alert", place=PLACE, level="warning", kind="rise",
                             channel="water_level", value=0.85, unit="m", window_s=600,
                             alert_id=ALERT_ID, time=WHEN)
    assert "rio subio" in plain and "Evacue" in plain


def test_a_long_place_is_shortened_and_the_action_stays_in_the_first_part():
    long_place = "Asentamiento Humano Virgen del Carmen, Quebrada Santo Domingo, sector alto"
    text = templates.render("es", "alert", place=long_place, level="emergency",
                            kind="rise", channel="water_level", value=0.85, unit="m",
                            window_s=600, alert_id=ALERT_ID, time=WHEN)
    assert len(templates.parts(templates.repeat("es", text))) == 1
    assert "Asentamiento Humano" in text and "..." in text and "Evacue YA" in text
    # A site's own action too long for one part: two parts, the action in the first.
    actions = {"emergency": "Suban al colegio Fe y Alegria por la calle Los Pinos, ya."}
    text = templates.render("es", "alert", place=PLACE, level="emergency", kind="rise",
                            channel="water_level", value=0.85, unit="m", window_s=600,
                            alert_id=ALERT_ID, time=WHEN, actions=actions)
    first, *rest = templates.parts(text)
    assert rest and actions["emergency"] in sms_pdu.septets_to_text(first)


def test_the_outbox_stores_what_is_sent_and_names_the_place(alert_db, alert_config):
    alert_config["sites"] = [{"name": "Chosica", "place": PLACE,
                              "actions": {"es": {"warning": "Suba al colegio San Juan."}}}]
    device = alert_db.add_device(DEVICE_ID, DEVICE_NAME, site="chosica")
    alert_db.add_rule(make_rule(kind="above", channel="water_level",
                                levels={"warning": 1.0, "emergency": 2.0}))
    engine = rules.RuleEngine(alert_db.database, alert_config)
    t0 = 1_800_000_000  # 2027-01-15 08:00 UTC
    alert_db.store(engine, device, [(4, 0, t0, 1500, 0)], t0 + 5)
    bodies = dict(alert_db.rows("SELECT language, body FROM outbox WHERE transport = 'sms'"))
    assert bodies["es"] == ("ALERTA %s: nivel del rio 1.5 m a las 08:00. Suba al colegio "
                            "San Juan. Responda SI 1" % PLACE)
    for body in bodies.values():
        assert DEVICE_ID not in body and DEVICE_NAME not in body
        assert sms_pdu.choose_encoding(body) == sms_pdu.GSM7
    # The rule's place, else the device's, else the site's for people, else
    # the site as spelled; never the device's name while any is known.
    rule = make_rule(kind="above", channel="water_level", levels={"warning": 1.0})
    device = {"id": DEVICE_ID, "name": DEVICE_NAME, "site": "CHOSICA ", "place": None}
    assert alerts.place_of(alert_config, rule, device) == PLACE
    assert alerts.place_of(alert_config, rule, dict(device, place="Chosica, colegio")) \
        == "Chosica, colegio"
    assert alerts.place_of(alert_config, rule, dict(device, site="Huarochiri")) == "Huarochiri"
    rule.place = "Puente Los Angeles"
    assert alerts.place_of(alert_config, rule, dict(device, place="x")) == "Puente Los Angeles"
