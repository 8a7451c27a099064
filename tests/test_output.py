"""Output for people and scripts on a network fed through the real writer and
rule engine: names where tables hold ids, local times where they hold epoch
seconds, ISO times and numbers in --json, and a cut list always says so."""
import datetime
import json
import re

from click.testing import CliRunner

from huaico.cli.main import main

EPOCH = re.compile(r"\b1[0-9]{9}(\.[0-9]+)?\b")


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_device_show_and_list_times_and_names(ops_network):
    river = ops_network.river.row
    shown = invoke("device", "show", "river-02").stdout
    assert not EPOCH.search(shown), shown
    created = datetime.datetime.fromtimestamp(river["created"]).astimezone()
    assert "created        %s" % created.strftime("%Y-%m-%d %H:%M:%S %Z") in shown
    assert re.search(r"last seen      \S+ \S+ \S+ \(1m ago\)", shown), shown
    assert "battery        3.95 V" in shown
    listed = json.loads(invoke("device", "list", "--json").stdout)
    by_name = {row["name"]: row for row in listed}
    assert datetime.datetime.fromisoformat(by_name["river-02"]["created"]).timestamp() == \
        int(river["created"])
    assert by_name["never-04"]["last_seen"] is None
    assert by_name["river-02"]["battery_mv"] == 3950


def test_rules_show_names_the_device_not_its_id(ops_network):
    river = ops_network.river.row
    shown = invoke("rules", "show", "river-high").stdout
    state = shown.splitlines()[-1]
    assert state.startswith("river-02: watch value=2.5 at "), state
    assert river["id"] not in shown and not EPOCH.search(state)


def test_alerts_list_says_when_it_is_cut(ops_network):
    conn = ops_network.home.open().conn
    conn.execute("BEGIN")
    for n in range(60):
        conn.execute("INSERT INTO alerts (rule_name, device_id, idx, kind, place, level, "
                     "peak_level, status, raised) VALUES ('old', ?, 0, 'above', 'x', 'watch', "
                     "'watch', 'cleared', ?)", [ops_network.river.row["id"],
                                                ops_network.now - 86400 + n])
    conn.execute("COMMIT")
    listed = invoke("alerts", "list", "--all", "--json")
    assert len(json.loads(listed.stdout)) == 50
    assert listed.stderr.startswith("(showing the newest 50 alerts; more match: ")
    active = invoke("alerts", "list", "--json")
    assert active.stderr == "" and len(json.loads(active.stdout)) == 1
    assert datetime.datetime.fromisoformat(json.loads(active.stdout)[0]["raised"]).tzinfo
