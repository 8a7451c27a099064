"""`huaico status` in a real terminal (tmux): what a person at an SSH prompt
sees, colour included, on a database filled by the real writer."""
import os
import shutil
import subprocess
import sys
import time

import pytest


def _tmux(socket_name, *args):
    return subprocess.run(["tmux", "-L", socket_name] + list(args), capture_output=True,
                          text=True, timeout=10)


def test_status_in_a_terminal(ops_network, tmp_path):
    if shutil.which("tmux") is None:
        pytest.fail("tmux not found; install with: apt-get install tmux")
    socket_name = "huaico-test-%d" % os.getpid()
    command = "cd %s && HUAICO_HOME=%s %s -c 'from huaico.cli.main import main; main()' status; " \
              "sleep 60" % (os.getcwd(), ops_network.home.path, sys.executable)
    started = _tmux(socket_name, "new-session", "-d", "-x", "160", "-y", "30", command)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 20
        while True:
            screen = _tmux(socket_name, "capture-pane", "-p", "-e").stdout
            if "Active alerts" in screen:
                break
            assert time.monotonic() < deadline, "status never finished:\n" + screen
            time.sleep(0.1)
        plain = _tmux(socket_name, "capture-pane", "-p").stdout
    finally:
        _tmux(socket_name, "kill-server")
    lines = plain.splitlines()
    assert lines[0].startswith("4 devices, 2 stale")
    soil = [line for line in lines if "soil-03" in line and "STALE" in line]
    rain = [line for line in lines if "rain-01" in line and "12.3 mm" in line]
    assert soil and soil[0].startswith("!") and rain and "3.71 V" in rain[0]
    # On a terminal the stale rows are red and the fresh ones are not (tmux
    # writes an attribute once, where it changes).
    start = screen.index("\x1b[31m")
    red = screen[start:screen.index("\x1b[0m", start)]
    assert "never-04" in red and "soil-03" in red and "rain-01" not in red
    assert any("WATCH river-high" in line for line in lines)
