"""The flash ring on a real littlefs2 image, under a power cut at every block write.

The script below runs a workload of puts (with drops when full) and acks on
the unix port's vfs.VfsLfs2 over firmware/sim/blockdev.py and flashchip.py,
the flash the simulated board mounts, with the boards' geometry. The N-th erase or
program of the run is cut half way (a torn block; nothing is written after
it), for every N until the workload completes uncut; after each cut a fresh
littlefs mount and a fresh Ring boot on the same image and must be readable,
hold every committed un-acked frame, hold no acked frame except the one whose
ack the cut interrupted (resent once), count every drop, and never hand out a
sequence number again. Two workloads: a ring full by its configured capacity
(frames inline in littlefs's metadata, rp2's mount), and one full by the
filesystem itself (frames larger than esp32's 128-byte inline limit, one
4 KB block each, on a partition of a few blocks): ENOSPC must turn into
counted drops of the oldest frames, never into an exception.

The checker is run against two deliberately broken rings as well, defined in
the script, and must catch each: one that loses its newest un-acked frame at
boot, one that keeps its sequence counter in RAM only.
"""
import subprocess

import pytest

from huaico.protocol.frame import FLAG_DROPPED
from tests.fixtures.firmware import ROOT, UartPeer, micropython, run_sim, site_config, smallest_claimed_heap

SCRIPT = r'''
import os, sys, vfs
sys.path.insert(0, ROOT)
from firmware.flash import Flash
from firmware.ring import Ring, _name
from firmware.sim.board import Reset
from firmware.sim.flashchip import BLOCK, Chip

class ForgetsNewest(Ring):
    """Broken: an off-by-one at boot loses the newest committed frame."""
    def _recover(self):
        Ring._recover(self)
        if len(self):
            newest = self.seqs[-1]
            self._remove(newest)
            self.flash.remove(_name(newest))

class ReusesSeq(Ring):
    """Broken: the counter lives in RAM; a boot restarts after the highest frame still stored."""
    def next_seq(self):
        seq = self._next
        self._next = seq + 1
        return seq
    def _read_meta(self):
        return -1

RING = {"Ring": Ring, "ForgetsNewest": ForgetsNewest, "ReusesSeq": ReusesSeq}[VARIANT]
# (blocks, VfsLfs2 options, ring capacity, frame size): full by capacity on rp2's mount
# (ports/rp2/modules/_boot.py: progsize=256), full by littlefs on esp32's default mount.
BLOCKS, OPTS, CAP, SIZE = {"capacity": (32, {"progsize": 256}, 4, 90),
                           "enospc": (12, {}, 1000, 600)}[WORKLOAD]
CHIP = Chip(TMP + "/flash.img", BLOCKS * BLOCK, OPTS)

mounted = []
def boot(cut_at):
    """A new boot on the same chip: the old mount gone, littlefs mounted afresh."""
    while mounted:
        mounted.pop().close()
        vfs.umount("/ring")
    CHIP.arm(cut_at)
    mounted.append(CHIP.mount("/ring"))
    return Flash("/ring/data")

def workload(ring, model, state):
    for i in range(30 if WORKLOAD == "enospc" else 14):
        state["busy"] = True
        seq = ring.next_seq()
        state["handed"].append(seq)
        state["put"] = seq
        ring.put(seq, (b"frame %d " % seq) * (SIZE // 8))
        model.append(seq)
        while model[0] not in ring.seqs:
            model.pop(0)  # dropped: the ring was full
        state["drops"] = ring.dropped
        state["put"] = None
        state["busy"] = False
        if i % 3 == 2:
            seq = model[0]
            state["acking"] = seq
            ring.ack(seq)
            model.remove(seq)
            state["acked"].append(seq)
            state["acking"] = None
    return ring

n = 1
cuts = 0
full = 0
while True:
    while mounted:
        mounted.pop().close()
        vfs.umount("/ring")
    CHIP.blank()
    CHIP.mkfs()
    model = []
    state = {"handed": [], "put": None, "busy": False, "acking": None, "acked": [], "drops": 0}
    cut = False
    try:
        full = workload(RING(boot(n), CAP, 3), model, state).dropped
    except Reset:
        cut = True
    after = RING(boot(0), CAP, 3)
    present = set(after.seqs)
    for seq in present:
        assert after.get(seq) is not None, (n, "unreadable", seq)
    missing = [seq for seq in model if seq not in present and seq != state["acking"]]
    if state["busy"]:
        # the put under way may have dropped the oldest frames (one when full by capacity)
        assert missing == model[:len(missing)], (n, "lost", missing, state)
        assert WORKLOAD == "enospc" or len(missing) <= 1, (n, "lost", missing, state)
    assert state["busy"] or not missing, (n, "lost", missing, state)
    may = set(model)
    for extra in (state["put"], state["acking"]):
        if extra is not None:
            may.add(extra)
    assert present <= may, (n, "unexpected", sorted(present - may), state)
    for seq in state["acked"]:
        assert seq not in present, (n, "acked frame kept", seq)
    fresh = after.next_seq()
    assert fresh > max(state["handed"] or [-1]), (n, "seq reused", fresh, state["handed"])
    assert state["drops"] + len(missing) - 1 <= after.dropped <= state["drops"] + len(missing) + 1, (
        n, "drops", after.dropped, state["drops"], missing)
    if state["acking"] is not None and state["acking"] in present:
        after.ack(state["acking"])  # the resend's ack: gone for good
        assert state["acking"] not in set(RING(boot(0), CAP, 3).seqs)
    if not cut:
        break
    cuts += 1
    n += 1
print("drops uncut", full)
print("cuts checked", cuts)
'''


