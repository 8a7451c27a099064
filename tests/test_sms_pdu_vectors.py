"""huaico.sms.pdu against PDUs that other encoders made, so that our own
reading of TS 23.038/23.040 is not the only judge of what we send.

The user data below is from python-gsmmodem's test vectors (encodeSmsSubmitPdu,
"Timestamp validity test", 23 septets: 161 bits, so the last octet carries
7 spare bits). TS 23.038 6.1.2.1.1 fills them with zeros; the CR filler of
6.1.2.3.1 is USSD's, and an SMS decoder shows it as a trailing carriage return.
"""
from smspdudecoder.codecs import GSM

from huaico.sms.pdu import submit_pdus

GSMMODEM_USER_DATA = "17D474BB3CA787DB70903DCC4E93D3F43C885E9ED301"


def test_seven_spare_bits_are_zero_as_other_encoders_send_them():
    (pdu, _), = submit_pdus("+27820001111", "Timestamp validity test", 0)
    assert pdu.endswith(GSMMODEM_USER_DATA)


def test_an_independent_decoder_reads_no_trailing_carriage_return():
    for text in ("Timestamp validity test", "x" * 7, "y" * 15, "z" * 159):
        (pdu, _), = submit_pdus("+51987000101", text, 0)
        udl = int(pdu[-2 * (-(-len(text) * 7 // 8)) - 2:][:2], 16)
        assert udl == len(text)
        user_data = pdu[-2 * (-(-len(text) * 7 // 8)):]
        decoded = GSM.decode(user_data)
        assert decoded.rstrip("@") == text and "\r" not in decoded
