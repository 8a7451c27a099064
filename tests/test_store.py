"""The writer against a real SQLite file: stored once, acked after commit,
bad frames rejected, counted and kept away from the rules."""
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from huaico.devices import registry as devices
from huaico.ingest import replay
from huaico.protocol import frame as wire
from huaico.protocol.cose import MacKey
from huaico.store import db
from huaico.store.writer import Writer
from tests.fixtures.gateway import RecordingEngine

NOW = 1_800_000_100.0


def writer_for(home, engine=None, **options):
    return Writer(home.database, engine=engine, clock=lambda: NOW, **options)


class Acks:
    """reply() functions that record acks and check, at the moment of the ack,
    that the frame is visible to another connection: i.e. committed."""

    def __init__(self, home, board):
        self.home = home
        self.board = board
        self.got = []
        self.check = home.open()

    def reply(self, data):
        kid, seq, gateway_time = self.board.ack(data)
        committed = self.check.execute(
            "SELECT count(*) FROM readings WHERE device_id = ? AND seq = ?",
            [kid.hex(), seq]).fetchone()[0]
        self.got.append((seq, gateway_time, committed))


def submit(writer, items, reply=None):
    return writer.process([("test", raw, NOW - 1, reply) for raw in items])


def test_frame_is_stored_once_and_acked_after_commit(gateway_home, recording_engine):
    board = gateway_home.add("rg1")
    acks = Acks(gateway_home, board)
    writer = writer_for(gateway_home, recording_engine)
    readings = [(1, 0, 0, 12, 0), (4, 0, -30, 1520, 0), (4, 1, -30, 1490, 3), (19, 0, 0, 3712, 0)]
    assert submit(writer, [board.frame(readings)], acks.reply) == ["stored"]
    assert acks.got == [(1, int(NOW), 4)]
    rows = gateway_home.readings(board)
    assert [(r["seq"], r["channel"], r["idx"], r["time"], r["value"], r["quality"])
            for r in rows] == [(1, 1, 0, 1_800_000_000, 12, 0),
                               (1, 4, 0, 1_799_999_970, 1520, 0),
                               (1, 4, 1, 1_799_999_970, 1490, 3),
                               (1, 19, 0, 1_800_000_000, 3712, 0)]
    assert len(recording_engine.calls) == 1
    device = devices.get(gateway_home.open(), "rg1")
    assert (device["last_seq"], device["battery_mv"], device["last_seen"]) == (1, 3712, NOW - 1)
    assert gateway_home.counters() == {"frames_ok": 1, "readings": 4}


def test_resend_after_lost_ack_is_acked_again_and_counted_duplicate(gateway_home,
                                                                    recording_engine):
    board = gateway_home.add("rg1")
    acks = Acks(gateway_home, board)
    writer = writer_for(gateway_home, recording_engine)
    first = board.frame()
    submit(writer, [first])  # the ack is lost on the way
    assert submit(writer, [first], acks.reply) == ["duplicate"]
    # Twice in one batch as well: the second copy is a duplicate of the first.
    second = board.frame()
    assert submit(writer, [second, second], acks.reply) == ["stored", "duplicate"]
    assert [seq for seq, _, _ in acks.got] == [1, 2, 2]
    assert all(committed == 1 for _, _, committed in acks.got)
    assert len(gateway_home.readings(board)) == 2
    assert len(recording_engine.calls) == 2
    counters = gateway_home.counters()
    assert (counters["frames_ok"], counters["duplicates"]) == (2, 2)


