"""`huaico doctor` on rules: one that matches no device, a group with no
numbers and a rule whose alerts reach nobody, on a real data directory."""
import pytest

from huaico import config as config_mod
from huaico.ops import doctor
from huaico.rules import engine as rules
from tests.fixtures.alerting import AlertDb

TOML = """
[sms]
backend = "spool"
spool_dir = "spool"

[[groups]]
name = "leaders"
numbers = ["+51987654321"]
min_level = "warning"

[[groups]]
name = "empty"
numbers = []
min_level = "advisory"
"""


def test_doctor_lists_rules_that_point_at_nothing_or_reach_nobody(tmp_path):
    (tmp_path / "huaico.toml").write_text(TOML)
    config = config_mod.load(tmp_path)
    adb = AlertDb(config.database_path)
    adb.add_device("0a000001", "pluvio-alto", site="San Antonio")
    adb.add_rule(rules.Rule("good", "accumulation", {"watch": 5, "warning": 10},
                            site="san antonio", channel="rain", window_s=3600))
    adb.add_rule(rules.Rule("gone", "above", {"warning": 1}, device="pluvio-viejo",
                            channel="rain"))
    adb.add_rule(rules.Rule("quiet", "above", {"watch": 1}, device="pluvio-alto",
                            channel="rain"))
    adb.add_rule(rules.Rule("basin", "k-of-n", {"warning": 30}, site="San Antonio",
                            channel="rain", window_s=3600, params={"k": 1}))
    adb.database.conn.close()
    lines = [c.line() for c in doctor.check_rules(config)]
    assert any(line.startswith("WARN") and "rule basin says at advisory level" in line
               for line in lines), lines
    assert any("group empty has no numbers" in line for line in lines), lines
    assert any(line.startswith("WARN") and "rule gone matches no device" in line
               for line in lines), lines
    assert any(line.startswith("FAIL") and "alerts of rule quiet reach nobody: no group with "
               "numbers takes watch" in line for line in lines), lines
    assert not any("rule good" in line for line in lines), lines
    assert "rules" in [c.name for c in doctor.run(tmp_path, quick=True)]


def test_doctor_shows_the_time_zone_of_messages(tmp_path):
    now = 1_800_000_000  # 2027-01-15 08:00 UTC
    lima = config_mod.from_text('[alerts]\ntimezone = "America/Lima"\n', tmp_path)
    assert doctor.check_timezone(lima, now)[0].line() == (
        "OK   timezone       messages and quiet hours use America/Lima (UTC-0500, now 03:00)")
    system = doctor.check_timezone(config_mod.from_text("", tmp_path), now)[0]
    assert system.detail.startswith("messages and quiet hours use the system's zone ")
    assert "[alerts] timezone" in system.fix
    with pytest.raises(config_mod.ConfigError, match="'Lima' is not an IANA time zone"):
        config_mod.from_text('[alerts]\ntimezone = "Lima"\n', tmp_path)


def test_doctor_warns_of_a_shift_table_the_backend_cannot_send(tmp_path):
    spool = config_mod.from_text(TOML.replace('min_level = "warning"', 'min_level = "warning"\n'
                                              'shift_table = "es"'), tmp_path)
    assert [check.line() for check in doctor.check_shift_tables(spool)] == [
        'WARN sms alphabet   group leaders: shift_table = \'es\' needs [sms] backend = '
        '"modem"; its texts go without accents -> set backend = "modem", or shift_table = ""']
    spool["sms"]["backend"] = "modem"
    assert doctor.check_shift_tables(spool) == []
