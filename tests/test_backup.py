"""`huaico backup` while a real gateway ingests over a pty, and `huaico
restore` into another data directory: every frame acked before a backup
began is in the copy, the copy opens and passes integrity_check, the keys
come back (the board's next frame is accepted by the restored gateway), and
restore refuses while a gateway runs."""
import os
import sqlite3
import subprocess
import time

from huaico.store import backup as backup_mod
from tests.fixtures.gateway import Home
from tests.test_run import CLI, READINGS, WAIT, Feeder, start_gateway

FILLER_READINGS = 300_000  # makes the copy take long enough for commits to land meanwhile


def _fill(home):
    """Readings of another device, straight into the table (received now:
    retention would fold older ones away when the gateway starts)."""
    now = time.time()
    rows = [("0badf00d", seq // 4, seq % 4, 0, 1_700_000_000 + seq, seq, 0, now, 0)
            for seq in range(FILLER_READINGS)]
    conn = home.open().conn
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO readings (device_id, seq, channel, idx, time, value, "
                     "quality, received, unsynced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    conn.close()


def _cli(home_path, *args, check=True):
    env = dict(os.environ, HUAICO_HOME=str(home_path), PYTHONPATH=os.getcwd())
    done = subprocess.run(CLI + [str(a) for a in args], env=env, capture_output=True, text=True,
                          timeout=WAIT * 3)
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _frames(path, device_id):
    """{seq: readings} of one device in a database file."""
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        return dict(conn.execute("SELECT seq, count(*) FROM readings WHERE device_id = ? "
                                 "GROUP BY seq", [device_id]).fetchall())
    finally:
        conn.close()


def test_backup_during_ingest_holds_every_committed_frame_and_restores(
        gateway_home, pty_pair, tmp_path):
    board = gateway_home.add("rg1", site="Quebrada Alta")
    _fill(gateway_home)
    feeder = Feeder(pty_pair, board)
    gateway = start_gateway(gateway_home, pty_pair.path, "--no-rules")
    copies = []
    try:
        for number in range(3):
            deadline = time.monotonic() + WAIT
            while len(feeder.acked) < 40 * (number + 1) and time.monotonic() < deadline:
                feeder.send_new(2)
                feeder.resend()
                feeder.read_acks(0.02)
            acked_before = set(feeder.acked)
            target = tmp_path / ("copy-%d.db" % number)
            env = dict(os.environ, HUAICO_HOME=str(gateway_home.path), PYTHONPATH=os.getcwd())
            process = subprocess.Popen(CLI + ["backup", str(target)], env=env,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            while process.poll() is None:
                feeder.send_new(2)
                feeder.resend()
                feeder.read_acks(0.02)
            out, err = process.communicate()
            assert process.returncode == 0, err
            assert out.startswith("backed up 1 device, "), out
            during = len(feeder.acked) - len(acked_before)
            assert during > 0, "no frame was acked while the backup ran"
            copies.append((target, acked_before))
        refused = _cli(gateway_home.path, "restore", "--yes", copies[0][0], check=False)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            "Error: another huaico gateway (pid %d) is running on %s; stop it first"
            % (gateway.pid, gateway_home.path)]
    finally:
        gateway.terminate()
        gateway.communicate(timeout=WAIT)
    for target, acked_before in copies:
        assert oct(target.stat().st_mode & 0o777) == "0o600"
        stored = _frames(target, board.row["id"])
        missing = sorted(seq for seq in acked_before if stored.get(seq) != len(READINGS))
        assert not missing, "acked before %s began but not in it: %s" % (target.name, missing)
        assert set(stored.values()) == {len(READINGS)}, "a frame was copied half"
        conn = sqlite3.connect(target)
        assert conn.execute("SELECT count(*) FROM readings WHERE device_id = '0badf00d'"
                            ).fetchone()[0] == FILLER_READINGS
        conn.close()

    # Restore the last copy into another data directory and carry on there.
    last, _ = copies[-1]
    other = Home(tmp_path / "other")
    other.add("someone-else")
    other.database.conn.close()
    shown = _cli(other.path, "restore", "--dry-run", last).stdout
    assert "devices 1, readings" in shown and "kept as huaico.db.before-restore" in shown, shown
    assert "sites/rg1.json" in shown
    _cli(other.path, "restore", "--yes", last)
    restored = other.config.database_path
    assert _frames(restored, board.row["id"]) == _frames(last, board.row["id"])
    conn = sqlite3.connect(restored)
    assert conn.execute("SELECT key FROM devices WHERE name = 'rg1'").fetchone()[0] == \
        board.row["key"]
    assert conn.execute("SELECT count(*) FROM devices").fetchone()[0] == 1
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert backup_mod.FILES_TABLE not in tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    assert (other.path / "sites" / "rg1.json").read_bytes() == \
        (gateway_home.path / "sites" / "rg1.json").read_bytes()
    kept = sqlite3.connect(str(restored) + ".before-restore")
    assert [r[0] for r in kept.execute("SELECT name FROM devices")] == ["someone-else"]
    kept.close()
    # The key came back: the restored gateway takes the board's next frame.
    feeder.unacked.clear()
    restarted = start_gateway(other, pty_pair.path, "--no-rules")
    try:
        feeder.send_new(1)
        deadline = time.monotonic() + WAIT
        while feeder.unacked and time.monotonic() < deadline:
            feeder.resend(older_than=0.3)
            feeder.read_acks(0.05)
        assert not feeder.unacked, "the restored gateway did not ack the board's frame"
    finally:
        restarted.terminate()
        restarted.communicate(timeout=WAIT)


def test_restore_refuses_what_is_not_a_huaico_backup(gateway_home, tmp_path):
    stranger = tmp_path / "other.db"
    conn = sqlite3.connect(stranger)
    conn.execute("CREATE TABLE t (x)")
    conn.close()
    done = _cli(gateway_home.path, "restore", "--yes", stranger, check=False)
    assert done.returncode == 1
    assert "not a huaico backup" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not sqlite at all" * 100)
    done = _cli(gateway_home.path, "restore", "--yes", garbage, check=False)
    assert done.returncode == 1 and "not a readable backup" in done.stderr, done.stderr
