"""What the modem accepted is never lost in a way that repeats it (issue 11,
fault 4): a real SQLite file locked by another connection right after the
modem emulator (on a pty) accepted a message, a second part refused by the
network, and a dispatcher process killed at the moment a part is accepted."""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

from huaico.alerts.dispatch import Dispatcher
from huaico.rules import engine as rules
from huaico.sms.modem import Modem
from huaico.sms.modem_emulator import decode_submit
from huaico.store import db
from tests.fixtures.alerting import rule as make_rule

T0 = 1_800_000_000
WAIT = 30.0  # upper bound on a loaded 2-core machine, not a measurement


def one_warning(adb, config):
    """One warning for one number, in Spanish, two GSM-7 parts: the site's
    action is long (a text fitted to one part could not show these faults)."""
    config["groups"][0]["numbers"] = ["+51987654321"]
    config["sites"] = [{"name": "chosica", "actions": {"es": {"warning": (
        "Salgan todos por la calle Los Pinos hacia el colegio de la loma y esperen alli "
        "al serenazgo.")}}}]
    config["alerts"]["retry_base_s"] = 1
    config["alerts"]["retry_max_s"] = 2
    device = adb.add_device("0a0b0c0d", "g1")
    adb.add_rule(make_rule(kind="above", channel="water_level", levels={"warning": 1.0},
                           place="Quebrada Pedregal, puente de la avenida principal"))
    adb.store(rules.RuleEngine(adb.database, config), device, [(4, 0, T0, 1500, 0)], T0)
    assert adb.rows("SELECT count(*) FROM outbox WHERE transport = 'sms'") == [(1,)]


def texts(emulator):
    return [decode_submit(record["hex"]) for record in emulator.sent]


def test_sent_commit_failing_after_the_modem_accepted_sends_once(alert_db, alert_config,
                                                                  modem_emulator):
    one_warning(alert_db, alert_config)
    locker = sqlite3.connect(str(alert_db.path), isolation_level=None,
                             check_same_thread=False)
    locked = threading.Event()

    def lock_the_database(record):
        # Another writer takes the database the moment the modem accepts.
        if not locked.is_set():
            locker.execute("BEGIN IMMEDIATE")
            locked.set()
            threading.Timer(4.0, locker.execute, ["COMMIT"]).start()

    modem_emulator.on_sent = lock_the_database
    database = db.open_db(alert_db.path)
    database.execute("PRAGMA busy_timeout=200")  # the lock outlasts many passes
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    started = time.monotonic()
    dispatcher = Dispatcher(database, alert_config, sms=modem, poll_s=0.2,
                            clock=lambda: T0 + time.monotonic() - started)
    dispatcher.start()
    try:
        deadline = time.monotonic() + WAIT
        while alert_db.rows("SELECT status FROM outbox WHERE transport = 'sms'") != [("sent",)]:
            assert time.monotonic() < deadline, "never recorded as sent"
            time.sleep(0.1)
    finally:
        dispatcher.stop()
        modem.close()
        database.conn.close()
    parts = texts(modem_emulator)
    assert [part["concat"][2] for part in parts] == [1, 2], "sent more than once"
    refs = json.loads(alert_db.rows("SELECT refs FROM outbox WHERE transport = 'sms'")[0][0])
    assert refs == [str(record["mr"]) for record in modem_emulator.sent]
    assert alert_db.rows("SELECT copies, inflight FROM outbox") == [(1, 0)]


def test_second_part_refused_resends_only_that_part(alert_db, alert_config, modem_emulator):
    one_warning(alert_db, alert_config)
    modem_emulator.fail_sends(38, count=2, after=1)  # part 2 refused twice
    modem = Modem(modem_emulator.path, command_timeout=2.0)
    try:
        dispatcher = Dispatcher(alert_db.database, alert_config, sms=modem)
        assert dispatcher.step(T0) == {"retry": 1}
        assert dispatcher.step(T0 + 10) == {"retry": 1}
        assert dispatcher.step(T0 + 20) == {"sent": 1}
    finally:
        modem.close()
    parts = texts(modem_emulator)
    assert [part["concat"][2] for part in parts] == [1, 2]
    assert parts[0]["concat"][0] == parts[1]["concat"][0], "the phone could not join them"
    refs = json.loads(alert_db.rows("SELECT refs FROM outbox")[0][0])
    assert refs == [str(record["mr"]) for record in modem_emulator.sent]


_DISPATCH_ONCE = """
import json, sys, time
from huaico.alerts.dispatch import Dispatcher
from huaico.sms.modem import Modem
from huaico.store import db
Dispatcher(db.open_db(sys.argv[1]), json.loads(sys.argv[3]),
           sms=Modem(sys.argv[2], command_timeout=2.0)).step(float(sys.argv[4]))
time.sleep(60)
"""


def dispatch_until_killed(adb, config, emulator, now):
    """A dispatcher process, killed the moment the modem accepts a part."""
    process = subprocess.Popen(
        [sys.executable, "-c", _DISPATCH_ONCE, str(adb.path), emulator.path,
         json.dumps(config), str(now)], env=dict(os.environ, PYTHONPATH=os.getcwd()))
    emulator.on_sent = lambda record: os.kill(process.pid, signal.SIGKILL)
    try:
        assert process.wait(WAIT) == -signal.SIGKILL
    finally:
        emulator.on_sent = None


def dispatch(adb, config, emulator, now):
    """One pass in this process, as a restarted gateway makes it."""
    modem = Modem(emulator.path, command_timeout=2.0)
    try:
        return Dispatcher(adb.database, config, sms=modem).step(now)
    finally:
        modem.close()


def test_crash_after_accept_repeats_once_marked_and_never_a_third_time(
        alert_db, alert_config, modem_emulator):
    one_warning(alert_db, alert_config)
    dispatch_until_killed(alert_db, alert_config, modem_emulator, T0)
    assert alert_db.rows("SELECT status, copies, inflight FROM outbox") == [("pending", 1, 1)]
    dispatch_until_killed(alert_db, alert_config, modem_emulator, T0 + 1)
    assert alert_db.rows("SELECT status, copies, inflight FROM outbox") == [("pending", 2, 1)]
    assert dispatch(alert_db, alert_config, modem_emulator, T0 + 2) == {"unconfirmed": 1}
    first, second = texts(modem_emulator)
    assert not first["text"].startswith("REPETIDO")
    assert second["text"].startswith("REPETIDO: " + first["text"][:20])
    assert first["concat"][0] != second["concat"][0]  # two messages, never joined
    assert alert_db.rows("SELECT status, inflight FROM outbox") == [("sent", 0)]
    assert alert_db.rows("SELECT value FROM counters WHERE name = 'messages_unconfirmed'") == [
        (1,)]


def test_crash_then_restart_sends_the_marked_repeat(alert_db, alert_config, modem_emulator):
    one_warning(alert_db, alert_config)
    dispatch_until_killed(alert_db, alert_config, modem_emulator, T0)
    assert dispatch(alert_db, alert_config, modem_emulator, T0 + 1) == {"sent": 1}
    parts = texts(modem_emulator)
    assert len(parts) == 3  # part 1 of the first copy, then the whole repeat
    assert [part["text"].startswith("REPETIDO: ") for part in parts] == [False, True, False]
    assert parts[1]["concat"][:2] == parts[2]["concat"][:2]
    refs = json.loads(alert_db.rows("SELECT refs FROM outbox")[0][0])
    assert refs == [str(record["mr"]) for record in modem_emulator.sent[1:]]
