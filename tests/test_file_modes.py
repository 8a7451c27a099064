"""Issue 11, fault 7: the data directory, huaico.toml (broker password) and
huaico.db (device keys) are created owner-only, and `huaico doctor` checks
all three. Run with the usual umask 022, which would make them 0755/0644."""
import os
import stat

from click.testing import CliRunner

from huaico.cli.main import main
from huaico.ops import doctor


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_init_creates_secrets_owner_only_and_doctor_checks_them(tmp_path, monkeypatch):
    home = tmp_path / "fresh" / "huaico"
    monkeypatch.setenv("HUAICO_HOME", str(home))
    old = os.umask(0o022)
    try:
        result = CliRunner().invoke(main, ["init"])
    finally:
        os.umask(old)
    assert result.exit_code == 0, result.output
    database = home / "huaico.db"
    assert (mode(home), mode(home / "huaico.toml"), mode(database)) == (0o700, 0o600, 0o600)
    # SQLite gives its side files the database's mode.
    for side in ("huaico.db-wal", "huaico.db-shm"):
        if (home / side).exists():
            assert mode(home / side) == 0o600, side
    checks = [c for c in doctor.run(str(home)) if c.name == "permissions"]
    assert [c.level for c in checks] == [doctor.OK] * 3, [c.line() for c in checks]
    # Opened up by hand (or by an older release): each one is named, with its fix.
    os.chmod(home, 0o755)
    os.chmod(home / "huaico.toml", 0o644)
    os.chmod(database, 0o640)
    checks = [c for c in doctor.run(str(home)) if c.name == "permissions"]
    assert [c.level for c in checks] == [doctor.FAIL] * 3
    assert [c.fix for c in checks] == ["chmod 700 %s" % home, "chmod 600 %s" % (home / "huaico.toml"),
                                       "chmod 600 %s" % database]
