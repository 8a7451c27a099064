"""The storm: 1 tip/s for 10 scenario minutes, the link down for 5 of them and a
watchdog reset in the middle; the gateway-side peer must get every tip exactly
once, every frame authenticated, no sequence number reused. The frames also
verify with pycose (COSE interop) in its own environment. The same storm runs
on every board at the smallest heap its port claims, acking and ring removal
included; and tips survive resets and power cuts that do not line up with the
samples, at flash steps between saving the taken tips and committing their frame."""
import json
import os
import subprocess

import pytest

from tests.fixtures.firmware import BOARDS, KEY_HEX, UartPeer, run_sim, site_config, smallest_claimed_heap

BUCKET_TENTHS = 2  # 0.2 mm per tip


@pytest.fixture(scope="module")
def storm(tmp_path_factory, compiled_runner):
    tmp = tmp_path_factory.mktemp("storm")
    peer = UartPeer()
    try:
        code, events, output = run_sim(tmp, site_config(), "storm.json", speed=60, uart=peer.spec,
                                        runner=compiled_runner)
    finally:
        peer.close()
    return code, events, output, peer.store


def test_storm_every_tip_arrives_exactly_once(storm):
    code, events, output, store = storm
    assert code == 0, output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    assert end["tips"] == 600 and end["lost_tips"] == 0 and end["resets"] == 1, end
    assert [e for e in events if e["ev"] == "link"], "the link never went down"
    assert not store.rejects, store.rejects[:5]
    assert not store.reused, "sequence numbers reused: %r" % store.reused[:10]
    # The ring survives the watchdog reset, and with it the board's epoch (SPEC.md 1.3).
    assert len(store.epochs) == 1 and 0 not in store.epochs, store.epochs
    assert store.tips() == 600, (store.tips(), sorted(store.frames))
    assert store.rain_tenths() == 600 * BUCKET_TENTHS
    assert all(f.signed for f in store.frames.values())
    # The first frame after each boot says so. After power-on it carries the unsynced-clock flag until
    # an ack; after the reset the gateway's time comes back from retained memory (firmware/retained.py).
    boots = sorted((f for f in store.frames.values() if f.flags & 4), key=lambda f: f.seq)
    assert len(boots) == 2, sorted((f.seq, f.flags) for f in store.frames.values())
    assert boots[0].flags & 1 and not boots[1].flags & 1, [(f.seq, f.flags) for f in boots]
    seqs = sorted(store.frames)
    assert len(set(seqs)) == len(seqs)


def test_storm_resends_after_the_outage_and_drains(storm):
    code, events, output, store = storm
    retries = [e for e in events if e["ev"] == "retry"]
    assert retries, "the link-down window caused no retry"
    made = {e["seq"] for e in events if e["ev"] == "frame"}
    assert set(store.frames) <= made
    # Only the newest frames, made after the last report, may still wait in the ring at the end.
    waiting = made - set(store.frames)
    assert all(seq > max(store.frames) for seq in waiting), sorted(waiting)
    assert len(waiting) <= 2, sorted(waiting)


def test_storm_frames_verify_with_pycose(storm, tmp_path):
    python = os.environ.get("HUAICO_COSE_PYTHON")
    if not python:
        pytest.fail("HUAICO_COSE_PYTHON is not set; run `make test` (it makes .venv-cose with pycose and cbor2 5)")
    store = storm[3]
    frames = [store.raw[seq].hex() for seq in sorted(store.raw)[:40]]
    script = tmp_path / "verify.py"
    script.write_text(
        "import json, sys\n"
        "from pycose.messages import Mac0Message\n"
        "from pycose.keys import SymmetricKey\n"
        "data = json.load(open(sys.argv[1]))\n"
        "key = SymmetricKey(k=bytes.fromhex(data['key']))\n"
        "ok = 0\n"
        "for h in data['frames']:\n"
        "    msg = Mac0Message.decode(bytes.fromhex(h))\n"
        "    msg.key = key\n"
        "    assert msg.verify_tag(), h\n"
        "    ok += 1\n"
        "print('verified', ok)\n")
    payload = tmp_path / "frames.json"
    payload.write_text(json.dumps({"key": KEY_HEX, "frames": frames}))
    done = subprocess.run([python, str(script), str(payload)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "verified %d" % len(frames)


def _resets_off_the_samples():
    """Rain at one tip per 0.7 s for 10 minutes; resets that do not line up with the
    samples: at odd times, and chains of watchdog resets at the 1st, 2nd, ... 8th flash
    step (erase or program) of each boot that follows, which land between retained.save
    of the tips a frame takes and that frame's rename, and on the ring's meta and acks;
    then, once it is dry, power cuts at every step of the boots that follow one."""
    events = [{"at_s": 41.3, "reset": "soft"}, {"at_s": 97.9, "reset": "watchdog"},
              {"at_s": 163.1, "reset": "hard"}, {"at_s": 229.4, "reset": "watchdog"},
              {"at_s": 300.37, "cut_at_write": list(range(1, 9)), "cut": "watchdog"},
              {"at_s": 450.61, "cut_at_write": list(range(1, 9)), "cut": "watchdog"},
              # Dry from 600 s and sampled within 15 s: no tip is pending in RAM when the power goes.
              {"at_s": 700.5, "cut_at_write": list(range(1, 7))}]
    return {"duration_s": 900, "world": {"battery_v": 4.0},
            "rain": [{"from_s": 0, "to_s": 600, "every_s": 0.7}], "events": events}


def test_tips_kept_across_resets_that_do_not_line_up_with_samples(tmp_path, compiled_runner):
    peer = UartPeer()
    try:
        code, events, output = run_sim(tmp_path, site_config(), _resets_off_the_samples(), speed=60,
                                        uart=peer.spec, runner=compiled_runner)
    finally:
        peer.close()
    store = peer.store
    assert code == 0 and "Traceback" not in output, output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    at_steps = [e for e in events if e["ev"] == "reset" and "at_step" in e]
    assert end["resets"] == 26 and len(at_steps) == 22, (end, at_steps)
    restored = [e["tips"] for e in events if e["ev"] == "restored"]
    assert sum(1 for n in restored if n > 0) >= 3, restored  # the restore ran with tips pending
    assert not store.rejects and not store.reused, (store.rejects[:5], store.reused[:10])
    assert end["lost_tips"] == 0 and store.tips() == end["tips"], (store.tips(), end["tips"], restored)


@pytest.mark.parametrize("board", BOARDS)
def test_storm_with_a_gateway_at_the_smallest_claimed_heap(board, tmp_path, compiled_runner):
    heap = smallest_claimed_heap(board)
    peer = UartPeer()
    try:
        code, events, output = run_sim(tmp_path, site_config(board), "storm.json", heap=heap, speed=60,
                                        uart=peer.spec, runner=compiled_runner)
    finally:
        peer.close()
    store = peer.store
    assert code == 0 and "MemoryError" not in output and "Traceback" not in output, output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    assert end["free_heap"] == heap and end["resets"] == 1, end
    acks = [e for e in events if e["ev"] == "ack"]
    assert len(acks) >= len(store.frames) - 2, (len(acks), len(store.frames))  # ring removal ran here
    assert not store.rejects and not store.reused, (store.rejects[:5], store.reused[:10])
    assert store.tips() == end["tips"] == 600, (store.tips(), end)
    print("%s at %d B: heap steady %d, peak %d, %d frames acked" % (board, heap, end["heap_steady"],
                                                                  end["heap_peak"], len(acks)))
