"""The simulated board's `--uart pty:PATH` (what `huaico demo` uses): the board
opens a pty's slave end as its UART, a gateway-side peer in the test holds the
master end, decodes the COBS packets with huaico.ingest.decoder, stores and acks.
Every tip of the scenario must arrive exactly once, authenticated, no seq reused.
"""
import os
import select
import threading
import time

from huaico.protocol import link
from huaico.protocol.cose import MacKey
from tests.fixtures.firmware import KEY_HEX, Store, run_sim, site_config


class PtyPeer:
    """The gateway's end of a pty: read packets from the master fd, ack each stored frame."""

    def __init__(self):
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)  # the board opens the slave by its path
        self.key = MacKey(bytes.fromhex(KEY_HEX))
        self.store = Store()
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        decoder = link.Decoder(255)
        while not self.stopping:
            ready, _, _ = select.select([self.master], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(self.master, 4096)
            except OSError:  # EIO while no one has the slave open
                time.sleep(0.05)
                continue
            acks = self.store.answer(decoder, chunk, self.key)
            if acks:
                os.write(self.master, acks)

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        os.close(self.master)


def test_board_talks_to_the_gateway_over_a_pty(tmp_path):
    peer = PtyPeer()
    try:
        code, events, output = run_sim(tmp_path, site_config("pico"), "short.json", speed=100,
                                       uart="pty:" + peer.path)
    finally:
        peer.close()
    assert code == 0, output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    acked = {e["seq"] for e in events if e["ev"] == "ack"}
    made = {e["seq"] for e in events if e["ev"] == "frame"}
    store = peer.store
    assert end["tips"] == 60 and end["lost_tips"] == 0, end
    assert not store.rejects and not store.reused, (store.rejects, store.reused)
    assert made and made == set(store.frames), (sorted(made), sorted(store.frames))
    assert store.tips() == end["tips"] and store.rain_tenths() == 2 * end["tips"], (store.tips(), end)
    assert acked == made, sorted(made - acked)


def test_acks_without_a_time_drain_the_ring_and_leave_the_clock_unsynced(tmp_path):
    """A gateway that does not trust its clock acks with no time (SPEC.md 2):
    the board still drops what was acked, and never calls its clock synced."""
    peer = PtyPeer()
    peer.store.ack_time = lambda: None
    try:
        code, events, output = run_sim(tmp_path, site_config("pico"), "short.json", speed=100,
                                       uart="pty:" + peer.path)
    finally:
        peer.close()
    assert code == 0, output[-3000:]
    made = {e["seq"] for e in events if e["ev"] == "frame"}
    assert made and {e["seq"] for e in events if e["ev"] == "ack"} == made
    frames = peer.store.frames.values()
    assert len(frames) == len(made) and all(f.flags & 1 for f in frames), sorted(
        (f.seq, f.flags) for f in frames)
