"""One SMS part where the alphabet allows: transliteration to GSM-7, word
boundaries between parts, and the Spanish national single shift table.

The shift table's codes are checked by hand against TS 23.038 A.2.2 (the
accented vowels sit at their ASCII letters' codes, ç at 0x09) and by a
round trip through our DELIVER decoder on a PDU rebuilt from the SUBMIT's
user data; the septet counts (155 in one part, 149 per part when split)
are the figures TS 23.040's header arithmetic gives."""
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huaico.sms import pdu as sms_pdu
from huaico.sms.alphabet import fits_gsm7, to_gsm7
from huaico.sms.pdu import choose_encoding, decode_pdu, split_units, submit_pdus

SPANISH = "ALERTA Quebrada Santo Domingo: lluvia 15 mm en 10 min a las 14:35. Evacúe a zona " \
          "segura ahora, por la ruta señalada. ¿Recibió? Responda OK 12"
QUECHUA = "ALLIN KAY Quebrada Santo Domingo: para 15 mm 10 minutupi, 14:35. Suyuy ch\u02bcaki " \
          "kitipi. Kutichiy OK 12"


def test_spanish_and_quechua_go_out_in_one_gsm7_part():
    for text in (SPANISH, QUECHUA):
        assert choose_encoding(text) == sms_pdu.UCS2
        fitted = to_gsm7(text)
        assert choose_encoding(fitted) == sms_pdu.GSM7
        assert len(submit_pdus("+51987000101", fitted, 1)) == 1
    assert "Evacue" in to_gsm7(SPANISH) and "señalada" in to_gsm7(SPANISH)
    assert "¿Recibio?" in to_gsm7(SPANISH)


def test_a_text_with_a_character_without_stand_in_is_left_whole():
    for text in ("洪水警报 Quebrada: 2.6 m", "Паводок á"):
        assert to_gsm7(text) == text


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_to_gsm7_is_gsm7_or_the_text_itself(text):
    fitted = to_gsm7(text)
    assert fitted == text or fits_gsm7(fitted)
    if fits_gsm7(text):
        assert fitted == text


WORD = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyzáéíóúñ0123456789.:"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.lists(WORD, min_size=1, max_size=60))
def test_parts_are_cut_between_words(words):
    text = " ".join(words)
    encoding = choose_encoding(text)
    parts = split_units(text, encoding)
    joined = "".join(_text(part, encoding) for part in parts)
    assert joined == text
    if len(parts) < len(sms_pdu._split(sms_pdu._units(text, encoding), _multi(encoding), True)):
        return  # cutting at words would have cost a part: the text is cut where it must be
    for part in parts[:-1]:
        # Words are at most 12 characters, well inside the slack: every cut
        # falls after a space.
        assert _text(part, encoding).endswith(" ")


def _multi(encoding):
    return 153 if encoding == sms_pdu.GSM7 else 67


def _text(part, encoding):
    if encoding == sms_pdu.GSM7:
        return sms_pdu.septets_to_text(part)
    return struct.pack(">%dH" % len(part), *part).decode("utf-16-be")


def _as_deliver(submit_hex):
    """A DELIVER with the SUBMIT's DCS and user data, for our decoder."""
    tpdu = bytes.fromhex(submit_hex[2:])  # drop the empty SMSC field
    first = tpdu[0]
    address_digits = tpdu[2]
    pos = 2 + 2 + (address_digits + 1) // 2
    address = tpdu[2:pos]
    dcs = tpdu[pos + 1]
    user_data = tpdu[pos + 3:]  # after PID, DCS and the one-octet relative VP
    deliver = bytes([first & 0x40]) + address + bytes([0, dcs]) + bytes(7) + user_data
    return "00" + deliver.hex()


def test_spanish_shift_table_keeps_accents_in_one_part():
    (pdu, _), = submit_pdus("+51987000101", SPANISH, 7, shift="es")
    deliver = _as_deliver(pdu)
    # DELIVER: first, OA (2 + 6 octets), PID, DCS, SCTS (7), UDL, then the UDH.
    assert deliver[2 + 2 * 19:2 + 2 * 23].upper() == "03240102"
    assert decode_pdu(deliver).text == SPANISH


@pytest.mark.parametrize("letter, code", [("á", 0x61), ("í", 0x69), ("ó", 0x6F), ("ú", 0x75),
                                          ("Á", 0x41), ("Í", 0x49), ("Ó", 0x4F), ("Ú", 0x55),
                                          ("ç", 0x09), ("€", 0x65)])
def test_spanish_shift_codes_are_those_of_ts_23038_a22(letter, code):
    assert split_units(letter, sms_pdu.GSM7, sms_pdu.SPANISH_SHIFT) == [[0x1B, code]]


def test_spanish_shift_part_sizes_are_155_alone_and_149_split():
    accent = "á"  # two septets with the shift table
    assert len(submit_pdus("+51987000101", "a" * 153 + accent, 1, shift="es")) == 1   # 155
    assert len(submit_pdus("+51987000101", "a" * 154 + accent, 1, shift="es")) == 2   # 156
    parts = split_units("x" * 300 + accent, sms_pdu.GSM7, sms_pdu.SPANISH_SHIFT, (5, 4))
    assert max(len(p) for p in parts) == 149


def test_the_shift_table_is_not_used_when_gsm7_suffices_or_cannot_help():
    (plain, _), = submit_pdus("+51987000101", "Evacue ya", 1, shift="es")
    assert plain == submit_pdus("+51987000101", "Evacue ya", 1)[0][0]
    (chinese, _), = submit_pdus("+51987000101", "洪水 á", 1, shift="es")
    assert chinese == submit_pdus("+51987000101", "洪水 á", 1)[0][0]
    with pytest.raises(sms_pdu.PduError, match="no single shift table"):
        submit_pdus("+51987000101", "Evacúe", 1, shift="xx")
