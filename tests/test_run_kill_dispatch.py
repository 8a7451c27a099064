"""`kill -9` of `huaico run` at random moments while rules raise alerts and
the dispatcher sends them through the modem emulator on a pty (issues 9 and
11): every alert raised for a stored frame has its messages, each sent or
pending, none failed, no part lost; no message is sent more than twice, and
every second copy carries the repeat mark.

HUAICO_DISPATCH_KILLS sets the number of kills (default 15: about a minute
here); HUAICO_KILL_SEED replays a run (the seed is printed when it fails).
The modem emulator lives in this process, so it keeps every PDU it accepted
across the gateway's deaths: it is the record of what went out.
"""
import collections
import json
import os
import random
import signal
import time

from huaico import config as config_mod
from huaico.alerts import templates
from huaico.protocol import link
from huaico.rules import engine as rules
from huaico.sms.modem_emulator import decode_submit
from huaico.store import db
from tests.test_run import Feeder, start_gateway
from tests.test_run_recovery import wait_for

KILLS = int(os.environ.get("HUAICO_DISPATCH_KILLS", "15"))
WAIT = 60.0  # upper bound on a loaded 2-core machine, not a measurement
LEVEL = 4  # water_level, mm
NUMBERS = ("+51987654321", "+51911111111")
# An episode: watch (1.5 m), warning (2.5 m), all clear (0.3 m).
EPISODE = (1500, 2500, 300)
REPEAT = templates.repeat("es", "")


def configure(home, modem):
    text = config_mod.DEFAULT_TOML
    for old, new in (
            ('backend = "none"', 'backend = "modem"'),
            ('port = ""', 'port = "%s"' % modem.path),
            ("cmgs_timeout_s = 60", "cmgs_timeout_s = 5"),
            ("rate_limit_per_hour = 12", "rate_limit_per_hour = 0"),
            ("retry_base_s = 5", "retry_base_s = 1"),
            ("retry_max_s = 600", "retry_max_s = 2"),
            ("coalesce_s = 60", "coalesce_s = 0"),  # one SMS per event, as counted here
            # Board times here lie in the past only to stay clear of the
            # clock; late-data reports have their own tests (test_alert_times).
            ("late_after_s = 900", "late_after_s = 864000"),
            ("escalate_after_min = 15", "escalate_after_min = 0"),
            ("numbers = []", "numbers = %s" % json.dumps(list(NUMBERS)))):
        assert old in text, old
        text = text.replace(old, new, 1)
    (home.path / "huaico.toml").write_text(text)
    rule = rules.Rule("river", "above", {"watch": 1.0, "warning": 2.0}, channel="water_level",
                      place="Quebrada Pedregal, puente")
    row = rule.to_row()
    row["created"] = row["updated"] = time.time()
    with db.transaction(home.database) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)"
                     % (", ".join(row), ", ".join("?" * len(row))), list(row.values()))


class StormFeeder(Feeder):
    """Feeder's resend-until-acked, with river levels that cycle through
    episodes, one reading a minute of board time."""

    def __init__(self, pair, board):
        super().__init__(pair, board)
        self.when = int(time.time()) - 86400

    def send_new(self, count):
        for _ in range(count):
            self.when += 60
            mm = EPISODE[(self.board.seq) % len(EPISODE)]
            raw = self.board.frame([(LEVEL, 0, 0, mm, 0)], time=self.when)
            self.unacked[self.board.seq] = (raw, time.monotonic())
            self._write(link.encode(raw))
            self.sent += 1


def level(mm):
    return 2 if mm >= 2000 else 1 if mm >= 1000 else 0


def fits(parts, total, text):
    """Whether parts {seq: text} can be those of text split in total parts:
    the first starts it, the last ends it, any other lies inside."""
    return all((text.startswith(piece) if seq == 1 else
                text.endswith(piece) if seq == total else piece in text)
               for seq, piece in parts.items())


