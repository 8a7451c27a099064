"""Issue 11, fault 3: a board that counts its frames again.

A re-flashed version 1 board restarts its sequence numbers under the same
key: its frames must never be acked and thrown away. They are refused as
seq_reset (not acked: the board keeps them), `status` says why the board
looks silent, and `huaico device reset-sequence` lets them in. A version 2
board carries an epoch (SPEC.md 1.3): a new one is taken at once, an old one
is refused as a replay of old traffic, also after a restart. Real SQLite,
the real writer and the real CLI.
"""
from click.testing import CliRunner

from huaico.cli.main import main
from huaico.ops import status
from huaico.protocol import frame as wire
from huaico.store.writer import Writer

NOW = 1_800_000_100.0


class Link:
    """Frames in, acks out: what a board would get back for each frame."""

    def __init__(self, home, board):
        self.home = home
        self.board = board
        self.time = NOW
        self.restart()

    def send(self, *frames):
        """Outcomes and acked seqs; each call a second after the one before."""
        self.time += 1
        acks = []
        outcomes = self.writer.process([("test", raw, self.time, acks.append) for raw in frames])
        return outcomes, [self.board.ack(ack)[1] for ack in acks]

    def restart(self):
        self.writer = Writer(self.home.database, clock=lambda: self.time, window=64)


def stamped(board, seq, minute, value=5, epoch=0):
    return wire.encode_frame(board.kid, board.key, seq, 1_700_000_000 + 60 * minute, 0,
                             [(4, 0, 0, value, 0)], epoch)


def test_a_reflashed_board_without_epochs_is_refused_until_its_sequence_is_reset(gateway_home):
    board = gateway_home.add("river1")
    link = Link(gateway_home, board)
    for seq in range(1, 101):
        assert link.send(stamped(board, seq, seq)) == (["stored"], [seq])
    # A year later, after a new flash: seq 1 and seq 50 again, other readings.
    restarted = [stamped(board, seq, 600_000 + seq, value=900) for seq in (1, 50)]
    # Below the window and inside it: neither is acked, nothing is dropped quietly.
    assert link.send(*restarted) == (["seq_reset", "seq_reset"], [])
    assert gateway_home.counters()["rejected_seq_reset"] == 2
    # A true resend of a stored frame is still acked (its ack was lost).
    assert link.send(stamped(board, 50, 50)) == (["duplicate"], [50])
    assert link.send(stamped(board, 1, 1)) == (["replayed"], [1])
    # status does not just call it stale: it says why, and what to run.
    report = status.collect(gateway_home.open(), 900, now=NOW + 3600)
    device = report["devices"][0]
    assert device["stale"] and device["refused"]["reason"] == "seq_reset"
    assert device["refused"]["remedy"] == "huaico device reset-sequence river1"
    lines = status.render(report)
    assert any("river1 transmits but 2 frames refused (seq_reset)" in line for line in lines), lines
    result = CliRunner().invoke(main, ["device", "reset-sequence", "river1"])
    assert result.exit_code == 0 and "last seq was 100" in result.output, result.output
    assert link.send(*restarted) == (["stored", "stored"], [1, 50])
    values = [(r["seq"], r["value"]) for r in gateway_home.readings(board) if r["value"] == 900]
    assert values == [(1, 900), (50, 900)]


def test_a_new_epoch_is_taken_and_old_epochs_are_refused(gateway_home):
    board = gateway_home.add("river1")
    link = Link(gateway_home, board)
    first = [stamped(board, counter, counter, epoch=7) for counter in range(100)]
    assert link.send(*first)[0] == ["stored"] * 100
    # Re-flashed: epoch 200 counts from 0 again; taken at once, acked with its seq.
    again = stamped(board, 0, 1000, value=900, epoch=200)
    assert link.send(again) == (["stored"], [200 << 24])
    assert gateway_home.counters()["epoch_changes"] == 1
    # Epoch 7's traffic replayed, and a version 1 frame, are refused and not acked.
    assert link.send(first[99], first[3], stamped(board, 5000, 5000)) == (
        ["old_epoch", "old_epoch", "old_epoch"], [])
    link.restart()
    assert link.send(first[50]) == (["old_epoch"], [])
    assert link.send(stamped(board, 1, 1001, epoch=200), again) == (
        ["stored", "duplicate"], [(200 << 24) + 1, 200 << 24])
    assert len(gateway_home.readings(board)) == 102


def test_a_board_upgraded_to_epochs_starts_a_new_window(gateway_home):
    board = gateway_home.add("river1")
    link = Link(gateway_home, board)
    for seq in range(1, 70):
        link.send(stamped(board, seq, seq))
    # Its new firmware's first epoch is not refused for coming after version 1.
    assert link.send(stamped(board, 0, 100, epoch=1)) == (["stored"], [1 << 24])
    assert link.send(stamped(board, 69, 69)) == (["old_epoch"], [])
