"""Installed like software: `make dist` builds a wheel; a fresh virtualenv
installs it with pip, and pipx (as the README tells operators) installs it
too (dependencies from pip's cache or the registry, nothing from this
checkout on the path); the README's first commands work with each: --version,
init, device add, run (which applies and logs a migration the database lacks,
as after an upgrade) with a real signed frame over UDP, then status.

pipx is not a Debian package here: it is installed from the registry into a
virtualenv of the test's own, and PIPX_HOME / PIPX_BIN_DIR / PIPX_MAN_DIR
point into the test's directory, so nothing lands in the user's ~/.local."""
import json
import os
import pathlib
import socket
import sqlite3
import subprocess
import sys
import time

import pytest
import zipfile

from huaico.protocol import frame as wire
from huaico.protocol.cose import MacKey

ROOT = pathlib.Path(__file__).resolve().parent.parent
STEP_TIMEOUT = 600  # pip resolving a dozen dependencies on a cold cache


def _free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run(["make", "-C", str(ROOT), "dist", "DIST=%s" % dist], check=True,
                   capture_output=True, timeout=STEP_TIMEOUT)
    wheels = list(dist.glob("huaico-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("huaico-*.tar.gz")), list(dist.iterdir())
    top_level = {name.split("/")[0] for name in zipfile.ZipFile(wheels[0]).namelist()}
    assert {name for name in top_level if not name.endswith(".dist-info")} == {"huaico", "huaico_firmware"}, \
        top_level
    return wheels[0]


def _clean_env(bin_dir, home):
    """Only the install: no PYTHONPATH, no virtualenv of ours, its bin first."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("PYTHONPATH", "VIRTUAL_ENV") and not key.startswith(("HUAICO", "PIPX"))}
    env.update(HUAICO_HOME=str(home), PATH="%s:%s" % (bin_dir, env.get("PATH", "")))
    return env


def _venv(path):
    subprocess.run([sys._base_executable, "-m", "venv", str(path)], check=True,
                   timeout=STEP_TIMEOUT)
    return path / "bin"


def test_wheel_in_a_fresh_virtualenv_runs_the_first_commands(wheel, tmp_path):
    venv = tmp_path / "venv"
    installed = subprocess.run([str(_venv(venv) / "pip"), "install", "-q", str(wheel)],
                               capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert installed.returncode == 0, installed.stderr
    _first_commands(tmp_path, venv / "bin", venv)


def test_pipx_install_of_the_wheel_gives_a_working_huaico(wheel, tmp_path):
    tools = _venv(tmp_path / "tools")
    got = subprocess.run([str(tools / "pip"), "install", "-q", "pipx"],
                         capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert got.returncode == 0, got.stderr
    pipx_home, bin_dir = tmp_path / "pipx", tmp_path / "pipx-bin"
    env = _clean_env(tools, tmp_path / "home")
    env.update(PIPX_HOME=str(pipx_home), PIPX_BIN_DIR=str(bin_dir),
               PIPX_MAN_DIR=str(tmp_path / "pipx-man"), USE_EMOJI="0")
    installed = subprocess.run([str(tools / "pipx"), "install", str(wheel)], env=env,
                               capture_output=True, text=True, timeout=STEP_TIMEOUT)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    # The command pipx exposes, run from its bin directory with the tools
    # virtualenv (pipx's own) off the PATH.
    assert (bin_dir / "huaico").exists(), installed.stdout
    _first_commands(tmp_path, bin_dir, pipx_home / "venvs" / "huaico")


def _first_commands(tmp_path, bin_dir, venv):
    """The README's first commands with the `huaico` of bin_dir, installed in venv."""
    home = tmp_path / "home"
    env = _clean_env(bin_dir, home)

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
