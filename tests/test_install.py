"""Installed like software: `make dist` builds a wheel, a fresh virtualenv
installs it (dependencies from pip's cache or the registry, nothing from this
checkout on the path), and the README's first commands work there: --version,
init, device add, run (which applies and logs a migration the database lacks,
as after an upgrade) with a real signed frame over UDP, then status."""
import json
import os
import pathlib
import socket
import sqlite3
import subprocess
import sys
import time

from protocol import frame as wire
from protocol.cose import MacKey

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEP_TIMEOUT = 600  # pip resolving a dozen dependencies on a cold cache


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_wheel_in_a_fresh_virtualenv_runs_the_first_commands(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(["make", "-C", str(ROOT), "dist", "DIST=%s" % dist], check=True,
                   capture_output=True, timeout=STEP_TIMEOUT)
    wheels = list(dist.glob("huaico-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("huaico-*.tar.gz")), list(dist.iterdir())
    venv = tmp_path / "venv"
    subprocess.run([sys._base_executable, "-m", "venv", str(venv)], check=True,
                   timeout=STEP_TIMEOUT)
    installed = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", str(wheels[0])],
                               capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert installed.returncode == 0, installed.stderr
    home = tmp_path / "home"
    # Only the virtualenv: no PYTHONPATH, run from a directory with no source in it.
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV") and not key.startswith("HUAICO")}
    env.update(HUAICO_HOME=str(home), PATH="%s:%s" % (venv / "bin", env.get("PATH", "")))

    def huaico(*args, **options):
        done = subprocess.run(["huaico"] + [str(a) for a in args], env=env, cwd=tmp_path,
                              capture_output=True, text=True, timeout=120, **options)
        assert done.returncode == 0, "huaico %s: %s" % (" ".join(map(str, args)), done.stderr)
        return done

    version = huaico("--version").stdout
    assert version.startswith("huaico 0.1.0 (Python 3.") and "compiled frame decoder" in version
    assert str(venv) in version, version
    assert "applied m001_initial" in huaico("init").stdout
    huaico("device", "add", "rg1", "--board", "pico", "--site", "Quebrada Alta",
           "--lat", "-11.93", "--lon", "-76.69")
    device = json.loads(huaico("device", "show", "rg1", "--show-key", "--json").stdout)

    # An upgrade: a database from before the hourly table; run applies it.
    conn = sqlite3.connect(home / "huaico.db")
    conn.execute("DROP TABLE readings_hourly")
    conn.execute("DELETE FROM _migrations WHERE name = 'm200_readings_hourly'")
    conn.commit()
    conn.close()

    port = _free_udp_port()
    gateway = subprocess.Popen(["huaico", "run", "--udp", "127.0.0.1:%d" % port, "--for", "4"],
                               env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    frame = wire.encode_frame(bytes.fromhex(device["id"]), MacKey(bytes.fromhex(device["key"])),
                              1, int(time.time()), 0, [(1, 0, 0, 7, 0), (19, 0, 0, 3900, 0)])
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.5)
        acked = False
        deadline = time.monotonic() + 3.5
        while not acked and time.monotonic() < deadline:
            sock.sendto(frame, ("127.0.0.1", port))
            try:
                acked = bool(sock.recv(256))
            except (socket.timeout, ConnectionRefusedError):
                continue
    _, log = gateway.communicate(timeout=60)
    assert gateway.returncode == 0, log
    assert acked, log
    assert "event=migrated names=m200_readings_hourly" in log, log
    status = json.loads(huaico("status", "--json").stdout)
    text = json.dumps(status)
    assert "rg1" in text and "Quebrada Alta" in text, text