def copies_by_row(database, emulator):
    """What the modem got of each SMS row: {row id: [(text, parts received,
    parts expected)]}. The parts of one copy share a concatenation
    reference, which the dispatcher derives from the row and the copy
    (row id * 2 + copy - 1, mod 256): with the text it names the row, also
    for a copy cut short by a kill and after the 8-bit reference wraps. A
    single-part message is known by its text alone."""
    rows = database.execute(
        "SELECT id, recipient, body FROM outbox WHERE transport = 'sms'").fetchall()
    clusters = collections.defaultdict(list)  # (number, ref, total) -> [[{seq: text}, last]]
    singles = []
    for record in emulator.sent:
        part = decode_submit(record["hex"])
        if part["concat"] is None:
            singles.append((part["number"], part["text"]))
            continue
        ref, total, seq = part["concat"]
        runs = clusters[(part["number"], ref, total)]
        # A reference comes back for another row only 128 rows later:
        # parts far apart in time are another copy.
        if not runs or record["time"] - runs[-1][1] > 5.0:
            runs.append([{}, record["time"]])
        assert seq not in runs[-1][0], "a part of one copy sent twice: %r" % (part,)
        runs[-1][0][seq] = part["text"]
        runs[-1][1] = record["time"]
    copies = collections.defaultdict(list)
    for (number, ref, total), runs in clusters.items():
        for parts, _ in runs:
            text = "".join(parts.get(seq, "") for seq in range(1, total + 1))
            found = [(row_id, marked) for row_id, recipient, body in rows
                     for marked in (0, 1)
                     if recipient == number and (row_id * 2 + marked) % 256 == ref
                     and fits(parts, total, (REPEAT if marked else "") + body)]
            assert len(found) == 1, ("parts no single row explains", number, ref, parts, found)
            copies[found[0][0]].append((text, len(parts), total))
    for number, text in singles:
        body = text[len(REPEAT):] if text.startswith(REPEAT) else text
        found = [row_id for row_id, recipient, row_body in rows
                 if recipient == number and row_body == body]
        assert found, "the modem sent a message no row holds: %r" % text
        copies[found[0]].append((text, 1, 1))
    return copies


