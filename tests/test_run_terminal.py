"""`huaico run` in a real terminal (tmux): log lines written while the status
line is shown each get a line of their own, and the status line is redrawn
below them instead of being glued to the next log line."""
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest


def _tmux(socket_name, *args):
    return subprocess.run(["tmux", "-L", socket_name] + list(args), capture_output=True,
                          text=True, timeout=10)


def test_status_line_never_mixes_with_log_lines(gateway_home):
    if shutil.which("tmux") is None:
        pytest.fail("tmux not found; install with: apt-get install tmux")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    socket_name = "huaico-run-%d" % os.getpid()
    command = ("cd %s && HUAICO_HOME=%s %s -c 'from huaico.cli.main import main; main()' run "
               "--udp 127.0.0.1:%d --status-every 0.2 --for 6; echo RUN-ENDED; sleep 60"
               % (os.getcwd(), gateway_home.path, sys.executable, port))
    started = _tmux(socket_name, "new-session", "-d", "-x", "250", "-y", "50", command)
    assert started.returncode == 0, started.stderr
    try:
        deadline = time.monotonic() + 20
        while "frames/s=" not in _tmux(socket_name, "capture-pane", "-p").stdout:
            assert time.monotonic() < deadline, "no status line"
            time.sleep(0.05)
        # Garbage datagrams: each is a reject, logged as a warning while the
        # status line is on the screen.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
            for n in range(5):
                sender.sendto(b"\xff\x00garbage %d" % n, ("127.0.0.1", port))
                time.sleep(0.3)
        while "RUN-ENDED" not in _tmux(socket_name, "capture-pane", "-p").stdout:
            assert time.monotonic() < deadline + 10, "run did not end"
            time.sleep(0.1)
        lines = _tmux(socket_name, "capture-pane", "-p", "-J").stdout.splitlines()
    finally:
        _tmux(socket_name, "kill-server")
    rejects = [line for line in lines if "event=reject" in line]
    assert len(rejects) == 5, "\n".join(lines)
    for line in lines:
        assert not ("frames/s=" in line and "level=" in line), "glued:\n%s" % "\n".join(lines)
    assert all(line.startswith("ts=") for line in rejects), "\n".join(lines)
    status = [line for line in lines if "frames/s=" in line]
    assert status and status[-1].startswith("frames/s="), "\n".join(lines)
