"""The site config: one JSON file per device, checked field by field at boot.

A volunteer edits this file, so every wrong field gets its own console line
naming the field and what it should be. A config that could brick the board
or lose readings (a sleep the watchdog would not survive, frames larger
than the link carries, deep sleep with a rain gauge whose tips would go
uncounted) is refused: the firmware then prints the problems and stays at
the REPL instead of starting the watchdog, so the file can be fixed.

Example:
{"device_id": "a1b2c3d4", "key": "<64 hex digits>", "board": "pico",
 "sensors": [{"type": "rain_gauge", "name": "rain0"},
             {"type": "pressure_level_i2c", "name": "level0", "interval_s": 30}],
 "report_s": 900,
 "thresholds": [{"sensor": "rain0", "channel": "rain", "above": 2.0, "window_s": 600, "report_s": 60},
                {"sensor": "level0", "channel": "water_level", "rise": 0.3, "window_s": 600, "report_s": 60}],
 "transport": {"type": "uart", "uart": 0, "baud": 9600, "mtu": 255, "ack_timeout_ms": 1500},
 "watchdog": {"timeout_ms": 8000}, "sleep": {"mode": "light"},
 "ring": {"frames": 512}, "battery": {"low_v": 3.4, "steps": [{"below_v": 3.6, "slower": 4}]},
 "power": {"sensors": {"pin": 12, "on": 1, "settle_ms": 120}}}
(a sensor or a UART transport names its group: "power": "sensors"; firmware/README.md)

Pacing: dry weather reports every report_s (900 s, 15 minutes, by default);
a sensor's interval_s defaults to report_s for the rain gauge (its tips are
counted all the time: the interval only says how often their count becomes
a frame) and to 300 s for a level sensor. The board sleeps until the next
due sample or report, a tip, or the watchdog's next feed (firmware/app.py);
sleep.max_ms, when given, caps each sleep as well. A threshold with window_s
judges the rain of the last window_s at every tip (at most RAIN_TIMES tips),
or with "rise" the rise of a level over the window; while one holds, the
board reports every report_s of the threshold.
"""
import json

from protocol import channels

# Worst-case frame bytes (COSE_Mac0 wrapper, payload head with a 32-bit seq
# and time, flags, array heads, quality map head) and per reading (key 2,
# time offset 5, value 5, quality entry 3). A frame is built from one
# sampling round, so one round of every sensor must fit the MTU.
FRAME_OVERHEAD = 56
READING_BYTES = 15
# Readings one sampling round of a sensor type can give.
_READINGS = {"rain_gauge": 2, "accel_adxl345": 4, "accel_mpu6050": 4}
# Time for the loop's own work besides sensors and the network.
LOOP_MARGIN_MS = 1000
MTU_MAX = {"uart": 255, "mqtt": 1024}
RAIN_TIMES = 256  # tip times a rain gauge keeps (firmware/drivers/rain_gauge.py _TIMES)
RISE_KEPT = 32  # readings a rise rule keeps (firmware/app.py _RISE_KEPT)
_LEVEL_TYPES = ("ultrasonic_level", "pressure_level_ma", "pressure_level_i2c")
LEVEL_INTERVAL_S = 300  # a level sensor's dry-weather interval when the entry gives none

_DEFAULTS = {
    "report_s": 900,
    "thresholds": [],
    "watchdog": {"timeout_ms": 8000},
    "sleep": {"mode": "light", "max_ms": 0},
    "ring": {"frames": 512, "seq_block": 64},
    "battery": {"low_v": 0.0},
}
_TRANSPORT_DEFAULTS = {
    "uart": {"uart": None, "baud": 9600, "mtu": 255, "ack_timeout_ms": 1500, "burst": 8,
             "retry_s": 10, "retry_max_s": 60},
    "mqtt": {"ssid": "", "password": "", "host": None, "port": 1883, "mtu": 255,
             "connect_timeout_ms": 2500, "io_timeout_ms": 1000, "ack_timeout_ms": 1500,
             "keepalive_s": 60, "burst": 8, "retry_s": 10, "retry_max_s": 60},
}


class ConfigError(Exception):
    """The config is refused; `errors` holds one readable line per problem."""

    def __init__(self, errors):
        super().__init__("%d problem(s) in the site config" % len(errors))
        self.errors = errors
        self.raw = None