def test_kill_9_while_dispatching_loses_no_message_and_marks_every_repeat(
        gateway_home, pty_pair, modem_emulator):
    board = gateway_home.add("river1")
    configure(gateway_home, modem_emulator)
    feeder = StormFeeder(pty_pair, board)
    seed = int(os.environ.get("HUAICO_KILL_SEED", time.time_ns()))
    print("HUAICO_KILL_SEED=%d HUAICO_DISPATCH_KILLS=%d" % (seed, KILLS))
    rng = random.Random(seed)
    for _ in range(KILLS):
        gateway = start_gateway(gateway_home, pty_pair.path)
        kill_at = time.monotonic() + rng.uniform(0.6, 1.6)
        if rng.random() < 0.5:
            # Half the kills land in the modem's hands: the moment it has
            # accepted the n-th part, before the gateway reads +CMGS.
            countdown = [rng.randint(1, 4)]

            def kill_on_accept(record, pid=gateway.pid, countdown=countdown):
                countdown[0] -= 1
                if countdown[0] == 0:
                    os.kill(pid, signal.SIGKILL)
            modem_emulator.on_sent = kill_on_accept
            kill_at += 2.0
        while time.monotonic() < kill_at and gateway.poll() is None:
            feeder.send_new(rng.randint(0, 1))
            feeder.resend()
            feeder.read_acks(rng.uniform(0.05, 0.2))
        modem_emulator.on_sent = None
        gateway.send_signal(signal.SIGKILL)
        gateway.wait()
        gateway.stdout.close()
        gateway.stderr.close()
    gateway = start_gateway(gateway_home, pty_pair.path)
    # A new frame too: its ack shows this last gateway is up (and has its
    # SIGTERM handler) before it is asked to stop.
    feeder.send_new(1)
    try:
        deadline = time.monotonic() + WAIT
        while feeder.unacked and time.monotonic() < deadline:
            feeder.resend(older_than=0.3)
            feeder.read_acks(0.05)
        assert not feeder.unacked, "never acked: %s" % sorted(feeder.unacked)[:20]
        wait_for(lambda: not gateway_home.open().execute(
            "SELECT 1 FROM outbox WHERE status = 'pending'").fetchone(),
            "every message to be sent after the last restart")
    finally:
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=WAIT)
    assert gateway.returncode == 0, err.decode()[-3000:]

    database = gateway_home.open()
    # Alerts for every stored frame: the levels of the stored readings give
    # the transitions the rule must have made (no hysteresis, no minimum
    # duration), each an event with one SMS per number. A writer batch's
    # readings reach the rules in reading-time order, and a reading older
    # than one taken in an earlier batch is passed over (gateway/rules/engine.py):
    # the batches are the gateway's to choose, so what is checked holds for
    # any batching. Readings that were the newest when they arrived are
    # evaluated in every batching, in this order; a resend evaluated between
    # them can add transitions, never remove one.
    levels = [0]
    newest = None
    for t, mm in database.execute(
            "SELECT time, value FROM readings WHERE channel = ? ORDER BY rowid", [LEVEL]):
        if newest is None or t >= newest:
            newest = t
            levels.append(level(mm))
    assert sorted(feeder.acked) == sorted(
        seq for (seq,) in database.execute("SELECT DISTINCT seq FROM readings"))
    changes = sum(1 for a, b in zip(levels, levels[1:]) if a != b)
    by_time = dict(database.execute(
        "SELECT time, value FROM readings WHERE channel = ?", [LEVEL]).fetchall())
    names = {"clear": 0, "watch": 1, "warning": 2}
    events = database.execute(
        "SELECT alert_id, level, reading_time FROM alert_events ORDER BY id").fetchall()
    assert len(events) >= changes, (len(events), changes)
    trail = [0]
    for _, name, at in events:
        # Each event is the level of the stored reading that made it, and a change.
        assert names[name] == level(by_time[at]), (name, at, by_time[at])
        assert names[name] != trail[-1], ("an event without a change", events)
        trail.append(names[name])
    assert trail[-1] == level(by_time[max(by_time)])
    raised = sum(1 for a, b in zip(trail, trail[1:]) if a == 0)
    assert database.execute("SELECT count(*) FROM alerts").fetchone()[0] == raised
    per_event = database.execute(
        "SELECT e.id, count(o.id) FROM alert_events e LEFT JOIN outbox o "
        "ON o.event_id = e.id AND o.transport = 'sms' GROUP BY e.id").fetchall()
    assert per_event and all(n == len(NUMBERS) for _, n in per_event), per_event
    assert raised >= 3, "too few alerts to say anything: a longer run is needed"

    # Every message: sent (none failed or pending), at most two copies, the
    # second marked, and one copy complete unless the row says nobody knows.
    statuses = dict(database.execute(
        "SELECT id, status FROM outbox WHERE transport = 'sms'").fetchall())
    assert set(statuses.values()) == {"sent"}
    unconfirmed = {row_id for (row_id,) in database.execute(
        "SELECT outbox_id FROM delivery_log WHERE outcome = 'unconfirmed'")}
    copies = copies_by_row(database, modem_emulator)
    repeats = 0
    for row_id in statuses:
        got = copies.get(row_id, [])
        marked = [text.startswith(REPEAT) for text, _, _ in got]
        assert len(got) <= 2, ("sent more than twice", row_id, got)
        assert marked.count(False) <= 1, ("a second copy without the mark", row_id, got)
        if row_id not in unconfirmed:
            assert any(n == total for _, n, total in got), ("a part lost", row_id, got)
        repeats += marked.count(True)
    print("alerts=%d messages=%d repeats=%d unconfirmed=%d modem_pdus=%d" % (
        raised, len(statuses), repeats, len(unconfirmed), len(modem_emulator.sent)))
