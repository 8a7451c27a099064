"""No received SMS is lost between the backend and the database, and none is
acted on twice: the dispatcher stores a message, commits, and only then has
the backend delete it. Real parts: the pty modem emulator with its SIM
inbox, a gammu spool folder, SQLite files; a failing transaction is a real
"database is locked" from a second connection holding the write lock, and a
crash between commit and delete is a modem that refuses AT+CMGD (or, for
the spool, the inbox file back where the crash left it), followed by a new
backend and dispatcher as after a restart."""
import datetime
import shutil
import sqlite3

import pytest

from huaico.alerts.dispatch import Dispatcher
from huaico.sms.modem import Modem
from huaico.sms.spool import GammuSpool
from tests.test_dispatch import T0, queue_alerts

LEADER = "+51911111111"


@pytest.fixture
def raised(alert_db, alert_config):
    """One active warning (alert 1) whose leaders may acknowledge it."""
    engine, device = queue_alerts(alert_db, alert_config, 0)
    alert_db.store(engine, device, [(4, 0, T0, 1500, 0)], T0)
    assert alert_db.rows("SELECT id, acked FROM alerts") == [(1, None)]
    return engine


@pytest.fixture
def write_lock(alert_db):
    """Holds the database's write lock from another connection while active;
    the dispatcher's connection then fails at once instead of waiting."""
    alert_db.database.conn.execute("PRAGMA busy_timeout=0")
    blocker = sqlite3.connect(str(alert_db.path), isolation_level=None)

    class Lock:
        def __enter__(self):
            blocker.execute("BEGIN IMMEDIATE")

        def __exit__(self, *exc):
            blocker.execute("ROLLBACK")

    yield Lock()
    blocker.close()


def acked(alert_db):
    return alert_db.rows("SELECT acked, acked_by FROM alerts WHERE id = 1")[0]


def incoming(alert_db):
    return alert_db.rows("SELECT number, text, action, alert_id FROM incoming ORDER BY id")


def poll(backend, alert_db, alert_config, now):
    return Dispatcher(alert_db.database, alert_config, sms=backend).poll_incoming(now)


def modem(emulator):
    return Modem(emulator.path, command_timeout=2.0)


def test_modem_message_stays_on_sim_when_storing_fails(alert_db, alert_config, raised,
                                                       write_lock, modem_emulator):
    modem_emulator.deliver(LEADER, "ACK 1")
    m = modem(modem_emulator)
    try:
        with write_lock, pytest.raises(sqlite3.OperationalError, match="locked"):
            poll(m, alert_db, alert_config, T0 + 60)
        assert sorted(modem_emulator.inbox) == [1]
        assert acked(alert_db) == (None, None) and incoming(alert_db) == []
        assert poll(m, alert_db, alert_config, T0 + 70) == [("acked", 1)]
    finally:
        m.close()
    assert modem_emulator.inbox == {}
    assert acked(alert_db) == (T0 + 70, LEADER + " (leaders)")
    assert incoming(alert_db) == [(LEADER, "ACK 1", "acked", 1)]
    assert alert_db.tick(raised, T0 + 3600) == []  # acknowledged: no escalation


def test_modem_message_stored_but_not_deleted_is_not_applied_twice(alert_db, alert_config,
                                                                   raised, modem_emulator):
    modem_emulator.deliver(LEADER, "ACK 1")
    modem_emulator.fail_deletes(1)
    m = modem(modem_emulator)
    try:
        assert poll(m, alert_db, alert_config, T0 + 60) == [("acked", 1)]
        assert sorted(modem_emulator.inbox) == [1]  # the delete failed after the commit
    finally:
        m.close()
    restarted = modem(modem_emulator)
    try:
        assert poll(restarted, alert_db, alert_config, T0 + 600) == [("repeat", 1)]
        assert modem_emulator.inbox == {}
        assert poll(restarted, alert_db, alert_config, T0 + 700) == []
    finally:
        restarted.close()
    assert acked(alert_db) == (T0 + 60, LEADER + " (leaders)")
    assert incoming(alert_db) == [(LEADER, "ACK 1", "acked", 1)]


def test_same_text_sent_again_later_is_a_new_message(alert_db, alert_config, raised,
                                                     modem_emulator):
    """The key holds the service centre's time: a leader who texts the same
    words twice is recorded twice, not taken for a re-read."""
    later = datetime.datetime(2024, 3, 14, 15, 30, tzinfo=datetime.timezone.utc)
    modem_emulator.deliver(LEADER, "ACK 1")
    modem_emulator.deliver(LEADER, "ACK 1", when=later)
    m = modem(modem_emulator)
    try:
        assert poll(m, alert_db, alert_config, T0 + 60) == [("acked", 1), ("already_acked", 1)]
    finally:
        m.close()
    assert [row[2] for row in incoming(alert_db)] == ["acked", "already_acked"]


def test_multipart_parts_kept_until_the_whole_message_is_stored(alert_db, alert_config, raised,
                                                                modem_emulator):
    modem_emulator.deliver(LEADER, "", parts=["ACK 1 recibido, ", "evacuamos ya"], reference=5)
    late_part = modem_emulator.inbox.pop(2)
    m = modem(modem_emulator)
    try:
        assert poll(m, alert_db, alert_config, T0 + 60) == []
        assert sorted(modem_emulator.inbox) == [1] and acked(alert_db) == (None, None)
        modem_emulator.inbox[2] = late_part
        assert poll(m, alert_db, alert_config, T0 + 70) == [("acked", 1)]
    finally:
        m.close()
    assert modem_emulator.inbox == {}
    assert incoming(alert_db) == [(LEADER, "ACK 1 recibido, evacuamos ya", "acked", 1)]


def _inbox_file(tmp_path, name, text):
    path = tmp_path / "spool" / "inbox" / name
    path.write_bytes(b"\xfe\xff" + text.encode("utf-16-be"))
    return path


def test_spool_message_stays_when_storing_fails_and_is_not_applied_twice(
        alert_db, alert_config, raised, write_lock, tmp_path):
    spool = GammuSpool(tmp_path / "spool")
    name = "IN20270115_080100_00_%s_00.txt" % LEADER
    inbox_file = _inbox_file(tmp_path, name, "ACK 1")
    with write_lock, pytest.raises(sqlite3.OperationalError, match="locked"):
        poll(spool, alert_db, alert_config, T0 + 60)
    assert inbox_file.exists() and incoming(alert_db) == []
    assert poll(spool, alert_db, alert_config, T0 + 70) == [("acked", 1)]
    processed = tmp_path / "spool" / "processed" / name
    assert not inbox_file.exists() and processed.exists()
    # A crash after the commit and before the move leaves the file in the
    # inbox: put it back, restart, poll.
    shutil.copy(processed, inbox_file)
    assert poll(GammuSpool(tmp_path / "spool"), alert_db, alert_config, T0 + 600) == [
        ("repeat", 1)]
    assert not inbox_file.exists()
    assert acked(alert_db) == (T0 + 70, LEADER + " (leaders)")
    assert incoming(alert_db) == [(LEADER, "ACK 1", "acked", 1)]