def _run(tmp_path, variant, workload="capacity"):
    script = tmp_path / "cut.py"
    script.write_text("ROOT = %r\nTMP = %r\nVARIANT = %r\nWORKLOAD = %r\n" % (str(ROOT), str(tmp_path), variant, workload)
                      + SCRIPT)
    return subprocess.run([micropython(), "-X", "heapsize=190000", str(script)], capture_output=True,
                          text=True, timeout=300)


@pytest.mark.parametrize("workload, least", [("capacity", 40), ("enospc", 60)])
def test_ring_survives_a_power_cut_at_every_block_write(workload, least, tmp_path):
    done = _run(tmp_path, "Ring", workload)
    assert done.returncode == 0, done.stdout + done.stderr
    cuts = int(done.stdout.split("cuts checked")[-1])
    assert cuts > least, done.stdout  # every erase and program of the workload was cut once
    dropped = int(done.stdout.split("drops uncut")[-1].split()[0])
    assert dropped > 0, done.stdout  # the ring did fill: drops (by ENOSPC in the second) happened
    print(done.stdout)


@pytest.mark.parametrize("variant, caught", [("ForgetsNewest", "'lost'"), ("ReusesSeq", "'seq reused'")])
def test_the_checker_catches_a_broken_ring(variant, caught, tmp_path):
    done = _run(tmp_path, variant)
    output = done.stdout + done.stderr  # micropython prints the traceback on stdout
    assert done.returncode != 0 and "AssertionError" in output, output
    assert caught in output, output


def test_a_full_flash_drops_the_oldest_and_never_stops_the_loop(tmp_path, compiled_runner):
    """The whole firmware on a Pico W (the smallest partition, 848 KB, the code in it too, and
    520 KB of other files), a frame a second and no gateway until littlefs has no room: the
    ring drops its oldest frames (counted, flagged) and goes on, a watchdog reset while full
    boots and goes on (no reset loop), and once the gateway is back the backlog drains."""
    site = site_config("pico_w", ring={"frames": 1600})
    for sensor in site["sensors"]:
        sensor["interval_s"] = 1
    scenario = {"duration_s": 900, "world": {"battery_v": 4.0}, "flash_ballast_kb": 520,
                "rain": [{"from_s": 0, "to_s": 600, "every_s": 2.0}],
                "link_down": [{"from_s": 0, "to_s": 600}],
                "events": [{"at_s": 500.3, "reset": "watchdog"}]}
    peer = UartPeer()
    try:
        code, events, output = run_sim(tmp_path, site, scenario, heap=smallest_claimed_heap("pico_w"),
                                        speed=100, uart=peer.spec, timeout=600, runner=compiled_runner)
    finally:
        peer.close()
    store = peer.store
    assert code == 0 and "Traceback" not in output and "MemoryError" not in output, output[-3000:]
    frames = [e for e in events if e["ev"] == "frame"]
    peak = max(e["ring"] for e in frames)
    assert 30 < peak < 500, peak  # littlefs, not the configured 1600, set the ring's size
    restored = [e for e in events if e["ev"] == "restored"]
    assert restored[-1]["dropped"] > 0, restored  # counted, in flash across the reset
    after_reset = [e for e in frames if e["ms"] > 500300]
    assert len(after_reset) > 50, len(after_reset)
    assert not store.rejects and not store.reused, (store.rejects[:5], store.reused[:10])
    assert any(f.flags & FLAG_DROPPED for f in store.frames.values())  # the drop reached the gateway
    assert len(store.frames) >= peak, (len(store.frames), peak)
    print("ring held %d frames at most on what pico_w's 848 KB had left; %d dropped; %d frames at the gateway"
          % (peak, restored[-1]["dropped"], len(store.frames)))
