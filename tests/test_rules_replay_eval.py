"""`huaico rules replay` as an evaluation: firings, lead times before
reference events, missed events and false alarms, as text, JSON and PNG,
over a real data directory; the figures are worked out by hand below."""
import json

import pytest
from click.testing import CliRunner

from huaico.cli.main import main
from huaico.rules import engine as rules, evaluation
from tests.fixtures.alerting import AlertDb

T0 = 1_800_000_000  # 2027-01-15 08:00 UTC


def invoke(home, *args):
    return CliRunner().invoke(main, list(args) + ["--home", str(home)])


@pytest.fixture
def history(tmp_path):
    assert invoke(tmp_path, "init").exit_code == 0
    adb = AlertDb(tmp_path / "huaico.db")
    device = adb.add_device("0a000001", "pluvio-alto", site="San Antonio")
    # Two bursts of 12 mm in 10 minutes (2.42 times Caine's 10-minute curve),
    # at T0 and T0 + 6 h, in 1-minute readings, dry readings every 10 minutes between.
    rows = []
    for start in (T0, T0 + 6 * 3600):
        rows += [(1, 0, start + 60 * i, 12, 0) for i in range(1, 11)]
    rows += [(1, 0, T0 + 600 * i, 0, 0) for i in range(2, 72) if T0 + 600 * i not in
             {r[2] for r in rows}]
    adb.store(None, device, rows, T0 + 86400)
    adb.database.conn.close()
    out = invoke(tmp_path, "rules", "add", "curve", "--site", "san antonio", "--kind",
                 "intensity-duration", "--preset", "caine1980", "--durations", "10m,1h,3h",
                 "--levels", "watch=0.75,warning=1,emergency=1.5")
    assert out.exit_code == 0, out.output
    # One flow 25 minutes after the first burst began, at the right place;
    # one at a place the rule does not watch; one on the next day (missed).
    (tmp_path / "flows.csv").write_text(
        "time,place\n%d,SAN antonio\n%d,Chosica\n%d,\n" % (T0 + 1500, T0 + 1500, T0 + 30 * 3600))
    return tmp_path


def test_replay_scores_the_rule_against_reference_events(history):
    out = invoke(history, "rules", "replay", "curve", "--since", "2027-01-15",
                 "--until", "2027-01-17", "--events", str(history / "flows.csv"), "--json")
    assert out.exit_code == 0, out.output
    [record] = json.loads(out.output)
    assert record["fired"] == 2 and record["by_peak_level"] == {"emergency": 2}
    # The first burst: watch is reached at its 4th minute (4.8 mm in 10 min
    # = 28.8 mm/h, 0.97 of 29.8 mm/h, >= 0.75), so the lead is 25 - 4 = 21 minutes.
    assert [(r["place"], r["detected"], r["lead_s"]) for r in record["references"]] == [
        ("Chosica", False, None), ("SAN antonio", True, 1260), ("", False, None)]
    assert record["missed"] == 2 and record["false_alarms"] == 1
    assert record["lead_s"] == {"min": 1260, "median": 1260, "max": 1260}
    text = invoke(history, "rules", "replay", "--since", "2027-01-15", "--until", "2027-01-17",
                  "--events", str(history / "flows.csv")).output
    assert "curve (intensity-duration): fired 2 time(s) (peak emergency 2)" in text
    assert "detected 1, missed 2; false alarms 1; lead time min 21 min" in text
    # A reference event outside the replayed time is not scored.
    out = invoke(history, "rules", "replay", "curve", "--since", "2027-01-15", "--until",
                 "2027-01-16", "--events", str(history / "flows.csv"), "--json")
    assert [r["place"] for r in json.loads(out.output)[0]["references"]] == [
        "Chosica", "SAN antonio"]


def test_replay_png_is_drawn(history):
    png = history / "curve.png"
    out = invoke(history, "rules", "replay", "curve", "--since", "2027-01-15", "--until",
                 "2027-01-17", "--png", str(png))
    assert out.exit_code == 0, out.output
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The emergency threshold and the firings are drawn in tab:red (#d62728),
    # which nothing else on the chart uses.
    from matplotlib import image
    pixels = image.imread(str(png))[:, :, :3]
    red = (abs(pixels - (0xd6 / 255, 0x27 / 255, 0x28 / 255)).max(axis=2) < 0.02).sum()
    assert red > 500, red


def test_a_bad_reference_file_names_the_line(history):
    (history / "bad.csv").write_text("time,place\n2027-01-15T10:00,Chosica\nyesterday,x\n")
    out = invoke(history, "rules", "replay", "curve", "--since", "2027-01-15",
                 "--events", str(history / "bad.csv"))
    assert out.exit_code != 0 and "bad.csv line 3: time 'yesterday'" in out.output


def test_lead_time_and_false_alarms_by_hand():
    rule = rules.Rule("r", "above", {"watch": 1}, site="Chosica", channel="rain")
    hour = 3600
    events = [(14 * hour, "d1", 0, "raise", "watch", 2), (16 * hour, "d1", 0, "clear", "watch", 0),
              (20 * hour, "d1", 0, "raise", "watch", 2),
              (20.5 * hour, "d1", 0, "clear", "watch", 0)]
    devices = {"d1": {"id": "d1", "name": "g1", "site": "Chosica"}}
    record = evaluation.evaluate(rule, events, [(14 * hour + 1500, "chosica")], devices)
    assert record["references"][0]["lead_s"] == 1500
    assert (record["fired"], record["missed"], record["false_alarms"]) == (2, 0, 1)
    # It fired at the raises and steps up only, not when it stepped down.
    steps = events[:1] + [(14.2 * hour, "d1", 0, "update", "warning", 5),
                          (14.5 * hour, "d1", 0, "update", "watch", 2)] + events[1:]
    assert evaluation.firings(steps) == [(14 * hour, "watch"), (14.2 * hour, "warning"),
                                         (20 * hour, "watch")]
    # An episode that cleared before the event does not cover it.
    late = evaluation.evaluate(rule, events, [(17 * hour, "")], devices)
    assert late["missed"] == 1 and late["false_alarms"] == 2