class Site:
    """A checked site config: plain attributes, defaults filled in."""

    def __init__(self, raw):
        self.raw = raw
        self.kid = _unhex(raw["device_id"])
        self.key = _unhex(raw["key"])
        self.board = raw["board"]
        self.sensors = raw["sensors"]
        self.report_s = raw["report_s"]
        self.thresholds = raw["thresholds"]
        self.transport = raw["transport"]
        self.watchdog_ms = raw["watchdog"]["timeout_ms"]
        self.sleep_mode = raw["sleep"]["mode"]
        self.sleep_max_ms = raw["sleep"]["max_ms"]  # 0: no cap but the watchdog's
        self.ring_frames = raw["ring"]["frames"]
        self.seq_block = raw["ring"].get("seq_block", 64)
        self.low_battery_mv = int(raw["battery"].get("low_v", 0.0) * 1000)
        self.power = raw.get("power") or {}
        self.battery_steps = _battery_steps(raw["battery"].get("steps", ()))


def _unhex(text):
    return bytes(int(text[i:i + 2], 16) for i in range(0, len(text), 2))


def _is_hex(text, digits):
    if not isinstance(text, str) or len(text) != digits:
        return False
    for c in text:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _is_ipv4(text):
    parts = text.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part.isdigit() or len(part) > 3 or int(part) > 255:
            return False
    return True