def test_forged_replayed_and_unsigned_frames_are_rejected_and_never_reach_rules(
        gateway_home, recording_engine):
    board = gateway_home.add("rg1")
    acks = Acks(gateway_home, board)
    writer = writer_for(gateway_home, recording_engine, window=8)
    old = board.frame(seq=1)
    submit(writer, [old, board.frame(seq=20)])
    calls = len(recording_engine.calls)
    forged = board.frame(key=MacKey(b"k" * 32))
    unsigned = board.frame(key=None)
    stranger = wire.encode_frame(b"\x01\x02\x03\x04", MacKey(b"s" * 32), 1, 0, 0, [])
    outcomes = submit(writer, [forged, old, unsigned, stranger, b"\xff\x00"], acks.reply)
    assert outcomes == ["bad_mac", "replayed", "unsigned", "unknown_device", "structure"]
    # Only the replayed frame is acked (it was stored once, long ago).
    assert [seq for seq, _, _ in acks.got] == [1]
    assert len(recording_engine.calls) == calls
    assert [r["seq"] for r in gateway_home.readings(board)] == [1, 20]
    counters = gateway_home.counters()
    for reason in ("bad_mac", "replayed", "unsigned", "unknown_device", "structure"):
        assert counters["rejected_" + reason] == 1
    rejects = list(gateway_home.open().query("SELECT device_id, reason, source FROM rejects"))
    assert [(r["device_id"], r["reason"]) for r in rejects] == [
        (board.row["id"], "bad_mac"), (board.row["id"], "replayed"),
        (board.row["id"], "unsigned"), ("01020304", "unknown_device"), (None, "structure")]


def test_old_frame_never_stored_is_stored_late_not_lost(gateway_home, recording_engine):
    board = gateway_home.add("rg1")
    writer = writer_for(gateway_home, recording_engine, window=4)
    lost = board.frame()  # its first copy never arrived
    submit(writer, [board.frame() for _ in range(10)])
    acks = Acks(gateway_home, board)
    assert submit(writer, [lost, lost], acks.reply) == ["stored", "replayed"]
    assert [seq for seq, _, _ in acks.got] == [1, 1]
    assert [r["seq"] for r in gateway_home.readings(board)] == list(range(1, 12))
    assert len(recording_engine.calls) == 11
    assert gateway_home.counters()["late_frames"] == 1


def test_an_old_frame_is_found_by_its_number_whatever_its_stored_times(gateway_home):
    """A resend older than the window is looked up by its sequence number
    through seq_times' bounds and the one (device, time, ...) index
    (huaico.store.db m008): an unsynced frame, stored at its receive time, is
    found again 200 frames (four buckets) and months later; so is a synced
    one; a number used again with other readings is a board counting again."""
    board = gateway_home.add("rg1")
    writer = writer_for(gateway_home, window=4)
    day = 86400

    def send(raw, received):
        return writer.process([("test", raw, received, None)])

    start = 1_700_000_000.5
    unsynced = board.frame([(1, 0, 0, 7, 0)], time=100, flags=wire.FLAG_CLOCK_UNSYNCED)
    assert send(unsynced, start) == ["stored"]
    synced = []
    for n in range(1, 201):
        synced.append(board.frame(time=1_700_000_000 + n * day))
        assert send(synced[-1], start + n * day) == ["stored"]
    later = start + 300 * day
    assert send(unsynced, later) == ["replayed"]
    assert send(synced[98], later) == ["replayed"]
    assert send(board.frame([(1, 0, 0, 8, 0)], seq=1, time=100,
                            flags=wire.FLAG_CLOCK_UNSYNCED), later) == ["seq_reset"]
    assert send(board.frame(seq=100, time=1_700_000_000 + 5 * day), later) == ["seq_reset"]
    assert len(gateway_home.readings(board)) == 201


def test_the_time_bounds_of_numbers_begin_again_after_a_sequence_reset(gateway_home):
    """After `huaico device reset-sequence` the readings before it no longer
    count in a lookup by number, so the bounds of seq_times begin again at
    the first reading after it (huaico.store.db m008): a board counting from
    1 again is looked up among its new readings, not a year of old ones."""
    board = gateway_home.add("rg1")
    writer = writer_for(gateway_home, window=4)

    def send(raw, received):
        return writer.process([("test", raw, received, None)])

    real = time.time()  # reset_sequence stamps the real time
    old = real - 365 * 86400
    for n in range(10):
        assert send(board.frame(time=int(old) + n * 60), old + n * 60) == ["stored"]
    devices.reset_sequence(gateway_home.open(), "rg1")
    board.seq = 0
    first = board.frame(time=int(real) + 60)
    assert send(first, real + 60) == ["stored"]
    assert gateway_home.open().execute(
        "SELECT lo, hi FROM seq_times WHERE device_id = ? AND bucket = 0",
        [board.row["id"]]).fetchone() == (int(real) + 60 - 3600, int(real) + 60 + 3600)
    assert send(first, real + 61) == ["duplicate"]
    assert send(board.frame(seq=1, time=int(real) + 120), real + 120) == ["seq_reset"]


