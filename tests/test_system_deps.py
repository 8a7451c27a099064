"""The README's promise for a fresh machine: `make test` and `make demo` name
the Debian packages they miss, in one line, when this user cannot install them."""
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "system-deps"


@pytest.fixture
def bindir():
    """A PATH directory that the unprivileged user can read (pytest's own are 0700)."""
    path = Path(tempfile.mkdtemp(prefix="huaico-deps-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _fill(bindir, missing):
    """The tools the script uses, less `missing` and sudo."""
    for name in ("bash", "id", "gcc", "socat", "gammu", "gammu-smsd", "tmux", "openssl",
                 "systemd-analyze", "mosquitto"):
        found = shutil.which(name)
        if name not in missing and found:
            (bindir / name).symlink_to(found)


def _run_unprivileged(bindir, missing):
    _fill(bindir, missing)
    # The real script, copied next to the tools: the checkout may sit under a
    # directory the unprivileged user cannot enter (a fresh clone in mktemp -d
    # is 0700), and where the checkout sits is not what this test is about.
    script = bindir / "system-deps"
    shutil.copyfile(SCRIPT, script)
    script.chmod(0o755)
    command = [str(bindir / "bash"), str(script), "test", sys.executable]
    if os.geteuid() == 0:
        # As root the script would install: run it as nobody, as a volunteer's
        # shell would be, with the system's Python (root's own may sit in /root).
        command = [shutil.which("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups",
                   str(bindir / "bash"), str(script), "test", "/usr/bin/python3"]
    return subprocess.run(command, env={"PATH": str(bindir)}, capture_output=True, text=True, timeout=60)


def test_a_user_who_cannot_install_gets_one_line_naming_the_packages(bindir):
    result = _run_unprivileged(bindir, {"mosquitto", "socat"})
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].endswith("run: sudo apt-get install -y mosquitto socat"), lines[0]


def test_nothing_is_said_when_everything_is_there(bindir):
    missing = {name for name in ("mosquitto", "socat", "gammu", "gammu-smsd", "tmux", "openssl",
                                 "systemd-analyze", "gcc") if shutil.which(name) is None}
    result = _run_unprivileged(bindir, set())
    if missing:
        assert "install -y" in result.stderr
    else:
        assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