def _is_int(value, lo, hi):
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _is_num(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fill(raw):
    for name, default in _DEFAULTS.items():
        if name not in raw:
            raw[name] = default
        elif isinstance(default, dict) and isinstance(raw[name], dict):
            for key, value in default.items():
                raw[name].setdefault(key, value)
    _fill_intervals(raw)
    transport = raw.get("transport")
    if isinstance(transport, dict) and transport.get("type") in _TRANSPORT_DEFAULTS:
        for key, value in _TRANSPORT_DEFAULTS[transport["type"]].items():
            transport.setdefault(key, value)


def _fill_intervals(raw):
    """Dry-weather sampling where an entry gives no interval_s: the rain gauge's count
    goes out with each report, a level every LEVEL_INTERVAL_S (never later than a report)."""
    report_s = raw["report_s"]
    if not _is_int(report_s, 1, 86400) or not isinstance(raw.get("sensors"), list):
        return
    for entry in raw["sensors"]:
        if isinstance(entry, dict) and "interval_s" not in entry:
            level = entry.get("type") in _LEVEL_TYPES
            entry["interval_s"] = min(report_s, LEVEL_INTERVAL_S) if level else report_s


def transport_budget_ms(t):
    """The longest one loop's network work can take: sends plus the ack wait (plus connect)."""
    if t["type"] == "mqtt":
        return t["connect_timeout_ms"] + t["io_timeout_ms"] * (t["burst"] + 2) + t["ack_timeout_ms"]
    return t["ack_timeout_ms"] + 100 * t["burst"]


def check(raw, board_loader=None, sensor_check=True):
    """The problems with a parsed config, one line each; [] when it is safe to run.

    sensor_check=False leaves each sensor entry's own fields to the caller
    (firmware/boot.py runs firmware.sensors.validate once this module is
    unloaded, so the two are never on the heap together)."""
    if not isinstance(raw, dict):
        return ["config: the file must hold one JSON object"]
    _fill(raw)
    errors = []
    add = errors.append
    if not _is_hex(raw.get("device_id"), 8):
        add("device_id: must be 8 hex digits (the 4-byte kid from provisioning), got %r" % (raw.get("device_id"),))
    if not _is_hex(raw.get("key"), 64):
        add("key: must be 64 hex digits (the 32-byte device key from provisioning)")
    board = None
    if board_loader is None:
        from boards import load as board_loader
    try:
        board = board_loader(raw.get("board"))
    except (ValueError, ImportError) as exc:
        add("board: %s" % exc)
    if not _is_int(raw["report_s"], 1, 86400):
        add("report_s: must be whole seconds 1..86400, got %r" % (raw["report_s"],))
    sensors = raw.get("sensors")
    names = []
    readings = 1  # the uptime/battery status reading a frame may carry
    if not isinstance(sensors, list) or not sensors:
        add("sensors: must be a non-empty list of sensor entries")
        sensors = []
    rain = False
    for at, entry in enumerate(sensors):
        if not isinstance(entry, dict):
            add("sensors[%d]: must be an object" % at)
            continue
        if entry.get("name") in names:
            add("sensors[%d].name: %r is used twice" % (at, entry.get("name")))
        names.append(entry.get("name"))
        readings += _READINGS.get(entry.get("type"), 2)
        rain = rain or entry.get("type") == "rain_gauge"
        if board is not None and sensor_check:
            from firmware import sensors as factory  # the drivers' own checks
            for line in factory.validate(board, entry):
                add("sensors[%d]: %s" % (at, line))
    _check_thresholds(raw["thresholds"], sensors, add)
    _check_transport(raw.get("transport"), board, readings, add)
    from firmware.read_times import read_ms
    sensors_ms = _check_power_groups(raw, board, add)
    for entry in sensors:
        if isinstance(entry, dict):
            sensors_ms += read_ms(entry)
    _check_power(raw, board, rain, sensors_ms, add)
    ring = raw["ring"]
    if not _is_int(ring.get("frames"), 8, 65535):
        add("ring.frames: must be 8..65535 frames, got %r" % (ring.get("frames"),))
    elif board is not None and isinstance(raw.get("transport"), dict) and _is_int(raw["transport"].get("mtu"), 1, 4096):
        need = ring["frames"] * (raw["transport"]["mtu"] + 16)
        if need > board.FS_SIZE // 2:
            add("ring.frames: %d frames of up to %d bytes need %d bytes, more than half of %s's %d-byte filesystem"
                % (ring["frames"], raw["transport"]["mtu"], need, board.NAME, board.FS_SIZE))
    if not _is_int(ring.get("seq_block"), 1, 4096):
        add("ring.seq_block: must be 1..4096")
    if not _is_num(raw["battery"].get("low_v")) or not 0 <= raw["battery"]["low_v"] <= 20:
        add("battery.low_v: must be volts 0..20 (0: never skip the radio)")
    _check_battery_steps(raw["battery"].get("steps", []), add)
    return errors


def _check_power_groups(raw, board, add):
    """The `power` section and the groups sensors and the transport name; the settle time a
    loop may spend powering them up (each group switched on once per loop at most)."""
    groups = raw.get("power", {})
    if not isinstance(groups, dict):
        add("power: must be an object of group name -> {\"pin\": gpio, \"on\": 1, \"settle_ms\": ms}")
        return 0
    pins = []
    for name, spec in groups.items():
        where = "power.%s" % name
        if not isinstance(spec, dict):
            add("%s: must be {\"pin\": gpio, \"on\": 1, \"settle_ms\": ms}" % where)
            continue
        for key in spec:
            if key not in ("pin", "on", "settle_ms"):
                add("%s.%s: unknown key (a group has pin, on, settle_ms)" % (where, key))
        pin = spec.get("pin")
        if not _is_int(pin, 0, 63):
            add("%s.pin: must be a GPIO number, got %r" % (where, pin))
        elif pin in pins:
            add("%s.pin: GPIO %d switches another group too" % (where, pin))
        elif board is not None and pin in _board_pins(board):
            add("%s.pin: GPIO %d is one of %s's sensor or bus pins" % (where, pin, board.NAME))
        pins.append(pin)
        if spec.get("on", 1) not in (0, 1) or isinstance(spec.get("on", 1), bool):
            add("%s.on: the level that powers the group, 0 or 1" % where)
        if not _is_int(spec.get("settle_ms", 0), 0, 5000):
            add("%s.settle_ms: the parts' start-up time after power-up, whole ms 0..5000" % where)
    used = []
    sensors = raw.get("sensors") if isinstance(raw.get("sensors"), list) else []
    for at, entry in enumerate(sensors):
        if isinstance(entry, dict) and "power" in entry:
            _group_named(groups, entry["power"], "sensors[%d].power" % at, used, add)
    t = raw.get("transport")
    if isinstance(t, dict) and "power" in t:
        if t.get("type") == "mqtt":
            add("transport.power: a Wi-Fi radio has no power group (it is on while the WLAN is active)")
        else:
            _group_named(groups, t["power"], "transport.power", used, add)
    settle = 0
    for name in used:
        if isinstance(groups[name], dict) and _is_int(groups[name].get("settle_ms", 0), 0, 5000):
            settle += groups[name].get("settle_ms", 0)
    return settle


def _group_named(groups, name, where, used, add):
    if name not in groups:
        add("%s: %r is not a group of the power section (%s)" % (where, name, ", ".join(sorted(groups)) or "none"))
    elif name not in used:
        used.append(name)


def _board_pins(board):
    """The GPIOs the board file gives its roles and buses (a power pin must not be one)."""
    out = []
    for role, value in board.PINS.items():
        if role not in ("i2c0", "uart"):
            out.append(value)
    for table in (getattr(board, "I2C", {}), getattr(board, "UART", {})):
        for pair in table.values():
            out.extend(pair)
    return out


def _check_battery_steps(steps, add):
    if not isinstance(steps, list):
        add("battery.steps: must be a list of {\"below_v\": volts, \"slower\": n}")
        return
    for at, step in enumerate(steps):
        where = "battery.steps[%d]" % at
        if not isinstance(step, dict):
            add("%s: must be an object" % where)
            continue
        for key in step:
            if key not in ("below_v", "slower"):
                add("%s.%s: unknown key (a step has below_v and slower)" % (where, key))
        if not _is_num(step.get("below_v")) or not 0 < step["below_v"] <= 20:
            add("%s.below_v: the battery volts under which this step applies, 0..20" % where)
        if not _is_int(step.get("slower", 1), 1, 16):
            add("%s.slower: how many times longer the intervals and the radio's retries get, whole 1..16" % where)


def _battery_steps(steps):
    """(below_mv, slower) per step, the deepest (lowest below_v) first."""
    out = [(int(s["below_v"] * 1000), s.get("slower", 1)) for s in steps]
    out.sort()
    return out


def _check_thresholds(thresholds, sensors, add):
    if not isinstance(thresholds, list):
        add("thresholds: must be a list")
        return
    by_name = {}
    for entry in sensors:
        if isinstance(entry, dict):
            by_name[entry.get("name")] = entry
    for at, rule in enumerate(thresholds):
        where = "thresholds[%d]" % at
        if not isinstance(rule, dict):
            add("%s: must be an object" % where)
            continue
        sensor = by_name.get(rule.get("sensor"))
        if sensor is None:
            add("%s.sensor: %r is not a configured sensor name" % (where, rule.get("sensor")))
        if rule.get("channel") not in channels.BY_NAME:
            add("%s.channel: unknown channel %r" % (where, rule.get("channel")))
        if "rise" in rule:
            if not _is_num(rule["rise"]) or rule["rise"] <= 0:
                add("%s.rise: must be a positive number (how much the reading may rise in window_s)" % where)
        elif not _is_num(rule.get("above")) and not _is_num(rule.get("below")):
            add("%s: needs a number under \"above\", \"below\" or \"rise\" (in the channel's unit)" % where)
        if "clear" in rule and not _is_num(rule["clear"]):
            add("%s.clear: must be a number" % where)
        if not _is_int(rule.get("report_s"), 1, 86400):
            add("%s.report_s: how often to report while it holds, whole seconds 1..86400" % where)
        if "window_s" in rule or "rise" in rule:
            _check_window(rule, sensor, where, add)


def _check_window(rule, sensor, where, add):
    """A rolling rule's window: a rain rule on a rain gauge whose kept tip times cover its
    threshold; a rise rule whose kept readings cover its window."""
    window = rule.get("window_s")
    if not _is_int(window, 1, 86400):
        add("%s.window_s: the rolling window, whole seconds 1..86400" % where)
        return
    if sensor is None:
        return
    if "rise" in rule:
        interval = sensor.get("interval_s")
        if _is_int(interval, 1, 86400) and window // interval + 1 > RISE_KEPT:
            add("%s.window_s: %d s holds %d readings of %s (every %d s); a rise rule keeps %d"
                % (where, window, window // interval + 1, sensor.get("name"), interval, RISE_KEPT))
        return
    if sensor.get("type") != "rain_gauge" or rule.get("channel") not in ("rain", "rain_tips"):
        add("%s.window_s: a rolling window is for a rain gauge's rain or rain_tips (a level takes \"rise\")"
            % where)
        return
    mm = sensor.get("mm_per_tip", 0.2)
    edge = rule.get("above")
    if _is_num(edge) and _is_num(mm) and mm > 0:
        tips = edge if rule["channel"] == "rain_tips" else edge / mm
        if tips > RAIN_TIMES:
            add("%s.above: %g is %d tips in window_s; the gauge keeps the times of %d"
                % (where, edge, int(tips + 0.999), RAIN_TIMES))


def _check_transport(t, board, readings, add):
    if not isinstance(t, dict) or t.get("type") not in _TRANSPORT_DEFAULTS:
        add("transport.type: must be \"uart\" or \"mqtt\"")
        return
    kind = t["type"]
    if board is not None and kind not in board.TRANSPORTS:
        add("transport.type: board %s has no %s (it has: %s)" % (board.NAME, kind, ", ".join(board.TRANSPORTS)))
    largest = FRAME_OVERHEAD + READING_BYTES * readings
    mtu = t.get("mtu")
    if not _is_int(mtu, 1, MTU_MAX[kind]):
        add("transport.mtu: must be bytes up to %d, got %r" % (MTU_MAX[kind], mtu))
    elif mtu < largest:
        add("transport.mtu: %d bytes is smaller than the largest frame these sensors make (%d bytes)" % (mtu, largest))
    for key in ("ack_timeout_ms", "connect_timeout_ms", "io_timeout_ms"):
        if key in t and not _is_int(t[key], 50, 60000):
            add("transport.%s: must be 50..60000 ms" % key)
    if not _is_int(t.get("burst"), 1, 64):
        add("transport.burst: frames sent per loop, 1..64")
    if not _is_int(t.get("retry_s"), 1, 3600) or not _is_int(t.get("retry_max_s"), 1, 86400):
        add("transport.retry_s / retry_max_s: whole seconds")
    if kind == "uart":
        if board is not None and t.get("uart") is None:
            t["uart"] = board.PINS.get("uart")
        if board is not None and t.get("uart") not in board.UART:
            add("transport.uart: board %s has UARTs %s, not %r" % (board.NAME, sorted(board.UART), t.get("uart")))
        if not _is_int(t.get("baud"), 1200, 3000000):
            add("transport.baud: must be 1200..3000000")
        elif "radio" in t:
            from firmware.lora import check  # a LoRa module's settings: only for sites that have one
            check(t, largest, add)
    else:
        if not isinstance(t.get("host"), str) or not t["host"]:
            add("transport.host: the MQTT broker's address is required")
        elif not _is_ipv4(t["host"]):
            # A name would need DNS on the board, whose lookup blocks with no timeout
            # (lwIP: up to 7 s per server) and outlasts the watchdog when the upstream is down.
            add("transport.host: give the broker's IPv4 address (e.g. 192.168.1.20), not the name %r: "
                "a DNS lookup on the board can outlast the watchdog" % t["host"])
        if not _is_int(t.get("port"), 1, 65535):
            add("transport.port: must be 1..65535")
        if not isinstance(t.get("ssid"), str) or not isinstance(t.get("password"), str):
            add("transport.ssid / password: must be strings")
        if not _is_int(t.get("keepalive_s"), 10, 3600):
            add("transport.keepalive_s: must be 10..3600")


def _check_power(raw, board, rain, sensors_ms, add):
    wdt = raw["watchdog"].get("timeout_ms")
    sleep = raw["sleep"]
    mode = sleep.get("mode")
    if board is not None:
        if not _is_int(wdt, 1000, board.WDT_MAX_MS):
            add("watchdog.timeout_ms: must be 1000..%d on %s, got %r" % (board.WDT_MAX_MS, board.NAME, wdt))
            return
        if mode not in board.SLEEP_MODES:
            add("sleep.mode: %s can do %s, not %r" % (board.NAME, ", ".join(board.SLEEP_MODES), mode))
    if mode == "deep" and rain:
        add("sleep.mode: deep sleep stops the tip counter IRQ and would lose rain; use \"light\"")
    max_ms = sleep.get("max_ms")
    if not (max_ms == 0 or _is_int(max_ms, 10, 3600000)):
        add("sleep.max_ms: a cap on each sleep, 10..3600000 ms (0 or left out: none but the watchdog's)")
        return
    t = raw.get("transport")
    if not _is_int(wdt, 1, 10000000) or not isinstance(t, dict) or t.get("type") not in _TRANSPORT_DEFAULTS:
        return
    try:
        net = transport_budget_ms(t)
    except (KeyError, TypeError):
        return
    # The loop sleeps what is left of the watchdog period less LOOP_MARGIN_MS (firmware/app.py),
    # so between two feeds there is at most one awake part: joining, sending, waiting for acks,
    # reading the sensors, and the margin. That must fit the watchdog. (A deep sleep is a reset:
    # the watchdog starts over at the wake, but the awake part must fit all the same.)
    loop = net + sensors_ms + LOOP_MARGIN_MS
    if loop > wdt:
        add("watchdog.timeout_ms: a loop's awake part may take %d ms (network %d + sensors %d + margin %d) "
            "but the watchdog resets after %d ms; shorten the timeouts or read fewer samples"
            % (loop, net, sensors_ms, LOOP_MARGIN_MS, wdt))


def load(path, board_loader=None, sensor_check=True):
    """The Site from a JSON file; ConfigError with every problem otherwise (and the
    parsed config as its `raw`, None when the file did not parse)."""
    try:
        f = open(path)
    except OSError:
        raise ConfigError(["config: cannot open %s" % path])
    try:
        try:
            raw = json.load(f)
        except ValueError as exc:
            raise ConfigError(["config: %s is not valid JSON (%s)" % (path, exc)])
    finally:
        f.close()
    errors = check(raw, board_loader, sensor_check)
    if errors:
        refused = ConfigError(errors)
        refused.raw = raw
        raise refused
    return Site(raw)