def test_counts_of_stored_frames_come_from_the_readings_and_survive_a_crash(gateway_home):
    """frames_ok and readings are not written at each commit (a page of card
    wear each time, huaico.store.db m009): they are counted from the readings
    stored since the last fold, so they are exact after every commit and
    after a writer that died without a word; a frame without readings is
    written as a count."""
    board = gateway_home.add("rg1")

    def rows():
        return dict(gateway_home.open().execute("SELECT name, value FROM counters"))

    writer = writer_for(gateway_home)
    assert submit(writer, [board.frame()]) == ["stored"]
    before = rows()
    for _ in range(5):
        assert submit(writer, [board.frame([(1, 0, 0, 2, 0), (19, 0, 0, 3700, 0)])]) == [
            "stored"]
    assert rows() == before
    assert gateway_home.counters() == {"frames_ok": 6, "readings": 11}
    assert writer.counters.snapshot() == {"frames_ok": 6, "readings": 11}
    writer = writer_for(gateway_home)  # the first one was killed: nothing flushed
    assert submit(writer, [board.frame(())]) == ["stored"]
    assert gateway_home.counters() == {"frames_ok": 7, "readings": 11}
    assert {name: rows()[name] for name in ("frames_ok", "readings")} == {
        "frames_ok": 7, "readings": 11}


def test_unsigned_frames_accepted_only_from_a_device_that_allows_them(gateway_home):
    bench = gateway_home.add("bench", allow_unsigned=True)
    writer = writer_for(gateway_home)
    acks = Acks(gateway_home, bench)
    assert submit(writer, [bench.frame(key=None), bench.frame()], acks.reply) == ["stored"] * 2
    # The ack is signed even for an unsigned frame: the board can trust it.
    assert [seq for seq, _, _ in acks.got] == [1, 2]


def test_retired_and_rotated_devices(gateway_home):
    board = gateway_home.add("rg1")
    writer = writer_for(gateway_home)
    assert submit(writer, [board.frame()]) == ["stored"]
    other = gateway_home.open()  # the CLI, from another process
    devices.rotate_key(other, gateway_home.config, "rg1")
    assert submit(writer, [board.frame()]) == ["bad_mac"]
    board.key = MacKey(bytes.fromhex(devices.get(other, "rg1")["key"]))
    assert submit(writer, [board.frame()]) == ["stored"]
    devices.retire(other, "rg1")
    assert submit(writer, [board.frame()]) == ["retired"]
    assert len(gateway_home.readings(board)) == 2  # history kept
    assert gateway_home.counters()["rejected_retired"] == 1


def test_restart_keeps_the_replay_window(gateway_home):
    board = gateway_home.add("rg1")
    frames = [board.frame() for _ in range(5)]
    submit(writer_for(gateway_home, window=16), frames[:4])
    gateway_home.database.conn.close()
    gateway_home.database = gateway_home.open()
    writer = writer_for(gateway_home, window=16)
    assert submit(writer, frames) == ["duplicate"] * 4 + ["stored"]
    row = devices.get(gateway_home.open(), "rg1")
    assert row["last_seq"] == 5
    # The window is the writer's own column: not shown in devices_live.
    window, = gateway_home.open().execute("SELECT seq_window FROM devices WHERE id = ?",
                                          [row["id"]]).fetchone()
    assert replay.from_db(window) == 0b11111


