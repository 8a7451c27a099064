"""`huaico rules ...` and `huaico alerts ...` through click's CliRunner on a
real data directory."""
import datetime
import json

from click.testing import CliRunner

from huaico.alerts import acks
from huaico.cli.main import main
from huaico.rules import engine as rules
from huaico.store import db
from tests.fixtures.alerting import AlertDb, CONFIG

T0 = 1_800_000_000


def run(home, *args):
    result = CliRunner().invoke(main, list(args) + ["--home", str(home)])
    assert result.exit_code == 0, result.output
    return result.output


def test_rules_and_alerts_commands(tmp_path):
    run(tmp_path, "init")
    adb = AlertDb(tmp_path / "huaico.db")
    device = adb.add_device("0a0b0c0d", "g1")  # a rule must point at a known device
    out = run(tmp_path, "rules", "add", "rain-1h", "--device", "g1", "--channel", "rain",
              "--kind", "accumulation", "--window", "1h",
              "--levels", "watch=2,warning=4,emergency=6", "--hysteresis", "0.5",
              "--min-duration", "0")
    assert "accumulation rain of device g1 over 3600s" in out
    bad = CliRunner().invoke(main, ["rules", "add", "x", "--kind", "rise", "--channel", "rain",
                                    "--levels", "watch=2", "--home", str(tmp_path)])
    assert bad.exit_code != 0 and "window" in bad.output
    run(tmp_path, "rules", "edit", "rain-1h", "--levels", "watch=2.5,warning=4")
    listed = json.loads(run(tmp_path, "rules", "list", "--json"))
    assert listed[0]["levels"] == {"watch": 2.5, "warning": 4.0}

    for i, tenths in enumerate([10, 20, 0, 0, 0, 0, 0]):
        adb.store(None, device, [(1, 0, T0 + i * 1200, tenths, 0)], T0)
    out = run(tmp_path, "rules", "replay", "rain-1h", "--since", "2027-01-01")
    assert "raise  watch" in out and "clear  watch" in out and "2 event(s)" in out
    assert adb.rows("SELECT count(*) FROM alerts") == [(0,)]

    engine = rules.RuleEngine(adb.database, CONFIG)
    adb.store(engine, device, [(1, 0, T0 + 9000, 30, 0)], T0 + 9000)
    assert "watch" in run(tmp_path, "alerts", "list")
    assert "event huaico.1.1 Alert watch" in run(tmp_path, "alerts", "show", "1")
    assert "acknowledged 1" in run(tmp_path, "alerts", "ack", "1", "--by", "Rosa")
    assert "already" in run(tmp_path, "alerts", "ack", "1")
    # A leader's reply to the alert's SMS, and what became of it.
    with db.transaction(adb.database) as conn:
        acks.handle_sms(conn, CONFIG, "+51987654321", "OK 1", T0 + 9100)
    shown = run(tmp_path, "alerts", "show", "1").splitlines()
    assert shown[-1] == ('reply "OK 1" from +51987654321 at %s: already_acked (group leaders)'
                         % datetime.datetime.fromtimestamp(T0 + 9100).strftime(
                             "%Y-%m-%d %H:%M:%S"))
    texted = shown.index([line for line in shown if line.startswith("message 1 sms ")][0])
    assert shown[texted + 1].startswith("    VIGILANCIA chosica: 3 mm de lluvia en 1 hora")
    # `init` writes no phone number anyone could be texted at by mistake,
    # and a test without an SMS backend is refused in one line.
    config_path = tmp_path / "huaico.toml"
    lines = config_path.read_text().splitlines()
    assert [line for line in lines if line.startswith("numbers")] == ["numbers = []"]
    refused = CliRunner().invoke(main, ["alerts", "test", "leaders", "--home", str(tmp_path)])
    assert refused.exit_code != 0
    assert refused.output.strip().splitlines() == [
        'Error: no SMS backend: set [sms] backend = "modem" or "spool" in huaico.toml, '
        "then try again"]
    config_path.write_text(config_path.read_text().replace(
        'backend = "none"', 'backend = "spool"').replace('spool_dir = ""', 'spool_dir = "spool"')
        .replace("numbers = []", 'numbers = ["+51987654321"]'))
    no_group = CliRunner().invoke(main, ["alerts", "test", "nobody", "--home", str(tmp_path)])
    assert no_group.exit_code != 0 and "no group 'nobody'" in no_group.output
    out = run(tmp_path, "alerts", "test", "leaders")  # the default config's group
    assert "queued 1 test message(s) to leaders" in out
    assert adb.rows("SELECT recipient, level FROM outbox WHERE alert_id IS NULL") == [
        ("+51987654321", "test")]
    active = CliRunner().invoke(main, ["rules", "remove", "rain-1h", "--home", str(tmp_path)])
    assert active.exit_code != 0 and "active alert" in active.output
    run(tmp_path, "rules", "remove", "rain-1h", "--force")
    assert run(tmp_path, "rules", "list") == ""
    adb.database.conn.close()
