"""`huaico rules add` for the new kinds and the refusal of rules that point
at nothing, through CliRunner on a real data directory."""
import json

from click.testing import CliRunner

from huaico.cli.main import main
from tests.fixtures.alerting import AlertDb


def invoke(home, *args):
    return CliRunner().invoke(main, list(args) + ["--home", str(home)])


def home_with_devices(tmp_path):
    assert invoke(tmp_path, "init").exit_code == 0
    adb = AlertDb(tmp_path / "huaico.db")
    adb.add_device("0a000001", "pluvio-alto", site="San Antonio")
    adb.add_device("0a000002", "pluvio-bajo", site="San Antonio")
    adb.add_device("0a000003", "rio-chosica", site="Chosica")
    adb.database.conn.close()
    return tmp_path


def test_intensity_duration_and_k_of_n_rules_are_added(tmp_path):
    home = home_with_devices(tmp_path)
    out = invoke(home, "rules", "add", "curve", "--site", "  san ANTONIO", "--kind",
                 "intensity-duration", "--preset", "caine1980", "--durations", "10m,1h,3h,24h",
                 "--levels", "watch=0.75,warning=1,emergency=1.5",
                 "--antecedent", "k=0.9,saturation_mm=150")
    assert out.exit_code == 0, out.output
    assert "I >= 14.82 D^-0.39 over 600s,3600s,10800s,86400s" in out.output
    out = invoke(home, "rules", "add", "two", "--site", "san antonio", "--kind", "k-of-n",
                 "--channel", "rain", "--window", "1h", "--k", "2", "--stale", "30m",
                 "--levels", "watch=15,warning=30")
    assert out.exit_code == 0, out.output
    listed = {r["name"]: r for r in json.loads(invoke(home, "rules", "list", "--json").output)}
    assert listed["curve"]["params"] == {
        "preset": "caine1980", "durations": [600, 3600, 10800, 86400],
        "antecedent": {"k": 0.9, "saturation_mm": 150.0}}
    assert listed["curve"]["window_s"] == 86400
    assert listed["two"]["params"] == {"k": 2, "stale_s": 1800}
    assert listed["curve"]["site"] == "San Antonio"  # spelled as its devices spell it
    out = invoke(home, "rules", "edit", "curve", "--alpha", "20", "--beta", "0.5",
                 "--antecedent", "off")
    assert out.exit_code == 0 and "I >= 20 D^-0.5" in out.output, out.output


def test_rules_that_point_at_nothing_are_refused_with_the_closest_names(tmp_path):
    home = home_with_devices(tmp_path)
    for args, said in [
        (("--device", "pluvio-alta"), "no device 'pluvio-alta'; did you mean 'pluvio-alto'"),
        (("--site", "San Antonia"), "no device at site 'San Antonia'; did you mean "
                                    "'san antonio'"),
        (("--device", "pluvio-alto", "--channel", "rian"),
         "unknown channel 'rian'; did you mean 'rain'"),
        (("--site", "san antonio", "--kind", "k-of-n", "--window", "1h", "--k", "3"),
         "k 3: site San Antonio has only 2 device(s)"),
    ]:
        args = ("rules", "add", "r", "--levels", "watch=1") + args
        if "--kind" not in args:
            args += ("--kind", "above")
        if "--channel" not in args:
            args += ("--channel", "rain")
        out = invoke(home, *args)
        assert out.exit_code != 0 and said in out.output, out.output
        assert "Traceback" not in out.output
    assert invoke(home, "rules", "list").output == ""
