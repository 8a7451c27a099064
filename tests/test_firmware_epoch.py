"""The firmware's epochs (SPEC.md 1.3) under the real MicroPython unix port.

The first epoch is drawn once when the board's store is new and kept across
boots, so a re-flash (a new store) draws another; a store made before epochs
keeps sending version 1 (0), so the frames already in its ring stay acceptable.
When the counter reaches 2^24 the store rolls to a new epoch: checked here on a
real littlefs image whose store starts just below 2^24 (firmware/sim/flashchip.py
seed_ring, a hook of the simulated flash, not of the firmware), with a power cut
at every erase and program of the roll, and end to end against the gateway's
own store (gateway/store/writer.py Writer), which refuses and never acks a frame of an
epoch it has left.
"""
import json
import subprocess
import time

import pytest

from huaico.protocol import link
from huaico.protocol.frame import EPOCH_SHIFT
from huaico.store.writer import Writer
from tests.fixtures.firmware import ROOT, UartPeer, micropython, run_sim, site_config

DRAW = """
import sys
sys.path.insert(0, %r)
from firmware.ring import Ring
from firmware.flash import Flash
root = %r
drawn = []
for name in ("a", "b", "c"):
    ring = Ring(Flash(root + "/" + name), 8)
    ring.next_seq()  # writes "meta"
    drawn.append(ring.epoch_of(0))
kept = Ring(Flash(root + "/a"), 8).epoch_of(0)
old = Flash(root + "/v1")
old.write("meta", open(root + "/a/meta", "rb").read())
print(repr([drawn, kept, Ring(old, 8).epoch_of(0), sorted(Flash(root + "/a").names())]))
"""