def test_unsynced_clock_rows_are_stamped_with_receive_time(gateway_home):
    board = gateway_home.add("rg1")
    writer = writer_for(gateway_home)
    # Seconds since boot: base 100, rows at 100-20 and 100+5.
    raw = board.frame([(1, 0, -20, 3, 0), (2, 0, 5, 1, 0)], time=100,
                      flags=wire.FLAG_CLOCK_UNSYNCED)
    writer.process([("test", raw, 1_800_000_000.7, None)])
    rows = gateway_home.readings(board)
    assert [(r["channel"], r["time"], r["unsynced"]) for r in rows] == [
        (1, 1_800_000_000 - 25, 1), (2, 1_800_000_000, 1)]


def test_engine_failure_keeps_the_readings_and_acks(gateway_home):
    board = gateway_home.add("rg1")
    engine = RecordingEngine(fail_on=lambda device, rows: rows[0][3] == 666)
    writer = writer_for(gateway_home, engine)
    acks = Acks(gateway_home, board)
    batch = [board.frame([(1, 0, 0, 1, 0)]), board.frame([(1, 0, 0, 666, 0)]),
             board.frame([(1, 0, 0, 2, 0)])]
    assert submit(writer, batch, acks.reply) == ["stored"] * 3
    assert [seq for seq, _, _ in acks.got] == [1, 2, 3]
    assert len(gateway_home.readings(board)) == 3
    # The batch was tried whole once (rolled back), then frame by frame.
    assert engine.rollbacks == 1
    assert [rows[0][3] for _, rows in engine.calls][-2:] == [1, 2]
    assert gateway_home.counters()["rules_failed"] == 1


def test_link_errors_are_counted_and_recorded(gateway_home):
    from huaico.protocol.errors import LinkError
    writer = writer_for(gateway_home)
    assert writer.process([("serial:x", LinkError("bad_crc", 17, "9 bytes"), NOW, None)]) == [
        "link_bad_crc"]
    assert gateway_home.counters() == {"link_bad_crc": 1}


def test_group_commit_thread_stores_a_burst(gateway_home):
    boards = [gateway_home.add("b%d" % i) for i in range(3)]
    writer = writer_for(gateway_home, batch_ms=20)
    writer.start()
    for _ in range(200):
        for board in boards:
            writer.submit("test", board.frame(), time.time(), None)
    writer.stop()
    assert gateway_home.counters()["frames_ok"] == 600
    for board in boards:
        assert [r["seq"] for r in gateway_home.readings(board)] == list(range(1, 201))


def test_rejects_are_kept_as_a_bounded_ring(gateway_home):
    database = gateway_home.database
    with db.transaction(database) as conn:
        db.add_rejects(conn, [(float(i), None, "x", "", "t") for i in range(db.REJECTS_KEPT + 50)])
    times = [row[0] for row in database.execute("SELECT time FROM rejects ORDER BY rowid")]
    assert len(times) == db.REJECTS_KEPT
    assert times[0] == 50.0


@settings(max_examples=300, deadline=None)
@given(size=st.integers(1, 64), seqs=st.lists(st.integers(0, 200), max_size=60))
def test_replay_window_agrees_with_a_set_of_stored_numbers(size, seqs):
    window = replay.Window(size)
    stored = set()
    for seq in seqs:
        verdict = window.check(seq)
        newest = max(stored) if stored else None
        if newest is not None and seq <= newest - size:
            assert verdict == replay.OLD
        elif seq in stored:
            assert verdict == replay.SEEN
        else:
            assert verdict == replay.NEW
            window.mark(seq)
            stored.add(seq)
        restored = replay.Window(size, window.last, replay.from_db(replay.to_db(window.bits)))
        assert (restored.last, restored.bits) == (window.last, window.bits)


def test_window_size_is_checked():
    with pytest.raises(ValueError):
        replay.Window(65)


