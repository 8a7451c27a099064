"""The systemd unit `huaico service install` writes: systemd's own
`systemd-analyze verify` accepts it without a word, and `install --dry-run`
shows every step and the unit while changing nothing."""
import os
import subprocess
import sys

import pytest

CLI = [sys.executable, "-c", "from huaico.cli.main import main; main()"]


def _huaico(*args):
    env = dict(os.environ, PYTHONPATH=os.getcwd())
    return subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=60)


def _verify(path):
    return subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def unit(tmp_path):
    done = _huaico("service", "unit", "--watchdog", "90")
    assert done.returncode == 0, done.stderr
    path = tmp_path / "huaico.service"
    path.write_text(done.stdout)
    return path


def test_systemd_analyze_verify_accepts_the_unit_silently(unit):
    done = _verify(unit)
    assert done.returncode == 0 and done.stderr == "" and done.stdout == "", done.stderr
    lines = unit.read_text().splitlines()
    for expected in ("Type=notify", "User=huaico", "SupplementaryGroups=dialout",
                     "StateDirectory=huaico", "Environment=HUAICO_HOME=/var/lib/huaico",
                     "Restart=always", "WatchdogSec=90", "WantedBy=multi-user.target"):
        assert expected in lines, expected
    start = [line for line in lines if line.startswith("ExecStart=")]
    assert start and start[0].endswith("/huaico run"), start
    assert os.access(start[0][len("ExecStart="):].rsplit(" ", 1)[0], os.X_OK)


def test_verify_is_an_oracle_that_speaks_up(unit):
    """systemd-analyze exits 0 on a setting it cannot parse, but says so on
    stderr: that is why the test above wants stderr empty."""
    unit.write_text(unit.read_text().replace("Restart=always", "Restart=allways"))
    done = _verify(unit)
    assert "restart specifier" in done.stderr, done.stderr


def test_install_dry_run_shows_the_steps_and_changes_nothing(tmp_path):
    units = tmp_path / "units"
    done = _huaico("service", "install", "--dry-run", "--unit-dir", str(units),
                   "--user", "huaico-test-nobody")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "create the system user huaico-test-nobody" in out
    assert "write %s/huaico.service" % units in out
    assert "reload systemd" in out and "start now and at every boot" in out
    assert "[Service]" in out and "User=huaico-test-nobody" in out
    assert out.rstrip().endswith("(dry run: nothing was changed)")
    assert not units.exists()


def test_install_refuses_a_serial_group_that_does_not_exist(tmp_path):
    done = _huaico("service", "install", "--dry-run", "--serial-group", "no-such-group-here")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "Error: no group 'no-such-group-here' on this machine (the group owning the serial "
        "ports; see `ls -l /dev/ttyUSB0`); pass --serial-group"]
