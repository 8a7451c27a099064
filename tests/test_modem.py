"""huaico.sms.modem against the pty modem emulator: alerts in Spanish, Chinese
and GSM-7 with extension characters reach the modem as correct concatenated
PDUs (checked with the independent decoder smspdudecoder), errors map to
retryable or not, every wait is bounded, replies and delivery reports come
back."""
import os
import select
import time

import pytest

from huaico.sms.backend import SmsError, SmsTimeout
from huaico.sms.modem import Modem, csq_to_dbm
from huaico.sms.pdu import submit_pdus
from tests.test_sms_pdu import independent_decode

SPANISH = ("Alerta de huaico: evacúen la quebrada Santa Rosa ahora. ¿Dónde ir? "
           "Al colegio de la loma, ñandú y niños primero. Responda ACK.")
CHINESE = ("山洪警报：河水水位迅速上涨，请立即撤离河道附近的住宅，前往学校高地避难。"
           "请带上老人和儿童，不要试图穿越河流。社区志愿者将在桥头集合。收到请回复ACK。")
GSM_EXT = ("ALERTA NIVEL 3 {rio Rimac} [sensor 12]: 4.2 m, sube 0.3 m/h. "
           "Costo de evacuacion 0 €. Use ruta ~norte~ | puente cerrado \\ "
           "Repetimos: {rio Rimac} [sensor 12] nivel critico, evacuen ahora.")


@pytest.fixture
def modem(modem_emulator):
    m = Modem(modem_emulator.path, command_timeout=2.0, send_timeout=2.0, ready_timeout=10.0)
    yield m
    m.close()


def _read_until(fd, end, timeout=3.0):
    data = b""
    deadline = time.monotonic() + timeout
    while not data.endswith(end):
        left = deadline - time.monotonic()
        assert left > 0 and select.select([fd], [], [], left)[0], data
        data += os.read(fd, 1)
    return data


def test_a_send_is_recorded_before_it_is_answered(modem_emulator):
    # Whoever has read +CMGS must find the part in `sent`. The record hook
    # looks at the line while it runs: no answer may be waiting there yet.
    # An emulator that answers first has its +CMGS readable by then; one
    # that records first cannot, so this check never races.
    fd = os.open(modem_emulator.path, os.O_RDWR | os.O_NOCTTY)
    answered_first = []
    modem_emulator.on_sent = lambda record: answered_first.append(
        bool(select.select([fd], [], [], 0.5)[0]))
    try:
        for command in (b"ATE0\r", b"AT+CMGF=0\r"):
            os.write(fd, command)
            _read_until(fd, b"OK\r\n")
        (hex_pdu, length), = submit_pdus("+51987654321", "hola", 0)
        os.write(fd, b"AT+CMGS=%d\r" % length)
        _read_until(fd, b"> ")
        os.write(fd, hex_pdu.encode() + b"\x1a")
        assert b"+CMGS: 1\r\n" in _read_until(fd, b"OK\r\n")
        assert answered_first == [False]
        assert [r["hex"] for r in modem_emulator.sent] == [hex_pdu]
    finally:
        os.close(fd)


def reassemble(records):
    decoded = [independent_decode(r["hex"]) for r in records]
    concat = [d["concat"] for d in decoded]
    return decoded, "".join(d["text"] for d in decoded), concat


@pytest.mark.parametrize("text,dcs", [(SPANISH, 0x08), (CHINESE, 0x08), (GSM_EXT, 0x00)])
def test_alert_arrives_as_concatenated_parts(modem, modem_emulator, text, dcs):
    assert len(text) > 70
    refs = modem.send("+51987654321", text)
    records = modem_emulator.sent
    assert len(records) == len(refs) >= 2
    assert refs == [str(r["mr"]) for r in records]
    decoded, joined, concat = reassemble(records)
    assert joined == text
    assert {c["reference"] for c in concat} == {concat[0]["reference"]}
    assert [c["part_number"] for c in concat] == list(range(1, len(records) + 1))
    assert all(c["parts_count"] == len(records) for c in concat)
    assert all(d["recipient"] == "+51987654321" and d["dcs"] == dcs for d in decoded)


def test_two_messages_use_different_concatenation_references(modem, modem_emulator):
    modem.send("+51987654321", SPANISH)
    first = len(modem_emulator.sent)
    modem.send("+51987654321", SPANISH)
    refs = {independent_decode(r["hex"])["concat"]["reference"] for r in modem_emulator.sent}
    assert len(refs) == 2 and len(modem_emulator.sent) == 2 * first