def test_epoch_is_drawn_for_a_new_store_and_kept(tmp_path):
    script = tmp_path / "epoch.py"
    script.write_text(DRAW % (str(ROOT), str(tmp_path / "flash")))
    done = subprocess.run([micropython(), "-X", "heapsize=131072", str(script)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr + done.stdout
    drawn, kept, old, names = json.loads(done.stdout.strip().replace("'", '"'))
    assert all(1 <= epoch <= 255 for epoch in drawn)
    assert kept == drawn[0] and names == ["epoch", "meta"]
    assert old == 0  # a store with a meta and no epoch file predates epochs


# A store 12 numbers below 2^24: 20 frames with acks cross the roll; the N-th erase or
# program is cut for every N until the workload runs uncut. After each cut a fresh mount
# and Ring must never hand out a (epoch, counter) pair twice, keep the epoch of every
# number handed out, refuse an epoch it had before, and give oldest() no frame of the new
# epoch while one of the old waits (the gateway would refuse it for good).
CUTS = r'''
import sys, vfs
sys.path.insert(0, ROOT)
from firmware.flash import Flash
from firmware.ring import Ring, COUNTER_MASK
from firmware.sim.board import Reset
from firmware.sim.flashchip import BLOCK, Chip, seed_ring

START = (1 << 24) - 12
CHIP = Chip(TMP + "/flash.img", 32 * BLOCK, {"progsize": 256})
mounted = []

def boot(cut_at):
    while mounted:
        mounted.pop().close()
        vfs.umount("/ring")
    CHIP.arm(cut_at)
    mounted.append(CHIP.mount("/ring"))
    return Ring(Flash("/ring/data"), 64, 4)

def wire(ring, seq):
    return (ring.epoch_of(seq), seq & COUNTER_MASK)

n = 1
cuts = 0
while True:
    while mounted:
        mounted.pop().close()
        vfs.umount("/ring")
    CHIP.blank()
    CHIP.mkfs()
    dev = CHIP.mount("/ring")
    seed_ring("/ring/data", START, [EPOCH0])
    vfs.umount("/ring")
    dev.close()
    handed = {}  # ring seq -> (epoch, counter) it went out as
    cut = False
    try:
        ring = boot(n)
        for i in range(20):
            seq = ring.next_seq()
            handed[seq] = wire(ring, seq)
            ring.put(seq, b"frame %d" % seq)
            if i % 3 == 2:
                ring.ack(ring.oldest(1)[0])
    except Reset:
        cut = True
    after = boot(0)
    for seq, sent in handed.items():
        if seq in after:
            assert wire(after, seq) == sent, (n, "epoch changed", seq, sent, wire(after, seq))
    assert after.epochs[0] == EPOCH0 and len(set(after.epochs)) == len(after.epochs), (n, "epochs", after.epochs)
    fresh = after.next_seq()
    assert wire(after, fresh) not in handed.values(), (n, "seq reused", wire(after, fresh))
    held = after.seqs
    if held and held[0] >> 24 == 0:
        assert all(seq >> 24 == 0 for seq in after.oldest(64)), (n, "new epoch sent early", held)
    if not cut:
        old = [seq for seq in held if seq >> 24 == 0]
        assert len(after.epochs) == 2 and old and len(old) < len(held), (held, after.epochs)
        assert after.oldest(64) == old, (after.oldest(64), old)
        break
    cuts += 1
    n += 1
print("cuts checked", cuts)
'''


def test_roll_to_a_new_epoch_at_2_24_survives_a_cut_at_every_step(tmp_path):
    script = tmp_path / "roll.py"
    script.write_text("ROOT = %r\nTMP = %r\nEPOCH0 = 7\n" % (str(ROOT), str(tmp_path)) + CUTS)
    done = subprocess.run([micropython(), "-X", "heapsize=190000", str(script)], capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert int(done.stdout.split("cuts checked")[-1]) > 40, done.stdout


class GatewayStore:
    """In the UART peer's place of its Store: each frame goes to the gateway's own Writer
    (gateway/store/writer.py), which stores and acks it, or refuses it (an epoch it has left)."""

    def __init__(self, home):
        self.writer = Writer(home.database, batch_ms=0)
        self.outcomes = []

    def answer(self, decoder, chunk, key):
        acks = []
        for item in decoder.feed(chunk):
            if not isinstance(item, Exception):
                self.outcomes += self.writer.process(
                    [("uart", item, time.time(), lambda ack: acks.append(link.encode(ack)))])
        return b"".join(acks)


@pytest.mark.parametrize("board", ("pico", "esp32"))
def test_board_rolls_to_a_new_epoch_at_2_24_and_the_gateway_takes_every_tip_once(board, gateway_home, tmp_path):
    # The store starts 10 numbers below 2^24 under epoch 7; a frame every 5 s of a 1 tip/s storm
    # crosses the roll, with watchdog resets at the flash steps after 40 s (around the roll).
    device = gateway_home.add("rg1", board=board)
    site = site_config(board, device_id=device.row["id"], key=device.row["key"], report_s=10)
    site["sensors"][0]["interval_s"] = 5
    scenario = {"duration_s": 130, "world": {"battery_v": 4.0}, "ring_seq": [(1 << 24) - 10, [7]],
                "rain": [{"from_s": 0, "to_s": 100, "every_s": 1.0}],
                "events": [{"at_s": 40, "cut_at_write": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10], "cut": "watchdog"}]}
    peer = UartPeer()
    peer.store = gateway = GatewayStore(gateway_home)
    try:
        code, events, output = run_sim(tmp_path, site, scenario, speed=20, uart=peer.spec)
    finally:
        peer.close()
    assert code == 0, output[-3000:]
    assert len([e for e in events if e.get("ev") == "board_reset"]) == 10, output[-3000:]
    assert not [o for o in gateway.outcomes if o not in ("stored", "duplicate")], gateway.outcomes
    counters = gateway_home.counters()
    assert counters.get("epoch_changes") == 1, counters
    rows = gateway_home.open().execute(
        "SELECT seq, sum(value) FROM readings WHERE device_id = ? AND channel = 2 GROUP BY seq",
        [device.row["id"]]).fetchall()
    epochs = {seq >> EPOCH_SHIFT for seq, _ in rows}
    assert epochs == {7} | epochs and len(epochs) == 2, rows
    assert sum(tips for _, tips in rows) == 100, (rows, output[-2000:])
    # Every frame of the old epoch reached the gateway (none left behind, which it would refuse now).
    old = {7 << EPOCH_SHIFT | e["seq"] for e in events if e.get("ev") == "frame" and e["seq"] < 1 << 24}
    assert old and old <= {seq for seq, _ in rows}, sorted(old - {seq for seq, _ in rows})
