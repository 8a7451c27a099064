"""The operator's commands against the hub's PostgreSQL: the same frames,
forwarded by a real `huaico run` gateway and stored by a real `huaico hub
run` worker, give the same `readings`, `plot`, `device` and `status` output
with `--hub DSN` (or `[hub] dsn`) as against the gateway's own SQLite."""
import json
import re
import time

import pytest
from click.testing import CliRunner

from huaico.cli.main import main
from huaico.hub import reader as hub_reader
from huaico.ops import status as status_mod
from huaico.protocol import channels
from huaico.protocol.frame import FLAG_CLOCK_UNSYNCED
from huaico.store import db
from tests.fixtures.city import READINGS, City, UdpBoards

WAIT = 90.0  # upper bound on a loaded machine, not a measurement
_LEVEL_HI = channels.get("water_level").hi


def _readings(step):
    return [(1, 0, 0, step % 4, 0), (4, 0, -5, 1500 + 37 * step, 0),
            (5, 0, 0, 1850 - step, 0), (19, 0, 0, 3900 - 10 * step, 0)]


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """(gateway home, hub dsn) once both hold the same frames: two boards,
    twelve frames each over the last hour, one value out of range, one frame
    from a board whose clock is not set. The gateway is stopped at the end so
    that neither side changes while the commands read."""
    directory = tmp_path_factory.mktemp("city")
    city = City(directory)
    try:
        yield _fill(city, directory)
    finally:
        city.stop()


def _fill(city, directory):
    city.start_postgres()
    city.start_central()
    boards = city.add_devices(["rain-01", "river-02"])
    gateway = city.add_gateway("gw-a", city.central, ["rain-01", "river-02"])
    city.add_worker("hub-1")
    feeder = UdpBoards({name: (board, [gateway]) for name, board in boards.items()})
    start = time.time() - 3600
    for step in range(12):
        feeder.send_new(time_s=start + 300 * step, readings=_readings(step))
        feeder.take_acks(0.02)
    feeder.send_new(readings=[(4, 0, 0, _LEVEL_HI + 1, 0)])
    feeder.send_new(time_s=1000, readings=READINGS, flags=FLAG_CLOCK_UNSYNCED)
    assert feeder.settle(WAIT), city.logs()
    stored = city.wait_at_hub(feeder.acked, WAIT)
    assert sorted(stored) == sorted(feeder.acked), city.logs()
    gateway.stop()
    return gateway.home.path, city.postgres.dsn, directory / "elsewhere"


def _run(home, *args):
    result = CliRunner().invoke(main, list(args), env={"HUAICO_HOME": str(home)},
                                                catch_exceptions=False)
    return result


def _both(history, *args):
    """(gateway's output, hub's output) of one command; both must succeed."""
    home, dsn, elsewhere = history
    edge = _run(home, *args)
    hub = _run(elsewhere, *args, "--hub", dsn)
    assert edge.exit_code == 0, edge.stdout + edge.stderr
    assert hub.exit_code == 0, hub.stdout + hub.stderr
    return edge, hub


@pytest.mark.parametrize("args", [
    ("readings", "--limit", "0"),
    ("readings", "--limit", "0", "--format", "csv"),
    ("readings", "--limit", "0", "--format", "json"),
    ("readings", "--device", "rain-01", "--format", "senml"),
    ("readings", "--device", "river-02", "--channel", "water_level", "--since", "40m"),
    ("readings", "--limit", "5"),
], ids=["table", "csv", "json", "senml", "filtered", "cut"])
def test_readings_are_the_same_at_the_hub(history, args):
    edge, hub = _both(history, *args)
    assert edge.stdout == hub.stdout
    assert edge.stderr == hub.stderr
    if "json" in args:
        shown = json.loads(hub.stdout)
        assert len(shown) == 2 * 14 * 4 - 3 * 2  # 12 + 1 + 1 frames; the out-of-range one has 1
        assert {item["quality"] for item in shown} == {"ok", "out_of_range"}
        assert sum(item["unsynced"] for item in shown) == 2 * 4
    if "cut" in args or "5" in args:
        assert "showing the newest 5 readings" in hub.stderr