def test_national_number_and_single_part(modem, modem_emulator):
    assert len(modem.send("987654321", "Lluvia fuerte")) == 1
    d = independent_decode(modem_emulator.sent[0]["hex"])
    assert d["recipient"] == "987654321" and d["text"] == "Lluvia fuerte"
    assert d["toa"] == "unknown"


def test_cms_38_is_retryable_and_21_is_not(modem, modem_emulator):
    modem_emulator.fail_sends(38)
    with pytest.raises(SmsError) as e:
        modem.send("+51987654321", "hola")
    assert (e.value.code, e.value.retryable) == (38, True)
    assert "network out of order" in e.value.text
    modem_emulator.fail_sends(21)
    with pytest.raises(SmsError) as e:
        modem.send("+51987654321", "hola")
    assert (e.value.code, e.value.retryable) == (21, False)
    assert modem.send("+51987654321", "hola") == ["1"]


def test_failure_in_second_part_reports_parts_already_sent(modem, modem_emulator):
    modem_emulator.fail_sends(42, after=1)
    with pytest.raises(SmsError) as e:
        modem.send("+51987654321", SPANISH)
    assert e.value.code == 42 and e.value.retryable
    assert e.value.sent_refs == ["1"]


def test_plain_error_then_recovery(modem, modem_emulator):
    modem_emulator.error_sends(1)
    with pytest.raises(SmsError) as e:
        modem.send("+51987654321", "hola")
    assert e.value.code is None and e.value.retryable
    assert len(modem.send("+51987654321", "hola")) == 1


def test_send_timeout_is_bounded_and_modem_recovers(modem_emulator):
    m = Modem(modem_emulator.path, command_timeout=1.0, send_timeout=1.5)
    try:
        modem_emulator.hang_sends(1)
        start = time.monotonic()
        with pytest.raises(SmsTimeout) as e:
            m.send("+51987654321", "hola")
        assert time.monotonic() - start < 5
        assert e.value.retryable
        assert len(m.send("+51987654321", "otra vez")) == 1
        assert independent_decode(modem_emulator.sent[-1]["hex"])["text"] == "otra vez"
    finally:
        m.close()


def test_silent_modem_times_out(modem_emulator):
    m = Modem(modem_emulator.path, command_timeout=1.0, send_timeout=1.0)
    try:
        modem_emulator.silence(3)
        start = time.monotonic()
        with pytest.raises(SmsTimeout):
            m.send("+51987654321", "hola")
        assert time.monotonic() - start < 3
        probe = m.probe()
        assert probe["ok"] is False and probe["error"]
    finally:
        m.close()


def test_lost_registration(modem, modem_emulator):
    modem_emulator.drop_network()
    info = modem.probe()
    assert info["registration"] == "searching" and not info["registered"]
    with pytest.raises(SmsError) as e:
        modem.send("+51987654321", "hola")
    assert (e.value.code, e.value.retryable) == (331, True)
    modem_emulator.restore_network()
    assert len(modem.send("+51987654321", "hola")) == 1


def test_probe(modem, modem_emulator):
    info = modem.probe()
    assert info["ok"] and info["sim_ready"] and info["registered"]
    assert info["rssi"] == 21 and info["dbm"] == -71
    assert info["operator"] == "Claro PE" and not info["roaming"]
    modem_emulator.registration = 5
    assert modem.probe()["roaming"] is True
    modem_emulator.sim_inserted = False
    info = modem.probe()
    assert info["sim"] == "NOT INSERTED" and not info["sim_ready"]
    assert csq_to_dbm(0) == -113 and csq_to_dbm(31) == -51 and csq_to_dbm(99) is None


def test_unsolicited_lines_in_the_middle_of_commands(modem, modem_emulator):
    modem.probe()
    modem_emulator.inject_in_next_answer("RING", '+CMTI: "SM",3')
    assert modem.probe()["ok"]
    modem_emulator.inject_in_next_answer("RING")
    refs = modem.send("+51987654321", "hola")
    assert refs == [str(modem_emulator.sent[-1]["mr"])]


