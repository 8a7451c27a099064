"""huaico.sms.pdu checked against smspdudecoder, an independent decoder from
PyPI, and against PDUs built by the modem emulator's own encoder.

smspdudecoder 2.2 cuts GSM-7 user data by characters after decoding, so a
part holding extension characters (two septets, one character) picks up the
padding as a stray character; independent_decode therefore runs its field
decoders one by one and hands its GSM codec only the septets of the text.
"""
import datetime
from io import StringIO

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from smspdudecoder.codecs import GSM, UCS2
from smspdudecoder.fields import (DCS, SMSC, Address, OutgoingPDUHeader,
                                  UserDataHeader)

from huaico.sms import pdu as sms_pdu
from huaico.sms.pdu import PduError, Reassembler, choose_encoding, decode_pdu, submit_pdus
from tests.modem_emulator import deliver_pdu, status_report_pdu


def independent_decode(hex_pdu):
    """An SMS-SUBMIT decoded with smspdudecoder's field decoders."""
    io = StringIO(hex_pdu)
    SMSC.decode(io)
    header = OutgoingPDUHeader.decode(io)
    assert header["mti"] == "submit" and header["vpf"] == 2
    int(io.read(2), 16)  # TP-MR
    recipient = Address.decode(io)
    assert int(io.read(2), 16) == 0  # TP-PID
    dcs_hex = io.read(2)
    encoding = DCS.decode(StringIO(dcs_hex))["encoding"]
    int(io.read(2), 16)  # TP-VP
    udl = int(io.read(2), 16)
    ud_start = io.tell()
    concat, header_octets = None, 0
    if header["udhi"]:
        udh = UserDataHeader.decode(io)
        header_octets = udh["length"] + 1
        for element in udh["elements"]:
            if element["iei"] in (0x00, 0x08):
                concat = element["data"]
    ud = bytes.fromhex(hex_pdu[ud_start:])
    if encoding == "ucs2":
        assert len(ud) == udl
        text = UCS2.decode(ud[header_octets:].hex())
    else:
        assert encoding == "gsm" and len(ud) == -(-udl * 7 // 8)
        header_septets = -(-header_octets * 8 // 7)
        count = udl - header_septets
        bits = int.from_bytes(ud, "little")
        if len(ud) * 8 - 7 * udl == 7:
            # TS 23.038 6.1.2.1.1: spare bits are zero (CR fill is USSD's).
            assert bits >> (7 * udl) == 0
        bits = (bits >> (7 * header_septets)) & ((1 << (7 * count)) - 1)
        text = GSM.decode(bits.to_bytes(-(-7 * count // 8), "little").hex()) if count else ""
        if count % 8 == 7:
            # GSM.decode reads the zero bits we masked in as one more septet.
            assert text.endswith("@")
            text = text[:-1]
    number = recipient["number"]
    if recipient["toa"]["ton"] == "international":
        number = "+" + number
    return {"recipient": number, "toa": recipient["toa"]["ton"], "text": text,
            "concat": concat, "srr": header["srr"], "dcs": int(dcs_hex, 16), "udl": udl}


def independent_join(pdus, ref):
    """The text of submit_pdus' parts as smspdudecoder reads them; each part
    of a multipart message must carry the concatenation reference asked for."""
    parts = [independent_decode(h) for h, _ in pdus]
    if len(parts) > 1:
        assert [p["concat"]["reference"] for p in parts] == [ref] * len(parts)
        assert [p["concat"]["part_number"] for p in parts] == list(range(1, len(parts) + 1))
        assert all(p["concat"]["parts_count"] == len(parts) for p in parts)
    else:
        assert parts[0]["concat"] is None
    return "".join(p["text"] for p in parts), parts


def test_encoding_choice():
    assert choose_encoding("Nivel 3 {rio} [x] € ~ ^ | \\") == sms_pdu.GSM7
    assert choose_encoding("evacúen") == sms_pdu.UCS2  # ú is not in GSM 03.38
    assert choose_encoding("ñÑüÜ¿¡é") == sms_pdu.GSM7
    assert choose_encoding("洪水") == sms_pdu.UCS2
    assert choose_encoding("\x1b") == sms_pdu.UCS2


@pytest.mark.parametrize("length,parts", [(160, 1), (161, 2), (306, 2), (307, 3)])
def test_gsm7_part_boundaries(length, parts):
    pdus = submit_pdus("+51987654321", "a" * length, 201)
    assert len(pdus) == parts
    assert independent_join(pdus, 201)[0] == "a" * length


@pytest.mark.parametrize("length,parts", [(70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_part_boundaries(length, parts):
    pdus = submit_pdus("+51987654321", "ú" * length, 77)
    assert len(pdus) == parts
    assert independent_join(pdus, 77)[0] == "ú" * length


def test_extension_counts_two_septets_and_is_never_split():
    assert len(submit_pdus("+1", "€" * 80, 1)) == 1
    assert len(submit_pdus("+1", "€" * 80 + "a", 1)) == 2
    # 152 plain septets, then "€": the escape must not end part 1 alone.
    text = "a" * 152 + "€" + "b" * 10
    pdus = submit_pdus("+51987654321", text, 9)
    joined, parts = independent_join(pdus, 9)
    assert joined == text and parts[0]["text"] == "a" * 152


def test_surrogate_pair_never_split():
    text = "a" * 66 + "😀" + "b" * 10
    pdus = submit_pdus("+51987654321", text, 3)
    joined, parts = independent_join(pdus, 3)
    assert joined == text and parts[0]["text"] == "a" * 66


def test_pdu_fields():
    (hex_pdu, length), = submit_pdus("+51987654321", "hola", 0, status_report=True)
    assert hex_pdu.startswith("00")
    assert length == len(hex_pdu) // 2 - 1
    d = independent_decode(hex_pdu)
    assert d["srr"] and d["recipient"] == "+51987654321" and d["dcs"] == 0
    # "hola" packed is E8373B0C (smspdudecoder GSM.encode agrees); VP A7 = 24 h.
    assert hex_pdu == "0031000B911589674523F10000A704E8373B0C"


def test_validity_steps():
    assert sms_pdu.validity_octet(5) == 0
    assert sms_pdu.validity_octet(720) == 143
    assert sms_pdu.validity_octet(1440) == 167
    assert sms_pdu.validity_octet(2 * 1440) == 168
    assert sms_pdu.validity_octet(35 * 1440) == 197


def test_bad_input_is_a_typed_error():
    for number in ("", "+", "abc", "+51 98"):
        with pytest.raises(PduError):
            submit_pdus(number, "x", 0)
    with pytest.raises(PduError):
        submit_pdus("+1", "\ud800", 0)
    with pytest.raises(PduError):
        submit_pdus("+1", "x", 256)
    with pytest.raises(PduError):
        submit_pdus("+1", "ú" * 67 * 256, 0)
    for garbage in ("", "zz", "00", "0004", "0024", "0004" + "0B91" + "15", "07911234"):
        with pytest.raises(PduError):
            decode_pdu(garbage)


WHEN = datetime.datetime(2024, 3, 14, 15, 9, 26,
                         tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))


@pytest.mark.parametrize("text,ucs2", [("ACK 42", False), ("ack {€} [x]", False),
                                       ("Recibido ñ ¿ok? evacúen", True), ("收到", True)])
def test_decode_deliver_from_emulator(text, ucs2):
    hex_pdu, length = deliver_pdu("+51911222333", text, WHEN, ucs2)
    d = decode_pdu(hex_pdu, length)
    assert (d.number, d.text, d.time, d.concat) == ("+51911222333", text, WHEN, None)


def test_reassembly_of_gsm7_parts_in_any_order():
    parts = ["Parte uno {a} ", "parte dos € ", "fin"]
    pdus = [deliver_pdu("+51911222333", p, WHEN, False, (7, 3, i + 1))
            for i, p in enumerate(parts)]
    r = Reassembler()
    assert r.add(decode_pdu(*pdus[2])) is None
    assert r.add(decode_pdu(*pdus[0])) is None
    assert r.pending() == [("+51911222333", 7, 3)]
    assert r.add(decode_pdu(*pdus[1])) == ("+51911222333", "".join(parts), WHEN)
    assert r.pending() == []


def test_status_report():
    hex_pdu, length = status_report_pdu(17, "+51987654321", WHEN, 0x00)
    report = decode_pdu(hex_pdu, length)
    assert (report.reference, report.number, report.status, report.outcome) == (
        17, "+51987654321", 0, "delivered")
    assert decode_pdu(*status_report_pdu(1, "+1", WHEN, 0x21)).outcome == "pending"
    assert decode_pdu(*status_report_pdu(1, "+1", WHEN, 0x41)).outcome == "failed"


def test_alphanumeric_sender():
    # "Claro" as an alphanumeric TP-OA (TON 5), packed GSM-7.
    septets = sms_pdu.pack_septets([sms_pdu.GSM7_BASIC.index(c) for c in "Claro"])
    tpdu = ("04%02XD0%s0000%s%02X%s" % (len(septets) * 2, septets.hex(),
                                        "42304151906228", 2, "C834"))
    assert decode_pdu("00" + tpdu).number == "Claro"


text_chars = st.one_of(
    st.sampled_from(sms_pdu.GSM7_BASIC.replace("\x1b", "")),
    st.sampled_from(sorted(sms_pdu.GSM7_EXTENSION)),
    st.characters(blacklist_categories=("Cs",)),
    st.sampled_from("😀🌊⚠️"),
)


@settings(max_examples=300, deadline=None)
@given(st.text(text_chars, max_size=400), st.integers(0, 255), st.booleans())
def test_property_independent_decoder_gets_the_text_back(text, ref, srr):
    pdus = submit_pdus("+51987654321", text, ref, srr)
    joined, parts = independent_join(pdus, ref)
    assert joined == text
    assert all(p["srr"] == srr for p in parts)
    for hex_pdu, length in pdus:
        # 14 octets of header for an 11-digit number, at most 140 of user data.
        assert length == len(hex_pdu) // 2 - 1 <= 14 + 140


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_property_garbage_never_crashes_the_decoder(data):
    try:
        decode_pdu(data.hex())
    except PduError:
        pass