def _ages_aside(text):
    """The text with "5s ago" ages as "_ ago": they count from the moment of
    each command (last_seen itself is compared exactly in --json)."""
    return re.sub(r"\b\d+[smhd] ago\b", "_ ago", text)


def test_plot_and_devices_are_the_same_at_the_hub(history):
    edge, hub = _both(history, "plot", "rain-01", "water_level", "--width", "80",
                      "--height", "20")
    assert edge.stdout == hub.stdout
    edge, hub = _both(history, "device", "list")
    assert _ages_aside(edge.stdout) == _ages_aside(hub.stdout)
    assert "river-02" in hub.stdout and "3.90 V" in hub.stdout
    edge, hub = _both(history, "device", "list", "--json")
    edge_rows, hub_rows = json.loads(edge.stdout), json.loads(hub.stdout)
    # The gateway adds its replay state (epochs) and sets its own creation time.
    for edge_row, hub_row in zip(edge_rows, hub_rows, strict=True):
        for key in set(hub_row) - {"created"}:
            assert json.dumps(edge_row[key]) == json.dumps(hub_row[key]), key  # 0 is not false
    edge, hub = _both(history, "device", "show", "river-02")
    hub_lines = [line for line in _ages_aside(hub.stdout).splitlines()
                 if not line.startswith(("created", "site file"))]
    assert set(hub_lines) <= set(_ages_aside(edge.stdout).splitlines())
    assert any(line.startswith("last seq") and line.endswith(" 14") for line in hub_lines)


def test_status_is_the_same_at_the_hub(history):
    home, dsn, _ = history
    edge, hub = _both(history, "status", "--json")
    edge_status, hub_status = json.loads(edge.stdout), json.loads(hub.stdout)
    # The gateway's own clock is a gateway's alone; ages depend on the moment.
    for status in (edge_status, hub_status):
        for key in ("time", "clock"):
            status.pop(key)
        for device in status["devices"]:
            device.pop("age_s")
    assert edge_status == hub_status
    assert [len(d["values"]) for d in hub_status["devices"]] == [4, 4]
    # The text at one moment: the same lines, the gateway's clock line aside.
    now = time.time()
    edge_db = db.open_db(home / "huaico.db")
    hub_db = hub_reader.open_hub(dsn)
    try:
        edge_lines = status_mod.render(status_mod.collect(edge_db, 900, now=now))
        hub_lines = status_mod.render(status_mod.collect(hub_db, 900, now=now))
    finally:
        hub_db.close()
    assert [line for line in edge_lines if line and not line.startswith("Gateway clock")] == [
        line for line in hub_lines if line]
    assert any(line.startswith("  rain-01") and "water_level" in line for line in hub_lines)


def test_the_hub_named_in_the_config(history):
    home, dsn, elsewhere = history
    elsewhere.mkdir(exist_ok=True)
    (elsewhere / "huaico.toml").write_text('[hub]\ndsn = "%s"\n' % dsn)
    edge = _run(home, "readings", "--limit", "0", "--format", "csv")
    hub = _run(elsewhere, "readings", "--limit", "0", "--format", "csv")
    assert hub.exit_code == 0, hub.stderr
    assert edge.stdout == hub.stdout


def test_what_the_hub_cannot_answer(history):
    _, dsn, elsewhere = history
    result = _run(elsewhere, "readings", "--hourly", "--hub", dsn)
    assert result.exit_code == 1
    assert "no hourly aggregates here" in result.stderr
    result = _run(elsewhere, "status", "--hub", "host=127.0.0.1 port=1 dbname=huaico user=x")
    assert result.exit_code == 1
    assert "cannot connect to the hub's PostgreSQL" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
