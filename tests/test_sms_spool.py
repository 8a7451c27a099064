"""huaico.sms.spool: files that a real gammu-smsd (Debian's, with gammu's
`dummy` phone in a temporary folder) picks up, sends and files as sent, and
messages it receives read back."""
import os
import shutil
import subprocess
import time

import pytest

from huaico.sms.backend import SmsError
from huaico.sms.spool import GammuSpool, smsdrc

SPANISH = "Alerta de huaico: evacúen la quebrada ahora. ¿Listos? ñandú " * 3
CHINESE = "山洪警报：请立即撤离河道附近的住宅。" * 5


def test_outbox_file_name_and_content(tmp_path):
    spool = GammuSpool(tmp_path, priority="A")
    [ref] = spool.send("+51987654321", SPANISH, status_report=True)
    assert ref.startswith("OUTA") and ref.endswith(".txtd") and "_+51987654321_" in ref
    data = (tmp_path / "outbox" / ref).read_bytes()
    assert data[:2] == b"\xfe\xff" and data[2:].decode("utf-16-be") == SPANISH
    assert [p.name for p in (tmp_path / "outbox").iterdir()] == [ref]  # no temp left
    assert spool.status(ref) == "queued"
    assert spool.probe()["queued"] == 1


def test_names_sort_by_priority_then_age(tmp_path):
    low = GammuSpool(tmp_path, priority="C").send("+1", "later")[0]
    high = GammuSpool(tmp_path, priority="A").send("+1", "first")[0]
    assert sorted([low, high]) == [high, low]


def test_bad_input(tmp_path):
    spool = GammuSpool(tmp_path)
    for number in ("", "+51_9", "51 98", "../x"):
        with pytest.raises(SmsError) as e:
            spool.send(number, "x")
        assert not e.value.retryable
    with pytest.raises(ValueError):
        GammuSpool(tmp_path, priority="AA")


def test_reads_inbox_parts_and_results(tmp_path):
    spool = GammuSpool(tmp_path)
    inbox = tmp_path / "inbox"
    (inbox / "IN20240314_150926_00_+51911222333_00.txt").write_bytes(
        b"\xfe\xff" + "ACK ".encode("utf-16-be"))
    (inbox / "IN20240314_150926_00_+51911222333_01.txt").write_bytes(
        b"\xfe\xff" + "42 ñ".encode("utf-16-be"))
    (inbox / "IN20240314_150930_00_+51944555666_00.txt").write_bytes("sí".encode())
    (inbox / "notes.txt").write_text("not gammu's")
    messages = spool.read_incoming()
    assert [(m.number, m.text) for m in messages] == [
        ("+51911222333", "ACK 42 ñ"), ("+51944555666", "sí")]
    assert messages[0].time.year == 2024
    assert messages[0].refs == ("IN20240314_150926_00_+51911222333_00.txt",
                                "IN20240314_150926_00_+51911222333_01.txt")
    assert spool.read_incoming() == messages  # reading deletes nothing
    spool.delete_incoming([ref for m in messages for ref in m.refs])
    assert spool.read_incoming() == []
    assert sorted(p.name for p in (tmp_path / "processed").iterdir()) == sorted(
        ref for m in messages for ref in m.refs)
    spool.delete_incoming(messages[1].refs)  # already moved: no error
    with pytest.raises(SmsError):
        spool.delete_incoming(["../outbox/IN20240314_150930_00_+5_00.txt"])
    ref = spool.send("+51987654321", "x")[0]
    os.rename(tmp_path / "outbox" / ref, tmp_path / "error" / ref)
    reports = spool.delivery_reports()
    assert [(r.ref, r.number, r.status) for r in reports] == [(ref, "+51987654321", "failed")]
    assert spool.delivery_reports() == []


@pytest.fixture
def gammu_smsd(tmp_path):
    """A real gammu-smsd on gammu's dummy phone; yields (spool, phone dir,
    config path, log path)."""
    if not shutil.which("gammu-smsd") or not shutil.which("gammu"):
        pytest.fail("gammu-smsd is missing: apt-get install gammu gammu-smsd")
    spool_dir = tmp_path / "spool"
    spool = GammuSpool(spool_dir)
    phone = tmp_path / "phone"
    phone.mkdir()
    log_path = tmp_path / "smsd.log"
    config = tmp_path / "smsdrc"
    config.write_text(
        smsdrc(spool_dir, "device = %s/\nmodel = dummy\nconnection = none" % phone)
        + "logfile = %s\ndebuglevel = 1\ncommtimeout = 1\nloopsleep = 1\n"
          "receivefrequency = 1\nchecksecurity = 0\nstatusfrequency = 0\n" % log_path)
    procs = []

    def start():
        proc = subprocess.Popen(["gammu-smsd", "-c", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(proc)
        return proc

    yield spool, phone, config, log_path, start
    for proc in procs:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for(predicate, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_real_gammu_smsd_sends_from_the_spool_and_receives(gammu_smsd):
    spool, phone, config, log_path, start = gammu_smsd
    spanish = spool.send("+51987654321", SPANISH, status_report=True)[0]
    chinese = spool.send("+51987654322", CHINESE)[0]
    # A reply waiting on the (dummy) phone, stored by gammu itself.
    subprocess.run(["gammu", "-c", str(config), "savesms", "TEXT", "-folder", "1", "-unread",
                    "-sender", "+51911222333", "-text", "ACK 42"],
                   check=True, capture_output=True, timeout=30)
    start()
    assert _wait_for(lambda: spool.status(spanish) == "sent" and spool.status(chinese) == "sent"), \
        log_path.read_text(errors="replace")
    log = log_path.read_text(errors="replace")
    # gammu read the UTF-16 text as Unicode and split it into UCS-2 parts.
    assert 'Found 3 sms to "+51987654321"' in log and "Alerta de huaico: evacúen" in log
    assert 'to "+51987654322"' in log
    assert {r.ref: r.status for r in spool.delivery_reports()} == {
        spanish: "sent", chinese: "sent"}
    messages = []
    assert _wait_for(lambda: messages.extend(spool.read_incoming()) or messages), log
    assert [(m.number, m.text) for m in messages] == [("+51911222333", "ACK 42")]
