"""mypy over firmware/ against the MicroPython stub packages of both board families.

The two stub packages both provide `machine`, `network`... so each lives in a
directory of its own (.stubs/rp2, .stubs/esp32), made with
    pip install --target .stubs/rp2 micropython-rp2-rpi-pico-w-stubs
    pip install --target .stubs/esp32 micropython-esp32-stubs
Errors inside the stubs themselves (they have a few) are not ours and are ignored.
"""
import subprocess
import sys

import pytest

from tests.fixtures.firmware import ROOT

STUBS = {"rp2": "micropython-rp2-rpi-pico-w-stubs", "esp32": "micropython-esp32-stubs"}
CONFIG = """[mypy]
python_version = 3.11
no_site_packages = True
ignore_missing_imports = True
follow_imports = silent
exclude = firmware/sim/
[mypy-machine,network,micropython,esp32,rp2,onewire,socket,select,time]
ignore_errors = True
"""


@pytest.mark.parametrize("family", sorted(STUBS))
def test_firmware_type_checks_against_board_stubs(family, tmp_path):
    stubs = ROOT / ".stubs" / family
    if not (stubs / "machine.pyi").exists():
        pytest.fail("the %s stubs are missing (%s): run `make test`, which installs them, or install them with\n"
                    "    %s -m pip install --target .stubs/%s %s"
                    % (family, stubs, sys.executable, family, STUBS[family]))
    try:
        import mypy  # noqa: F401
    except ImportError:
        pytest.fail("mypy is missing: run `make test`, or install it with\n    %s -m pip install mypy" % sys.executable)
    config = tmp_path / "mypy.ini"
    config.write_text(CONFIG)
    done = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(config),
                           "--cache-dir", str(tmp_path / "cache"), "firmware/"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env={"MYPYPATH": str(stubs), "PATH": "/usr/bin:/bin"})
    ours = [line for line in done.stdout.splitlines() if line.startswith("firmware/")]
    assert not ours, "\n".join(ours)
    assert done.returncode in (0, 1), "mypy did not run: " + done.stdout + done.stderr  # 2: a crash or bad option