def test_incoming_ack_read_then_deleted_when_told(modem, modem_emulator):
    modem_emulator.deliver("+51911222333", "ACK 42")
    modem_emulator.deliver("+51944555666", "", parts=["Recibido, evacuamos ", "la quebrada ñ ¿ok?"],
                           ucs2=True)
    messages = modem.read_incoming()
    assert [(m.number, m.text, m.refs) for m in messages] == [
        ("+51911222333", "ACK 42", (1,)),
        ("+51944555666", "Recibido, evacuamos la quebrada ñ ¿ok?", (2, 3))]
    assert messages[0].time.utcoffset().total_seconds() == -5 * 3600
    assert sorted(modem_emulator.inbox) == [1, 2, 3]  # nothing deleted by reading
    assert modem.read_incoming() == messages
    modem.delete_incoming([1, 2, 3])
    assert modem_emulator.inbox == {}
    assert modem.read_incoming() == []
    modem.delete_incoming([1])  # already gone: no error


def test_incomplete_multipart_stays_on_sim_until_whole(modem, modem_emulator):
    modem_emulator.deliver("+51944555666", "", parts=["Recibido, ", "evacuamos"], reference=7)
    del modem_emulator.inbox[2]  # the second part has not arrived yet
    assert modem.read_incoming() == []
    assert sorted(modem_emulator.inbox) == [1]
    modem_emulator.deliver("+51944555666", "", parts=["Recibido, ", "evacuamos"], reference=7)
    del modem_emulator.inbox[2]  # its first part again: the SMSC resent it
    [message] = modem.read_incoming()
    assert (message.text, message.refs) == ("Recibido, evacuamos", (1, 3))


def test_parts_that_never_complete_are_handed_out_after_a_while(modem_emulator):
    modem = Modem(modem_emulator.path, command_timeout=2.0, partial_after_s=0.2)
    try:
        modem_emulator.deliver("+51944555666", "", parts=["uno ", "dos ", "tres"], reference=9)
        del modem_emulator.inbox[2]
        assert modem.read_incoming() == []
        time.sleep(0.3)
        [message] = modem.read_incoming()
        assert (message.text, message.refs) == ("uno [...]tres", (1, 3))
        assert modem.counters["partial_sms"] == 1
        modem.delete_incoming(message.refs)
        assert modem_emulator.inbox == {} and modem.read_incoming() == []
    finally:
        modem.close()


def test_garbled_stored_pdu_is_counted_and_removed(modem, modem_emulator):
    modem_emulator.store_raw("0004", 1)
    modem_emulator.deliver("+51911222333", "ACK 7")
    assert [m.text for m in modem.read_incoming()] == ["ACK 7"]
    assert modem.counters["bad_pdu"] == 1 and sorted(modem_emulator.inbox) == [2]


def test_delivery_report(modem, modem_emulator):
    refs = modem.send("+51987654321", "hola", status_report=True)
    assert modem_emulator.sent[-1]["srr"]
    deadline = time.monotonic() + 3
    reports = []
    while not reports and time.monotonic() < deadline:
        reports = modem.delivery_reports()
        time.sleep(0.05)
    assert [(r.ref, r.number, r.status, r.code) for r in reports] == [
        (refs[0], "+51987654321", "delivered", 0)]


def test_delivery_report_arriving_during_a_command_is_kept(modem, modem_emulator):
    modem_emulator.report_status = 0x46  # permanent error: SC-specific "expired"
    refs = modem.send("+51987654321", "hola", status_report=True)
    modem.probe()  # the +CDS is read while this command runs
    reports = modem.delivery_reports()
    assert [(r.ref, r.status) for r in reports] == [(refs[0], "failed")]


def test_reset_waits_for_readiness_and_sets_pdu_mode_again(modem, modem_emulator):
    modem.send("+51987654321", "antes")
    modem.reset()
    assert modem_emulator.cmgf == 0 and not modem_emulator.echo
    assert len(modem.send("+51987654321", "después")) == 1
    assert independent_decode(modem_emulator.sent[-1]["hex"])["text"] == "después"


def test_bad_number_is_not_retryable(modem):
    with pytest.raises(SmsError) as e:
        modem.send("+51 98x", "hola")
    assert not e.value.retryable


def test_loop_url_times_out_instead_of_blocking():
    # loop:// echoes our own bytes back: never an OK, so the timeout must act.
    m = Modem("loop://", command_timeout=0.5)
    try:
        start = time.monotonic()
        with pytest.raises(SmsTimeout):
            m.send("+51987654321", "hola")
        assert time.monotonic() - start < 3
    finally:
        m.close()