def test_with_the_real_rule_engine_alerts_come_from_good_frames_only(gateway_home):
    from huaico.rules import engine as rules
    rule = rules.Rule("river-high", "above", {"warning": 2.0}, channel="water_level",
                      place="Puente Huaycoloro")
    row = rule.to_row()
    row["created"] = row["updated"] = NOW
    with db.transaction(gateway_home.database) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)" % (", ".join(row), ", ".join("?" * len(row))),
                     list(row.values()))
    board = gateway_home.add("river1")
    # `init` writes no phone number: the leaders get one here.
    config = gateway_home.config
    config["groups"] = [dict(config["groups"][0], numbers=["+51987654321"])]
    engine = rules.RuleEngine(gateway_home.database, config)
    woken = []
    writer = Writer(gateway_home.database, engine=engine, clock=lambda: NOW, on_commit=woken.append)
    high = [(4, 0, 0, 2500, 0)]
    forged = board.frame(high, key=MacKey(b"f" * 32))
    unsigned = board.frame(high, key=None)
    assert submit(writer, [forged, unsigned, board.frame([(4, 0, 0, 800, 0)])]) == [
        "bad_mac", "unsigned", "stored"]
    check = gateway_home.open()
    assert check.execute("SELECT count(*) FROM alerts").fetchone()[0] == 0
    assert check.execute("SELECT count(*) FROM outbox").fetchone()[0] == 0
    raising = board.frame(high)
    assert submit(writer, [raising]) == ["stored"]
    alerts = list(check.query("SELECT level, device_id FROM alerts"))
    assert alerts == [{"level": "warning", "device_id": board.row["id"]}]
    queued = check.execute("SELECT count(*) FROM outbox").fetchone()[0]
    assert queued > 0 and len(woken) == 1
    # The resend of the frame that raised it raises nothing more.
    assert submit(writer, [raising]) == ["duplicate"]
    assert check.execute("SELECT count(*) FROM outbox").fetchone()[0] == queued
    assert check.execute("SELECT count(*) FROM alerts").fetchone()[0] == 1


_SHOWN = ("last_seq", "last_seen", "battery_mv", "rssi", "epoch", "old_epochs")


def test_readers_see_what_the_writer_holds_after_every_commit(gateway_home, monkeypatch):
    """A one-frame commit does not write its device's row (huaico.store.db
    m010): readers see it through devices_live, from another connection,
    after each commit, and a writer that starts again rebuilds the same row
    and replay window, whatever happened since the row was written: frames
    with and without battery and RSSI, one without readings, a late frame,
    a resend, a reading the table had already, a new epoch, a sequence
    reset by the CLI, folds of the rows
    in between (every 10 readings here) and restarts."""
    monkeypatch.setattr(db, "FOLD_SEEN_ROWS", 10)
    one, two = gateway_home.add("rg1"), gateway_home.add("rg2")
    reader = gateway_home.open()
    state = {"writer": Writer(gateway_home.open(), clock=lambda: NOW, window=16), "at": NOW}

    def send(board, readings, seq=None, epoch=0, expect="stored"):
        state["at"] += 7.25
        raw = wire.encode_frame(board.kid, board.key, seq if seq is not None else board.seq + 1,
                                1_800_000_000, 0, list(readings), epoch)
        if seq is None:
            board.seq += 1
        assert state["writer"].process([("test", raw, state["at"], None)]) == [expect]
        for board in (one, two):
            held = state["writer"]._devices.get(board.kid.hex())
            if held is None:
                continue
            shown = devices.get(reader, board.name)
            assert {name: shown[name] for name in _SHOWN} == {
                name: held.row[name] for name in _SHOWN}, board.name
            again = Writer(gateway_home.open(), clock=lambda: NOW, window=16)
            rebuilt = again._device(again.database.conn, board.kid.hex())
            assert (rebuilt.window.last, rebuilt.window.bits) == (held.window.last,
                                                                 held.window.bits)
            assert {name: rebuilt.row[name] for name in _SHOWN} == {
                name: held.row[name] for name in _SHOWN}
            again.database.conn.close()

    battery, rssi, rain = (19, 0, 0, 3700, 0), (20, 0, 0, -71, 0), (1, 0, 0, 2, 0)
    send(one, [rain, battery, rssi])
    send(two, [rain])
    send(one, [rain, (19, 0, 0, 3650, 0), (19, 1, 0, 1200, 0)])  # idx 1: not the board's own
    send(one, [])  # no readings: the row is written with the frame
    assert devices.get(reader, "rg1")["last_seen"] == state["at"]
    send(two, [rain, (20, 0, 0, -80, 0)])
    for _ in range(4):
        send(one, [rain, rssi])
    send(one, [rain, (19, 0, 0, 3000, 0)], seq=40)
    send(one, [rain, (19, 0, 0, 2900, 0)], seq=20)  # older than the window, never stored: late
    send(one, [rain, (19, 0, 0, 3000, 0)], seq=40, expect="duplicate")
    shown = devices.get(reader, "rg1")
    assert (shown["last_seq"], shown["battery_mv"], shown["rssi"]) == (40, 2900, -71)
    state["writer"].database.conn.close()  # a restart, nothing written on the way out
    state["writer"] = Writer(gateway_home.open(), clock=lambda: NOW, window=16)
    send(one, [rain], seq=41)
    send(one, [rain, (19, 0, 0, 3100, 0)], seq=1, epoch=7)  # re-flashed: a new epoch
    send(one, [rain], seq=2, epoch=7)
    devices.reset_sequence(gateway_home.open(), "rg1")
    shown = devices.get(reader, "rg1")
    assert (shown["last_seq"], shown["battery_mv"]) == (None, 3100)
    # The same frames again after the reset: new to the window, every reading
    # in the table already, so only the row can say it came.
    send(one, [rain, (19, 0, 0, 3100, 0)], seq=1, epoch=7)
    send(one, [rain], seq=2, epoch=7)
    assert devices.get(reader, "rg1")["last_seen"] == state["at"]
    send(one, [rain, (19, 0, 0, 3050, 0)], seq=1, epoch=8)
    send(two, [rain, battery])
    assert devices.get(reader, "rg1")["last_seq"] == 8 << wire.EPOCH_SHIFT | 1


