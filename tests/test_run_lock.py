"""`huaico run` as real processes: one gateway per data directory (a second
refuses with one line naming the first's pid), `doctor` sees who runs, the
lock dies with its process, and systemd's notify protocol (READY, WATCHDOG,
STOPPING) arrives on a real unix datagram socket."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

CLI = [sys.executable, "-c", "from huaico.cli.main import main; main()"]
WAIT = 20.0  # upper bound on a loaded machine, not a measurement


def _env(home, **extra):
    return dict(os.environ, HUAICO_HOME=str(home.path), PYTHONPATH=os.getcwd(), **extra)


def start(home, pty_path, *extra, **env):
    return subprocess.Popen(CLI + ["run", "--serial", pty_path, "--status-every", "3600", *extra],
                            env=_env(home, **env), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_started(process):
    """Read the gateway's log until event=started (it holds the lock before)."""
    deadline = time.monotonic() + WAIT
    seen = []
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        if "event=started" in line:
            return
        assert line, "gateway exited before starting:\n" + "".join(seen)
    raise AssertionError("no event=started within %.0f s:\n%s" % (WAIT, "".join(seen)))


def stop(process):
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=WAIT)
    return process.returncode


def doctor_gateway(home):
    result = subprocess.run(CLI + ["doctor", "--json"], env=_env(home), capture_output=True,
                            text=True, timeout=WAIT)
    checks = json.loads(result.stdout)["checks"]
    return [check for check in checks if check["check"] == "gateway"][0]


def test_a_second_gateway_refuses_naming_the_first(gateway_home, pty_pair):
    first = start(gateway_home, pty_pair.path)
    try:
        wait_started(first)
        check = doctor_gateway(gateway_home)
        assert check["level"] == "OK" and "pid %d" % first.pid in check["detail"], check
        second = subprocess.run(CLI + ["run", "--serial", pty_pair.path], env=_env(gateway_home),
                                capture_output=True, text=True, timeout=WAIT)
        assert second.returncode != 0
        assert second.stdout == ""
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1, second.stderr
        assert "pid %d" % first.pid in lines[0] and "running" in lines[0], lines[0]
        assert first.poll() is None, "the first gateway must keep running"
    finally:
        assert stop(first) == 0
    check = doctor_gateway(gateway_home)
    assert check["level"] == "WARN" and "no gateway" in check["detail"], check


def test_the_lock_dies_with_a_killed_gateway(gateway_home, pty_pair):
    first = start(gateway_home, pty_pair.path)
    wait_started(first)
    first.kill()
    first.communicate(timeout=WAIT)
    # The lock file is still there with the dead pid in it; the lock is not.
    assert (gateway_home.path / "huaico.lock").read_text().strip() == str(first.pid)
    assert doctor_gateway(gateway_home)["level"] == "WARN"
    again = start(gateway_home, pty_pair.path)
    try:
        wait_started(again)
    finally:
        assert stop(again) == 0


def test_systemd_notify_ready_watchdog_and_stopping(gateway_home, pty_pair, tmp_path):
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(WAIT)
    # WatchdogSec=1: pings every half second while the writer is healthy.
    gateway = start(gateway_home, pty_pair.path, NOTIFY_SOCKET=address,
                    WATCHDOG_USEC="1000000")
    try:
        messages = [sock.recv(4096).decode()]
        assert messages[0].startswith("READY=1\nSTATUS=pid %d" % gateway.pid), messages
        started = time.monotonic()
        while messages.count("WATCHDOG=1") < 3:
            messages.append(sock.recv(4096).decode())
        # Three pings at WatchdogSec/2 after READY.
        assert time.monotonic() - started >= 1.0
    finally:
        assert stop(gateway) == 0
    rest = []
    sock.settimeout(1.0)
    try:
        while True:
            rest.append(sock.recv(4096).decode())
    except socket.timeout:
        pass
    sock.close()
    assert "STOPPING=1" in rest, rest