def test_an_upgraded_database_shows_its_devices_as_before(tmp_path):
    """m010 on a database whose rows the writer wrote at every commit: the
    readings stored before are not applied twice, devices_live shows the
    rows as they were, and a sequence reset still clears the number."""
    database = db.open_db(tmp_path / "old.db")
    database.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied REAL)")
    for name, function in db.all_migrations():
        if name == "m010_devices_seen":
            continue
        with db.transaction(database):
            function(database)
            database.execute("INSERT INTO _migrations (name, applied) VALUES (?, 0)", [name])
    database.execute("INSERT INTO devices (id, name, key, last_seq, last_seen, battery_mv, "
                     "rssi, epoch) VALUES ('abcd0123', 'rg1', '00', 7, 1.5, 3600, -60, 0)")
    database.conn.executemany(
        "INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, received, "
        "unsynced) VALUES ('abcd0123', ?, 19, 0, ?, ?, 0, ?, 0)",
        [(seq, 1_760_000_000 + seq, 3000 + seq, 2.0 + seq) for seq in range(1, 10)])
    assert db.migrate(database) == ["m010_devices_seen"]
    shown = devices.get(database, "rg1")
    assert (shown["last_seq"], shown["last_seen"], shown["battery_mv"], shown["rssi"]) == (
        7, 1.5, 3600, -60)
    assert "seq_window" not in shown and "seen_rowid" not in shown
    # Every other column, in the table's order: a migration that adds one
    # must make the view again (db._live_view_sql).
    columns = [row[1] for row in database.execute("PRAGMA table_info(devices)")]
    assert [row[1] for row in database.execute("PRAGMA table_info(devices_live)")] == [
        name for name in columns if name not in ("seq_window", "seen_rowid")]
    # The readings after the mark, by rowid: not every reading through the index.
    plan = [row[3] for row in database.execute("EXPLAIN QUERY PLAN SELECT * FROM devices_live")]
    assert "SEARCH r USING INTEGER PRIMARY KEY (rowid>?)" in plan, plan
    devices.reset_sequence(database, "rg1")
    assert devices.get(database, "rg1")["last_seq"] is None
