"""`huaico doctor`: checks the gateway's surroundings and says what to fix.

Each check returns Check(name, level, detail, fix) with level OK, WARN, FAIL
or SKIP (not configured). Every check is bounded by a short timeout so that
a dead modem or a black-holed broker cannot hang an operator's SSH session.

Checks that touch shared hardware are careful with a running gateway:
the modem is not probed while another process has its port open (two
readers of one serial port steal each other's bytes), and the broker check
connects with its own client id, never the gateway's (the broker would
disconnect the gateway to let the newcomer in).
"""
import datetime
import errno
import os
import pathlib
import shutil
import socket
import sqlite3
import time

import serial

from huaico import clock as clock_mod
from huaico import config as config_mod
from huaico.store import db

OK, WARN, FAIL, SKIP = "OK", "WARN", "FAIL", "SKIP"
TIMEOUT_S = 3.0
# Free disk thresholds: below FAIL_FREE the gateway may stop storing soon.
FAIL_FREE = 200 * 1024 * 1024
WARN_FREE = 1024 * 1024 * 1024
WEAK_DBM = -100


class Check:
    """One line of the report."""

    def __init__(self, name, level, detail, fix=""):
        self.name = name
        self.level = level
        self.detail = detail
        self.fix = fix

    def as_dict(self):
        return {"check": self.name, "level": self.level, "detail": self.detail, "fix": self.fix}

    def line(self):
        text = "%-4s %-14s %s" % (self.level, self.name, self.detail)
        return text + (" -> " + self.fix if self.fix else "")


def _holders(path):
    """(pid, command) of other processes that have `path` open, from /proc."""
    try:
        target = os.path.realpath(path)
    except OSError:
        return []
    found = []
    mine = os.getpid()
    for entry in pathlib.Path("/proc").glob("[0-9]*"):
        pid = int(entry.name)
        if pid == mine:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == target:
                    cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        errors="replace").strip()
                    found.append((pid, cmd or entry.name))
                    break
            except OSError:
                continue
    return found


def _is_device_path(url):
    return "://" not in url


def check_serial_port(name, url):
    """Exists, can be opened, and no other program holds it."""
    if not _is_device_path(url):
        return Check(name, SKIP, "%s is a pyserial URL; not checked" % url)
    if not os.path.exists(url):
        return Check(name, FAIL, "%s does not exist" % url,
                     "plug the board/modem in, check `ls /dev/serial/by-id/`, "
                     "then fix the path in huaico.toml")
    # Who has it open is asked first: opening a port in use would toggle its
    # DTR/RTS lines under the program using it (which can reset a board).
    others = _holders(url)
    if others:
        pid, cmd = others[0]
        if "huaico" in cmd and " run" in cmd:
            return Check(name, OK, "%s in use by the gateway (pid %d)" % (url, pid))
        return Check(name, WARN, "%s is also open in pid %d (%s)" % (url, pid, cmd[:60]),
                     "two programs reading one port lose bytes; stop it "
                     "(ModemManager often grabs ttyACM/ttyUSB: "
                     "`sudo systemctl disable --now ModemManager`)")
    try:
        # exclusive=True takes an flock: it fails when another program
        # holds one (a running pyserial user with exclusive access).
        port = serial.Serial(url, exclusive=True, timeout=0)
    except serial.SerialException as exc:
        code = getattr(exc, "errno", None)
        if code in (errno.EBUSY, errno.EAGAIN) or "busy" in str(exc).lower() \
                or "lock" in str(exc).lower():
            return Check(name, FAIL, "%s is busy: another program holds it" % url,
                         "find it with `fuser -v %s` and stop it" % url)
        if code == errno.EACCES or "ermission" in str(exc):
            return Check(name, FAIL, "%s: permission denied" % url,
                         "add the gateway's user to the dialout group: "
                         "`sudo usermod -aG dialout $USER`, then log in again")
        return Check(name, FAIL, "%s cannot be opened: %s" % (url, exc),
                     "check the cable and the path in huaico.toml")
    port.close()
    return Check(name, OK, "%s opens and is free" % url)


def check_modem(config):
    sms = config["sms"]
    backend = sms["backend"]
    if backend == "none":
        return [Check("sms", WARN, "no SMS backend: alerts reach nobody without MQTT",
                      "set [sms] backend = \"modem\" or \"spool\" in huaico.toml")]
    if backend == "spool":
        spool = config.path(sms["spool_dir"]) if sms["spool_dir"] else None
        if spool is None or not spool.is_dir():
            return [Check("sms", FAIL, "spool directory %s does not exist" % (spool or "(empty)"),
                          "set [sms] spool_dir to gammu-smsd's outbox directory")]
        if not os.access(spool, os.W_OK):
            return [Check("sms", FAIL, "cannot write the spool %s" % spool,
                          "give the gateway's user write access to it")]
        return [Check("sms", OK, "gammu-smsd spool %s is writable" % spool)]
    if backend != "modem":
        return [Check("sms", FAIL, "unknown [sms] backend %r" % backend,
                      "use \"none\", \"modem\" or \"spool\"")]
    url = sms["port"]
    if not url:
        return [Check("modem", FAIL, "[sms] backend is modem but port is empty",
                      "set [sms] port, e.g. \"/dev/ttyUSB2\"")]
    port_check = check_serial_port("modem port", url)
    if port_check.level == FAIL:
        return [port_check]
    if _is_device_path(url) and _holders(url):
        return [port_check, Check("modem", SKIP, "not probed: its port is in use",
                                  "stop the other program to probe the modem")]
    return [port_check] + probe_modem(url, sms["baudrate"])


def probe_modem(url, baudrate, timeout=TIMEOUT_S):
    from huaico.sms.modem import Modem
    try:
        modem = Modem(url, baudrate=baudrate, command_timeout=timeout)
    except serial.SerialException as exc:
        return [Check("modem", FAIL, "cannot open %s: %s" % (url, exc),
                      "check the cable and [sms] port")]
    try:
        info = modem.probe()
    finally:
        modem.close()
    if not info["ok"]:
        return [Check("modem", FAIL, "no answer from a modem on %s (%s)" % (url, info["error"]),
                      "check its power supply (a SIM800 needs 2 A peaks), the cable, "
                      "[sms] port and baudrate")]
    checks = [Check("modem", OK, "answers on %s" % url)]
    if not info["sim_ready"]:
        checks.append(Check("SIM", FAIL, "SIM %s" % (info["sim"] or info["error"] or "unknown"),
                            "insert an active SIM without a PIN (or remove its PIN in a phone)"))
        return checks
    checks.append(Check("SIM", OK, "ready"))
    if not info["registered"]:
        checks.append(Check("network", FAIL, "not registered (%s)" % info["registration"],
                            "check the antenna, coverage and that the SIM is active with credit"))
    else:
        checks.append(Check("network", OK, "registered%s on %s" % (
            " (roaming)" if info["roaming"] else "", info["operator"] or "unknown operator")))
    dbm = info["dbm"]
    if dbm is None:
        checks.append(Check("signal", WARN, "unknown (CSQ %s)" % info["rssi"],
                            "check the antenna"))
    elif dbm < WEAK_DBM:
        checks.append(Check("signal", WARN, "%d dBm is weak" % dbm,
                            "move or raise the antenna; below -100 dBm SMS may fail"))
    else:
        checks.append(Check("signal", OK, "%d dBm" % dbm))
    return checks


def check_broker(config, timeout=TIMEOUT_S):
    mqtt = config["mqtt"]
    if not mqtt["enabled"]:
        return Check("broker", SKIP, "MQTT is off (mqtt.enabled = false)")
    where = "%s:%s" % (mqtt["host"], mqtt["port"])
    try:
        socket.create_connection((mqtt["host"], mqtt["port"]), timeout=timeout).close()
    except OSError as exc:
        return Check("broker", FAIL, "cannot reach %s: %s" % (where, exc.strerror or exc),
                     "start the broker (`sudo systemctl start mosquitto`) or fix [mqtt] host/port")
    from huaico.mqtt.link import MqttLink
    tls = config.mqtt_tls()
    link = MqttLink(mqtt["host"], mqtt["port"], "%s-doctor-%d" % (mqtt["client_id"], os.getpid()),
                    username=mqtt["username"] or None, password=mqtt["password"] or None,
                    tls=tls, protocol=mqtt["protocol"], clean=True)
    link.start()
    try:
        if link.wait_connected(timeout):
            return Check("broker", OK, "%s accepts MQTT %s" % (where, link.protocol))
        reason = "no CONNACK within %.0f s" % timeout
        while not link.events.empty():
            event = link.events.get_nowait()
            if event[0] == "disconnected":
                reason = "refused: %s" % event[1]
        return Check("broker", FAIL, "%s: TCP works but MQTT CONNECT failed (%s)" % (where, reason),
                     "check [mqtt] username/password/tls_ca/protocol and the broker's log")
    finally:
        link.stop()


def check_database(config, quick=False):
    path = config.database_path
    if not path.exists():
        return [Check("database", FAIL, "no database at %s" % path, "run `huaico init`")]
    checks = []
    try:
        conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=TIMEOUT_S)
        try:
            pragma = "quick_check" if quick else "integrity_check"
            result = [row[0] for row in conn.execute("PRAGMA %s" % pragma)]
            journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        return [Check("database", FAIL, "%s cannot be read: %s" % (path, exc),
                      "restore it from a backup; keep the broken file for inspection")]
    if result != ["ok"]:
        checks.append(Check("database", FAIL, "%s: %s" % (pragma, "; ".join(result[:3])),
                            "stop the gateway, `sqlite3 %s .recover`, restore from backup" % path))
    else:
        checks.append(Check("database", OK, "%s passes %s" % (path, pragma)))
    if journal.lower() != "wal":
        checks.append(Check("journal", WARN, "journal_mode is %s, not wal" % journal,
                            "run `huaico run` once: it opens the database in WAL mode"))
    else:
        checks.append(Check("journal", OK, "WAL"))
    try:
        # Opened the gateway's way, to see the settings its connections get.
        database = db.open_db(path)
        try:
            synchronous = database.execute("PRAGMA synchronous").fetchone()[0]
            pending = [name for name, _ in db.all_migrations()
                       if name not in db.applied(database)]
        finally:
            database.conn.close()
    except sqlite3.DatabaseError as exc:
        checks.append(Check("synchronous", WARN, "cannot open it as the gateway does: %s" % exc,
                            "is another program holding a long write lock?"))
        return checks
    if synchronous != 2:
        checks.append(Check("synchronous", FAIL,
                            "gateway connections use synchronous=%d" % synchronous,
                            "acks need FULL (2): a power cut could lose acked frames"))
    else:
        checks.append(Check("synchronous", OK, "FULL: an acked frame survives a power cut"))
    if pending:
        checks.append(Check("migrations", WARN, "not applied: %s" % ", ".join(pending),
                            "run `huaico init` (it only applies what is missing)"))
    return checks


def check_gateway(config):
    """Whether a `huaico run` holds this data directory (huaico.service.datalock)."""
    from huaico.service import datalock

    pid = datalock.holder(config.home)
    if pid is None:
        return Check("gateway", WARN, "no gateway is running on %s" % config.home,
                     "start it: `huaico run`, or `sudo systemctl start huaico`")
    return Check("gateway", OK, "running on %s (pid %s)" % (config.home, pid or "unknown"))


def check_disk(config):
    where = config.database_path.parent if config.database_path.parent.exists() else config.home
    while not where.exists():
        where = where.parent
    usage = shutil.disk_usage(where)
    text = "%s free of %s where the database lives (%s)" % (
        human_bytes(usage.free), human_bytes(usage.total), where)
    if usage.free < FAIL_FREE:
        return Check("disk", FAIL, text,
                     "free space now: SQLite stops storing when the disk is full")
    if usage.free < WARN_FREE:
        return Check("disk", WARN, text, "free space or move the data directory to a bigger disk "
                                         "(`huaico storage estimate` says how long it lasts)")
    return Check("disk", OK, text)


def check_clock(now=None, system=None, database=None):
    """The system clock against huaico.clock's rules: plausible (after
    clock.FLOOR, not behind stored data), synchronised by the kernel's
    account, and what the running gateway last decided (gateway_state)."""
    now = time.time() if now is None else now
    watch = clock_mod.GatewayClock(system=system, wall=lambda: now)
    saved = None
    if database is not None:
        watch.note_data(clock_mod.newest_stored(database))
        saved = clock_mod.saved_state(database)
    checks = []
    shown = time.strftime("%Y-%m-%d %H:%M:%S %z", time.localtime(now))
    bad = watch.implausible(now)
    if bad is not None:
        checks.append(Check("clock", FAIL, "the clock says %s: %s" % (shown, bad),
                            "boards take their time from the gateway: set it "
                            "(`sudo timedatectl set-ntp true`, or `sudo date -s ...`); until "
                            "then the gateway acks without a time"))
    else:
        checks.append(Check("clock", OK, shown))
    synced, why = watch.system.state()
    if synced:
        checks.append(Check("ntp", OK, why))
    else:
        checks.append(Check("ntp", WARN, why, "`sudo timedatectl set-ntp true`; without NTP the "
                            "gateway takes the GSM network's time ([sms] backend = \"modem\"), "
                            "or set [clock] trust = \"system\" on a gateway with an RTC"))
    if saved is None:
        checks.append(Check("gateway clock", SKIP, "no gateway has run on this database yet"))
    elif saved[0]:
        checks.append(Check("gateway clock", OK, "trusted (%s: %s), as of %s" % (
            saved[1], saved[2], time.strftime("%Y-%m-%d %H:%M", time.localtime(saved[3])))))
    else:
        checks.append(Check("gateway clock", WARN, "NOT trusted: %s (as of %s); acks carry no "
                            "time" % (saved[2], time.strftime("%Y-%m-%d %H:%M",
                                                               time.localtime(saved[3]))),
                            "give the gateway NTP or a modem with network time"))
    return checks


def check_modes(config):
    """The data directory, huaico.toml (broker password) and huaico.db
    (device keys) readable by their owner only."""
    checks = []
    for path, kind, mode in ((config.home, "directory", 0o700),
                             (config.home / config_mod.CONFIG_NAME, "file", 0o600),
                             (config.database_path, "file", 0o600)):
        if not path.exists():
            continue
        have = path.stat().st_mode & 0o777
        if have & 0o077:
            checks.append(Check("permissions", FAIL, "%s is open to others (mode %o): it holds "
                                "secrets" % (path, have), "chmod %o %s" % (mode, path)))
        else:
            checks.append(Check("permissions", OK, "%s mode %o" % (path, have)))
    return checks


def human_bytes(n):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return ("%d %s" if unit == "B" else "%.1f %s") % (n, unit)
        n /= 1024.0


def _guarded(name, function, *args, **kwargs):
    """A check's result, or a FAIL naming the error: the doctor never crashes."""
    try:
        result = function(*args, **kwargs)
    except Exception as exc:  # an unforeseen fault is itself a finding
        return [Check(name, FAIL, "check failed: %r" % exc, "report this with the line above")]
    return result if isinstance(result, list) else [result]


def check_sms_delivery(config, now=None):
    """What the running gateway saw of SMS delivery (its health row): the
    modem's port is held by `huaico run`, so this is the only view of it."""
    path = config.database_path
    if config["sms"]["backend"] == "none" or not path.exists():
        return []
    conn = sqlite3.connect("file:%s?mode=ro" % path, uri=True, timeout=TIMEOUT_S)
    try:
        row = conn.execute("SELECT state, since, detail FROM health WHERE name = 'sms'"
                           ).fetchone()
    except sqlite3.OperationalError:
        row = None  # a database from before the health table
    finally:
        conn.close()
    if row is None:
        return [Check("sms delivery", SKIP, "no report from `huaico run` yet")]
    state, since, detail = row
    if state == "ok":
        return [Check("sms delivery", OK, "working, as `huaico run` last saw it")]
    minutes = ((now or time.time()) - since) / 60
    return [Check("sms delivery", FAIL, "failing for %.0f min: %s" % (minutes, detail),
                  "check the modem (plugged in? `ls /dev/serial/by-id/`), its SIM and signal")]


def run(home=None, quick=False):
    """All checks, in the order a person would fix things."""
    try:
        config = config_mod.load(home)
    except config_mod.ConfigError as exc:
        home_path = config_mod.home_dir(home)
        return [Check("config", FAIL, str(exc), "fix %s (compare with `huaico init --home "
                      "/tmp/fresh`)" % (home_path / config_mod.CONFIG_NAME))] + check_clock()
    config_file = config.home / config_mod.CONFIG_NAME
    checks = [Check("config", OK if config_file.exists() else WARN,
                    "%s %s" % (config_file, "loads" if config_file.exists()
                               else "missing; defaults used"),
                    "" if config_file.exists() else "run `huaico init`")]
    serial_urls = config["ingest"]["serial"]
    if not serial_urls:
        checks.append(Check("serial", SKIP, "no serial ports in [ingest] serial"))
    for url in serial_urls:
        checks += _guarded("serial", check_serial_port, "serial", url)
    checks += _guarded("gateway", check_gateway, config)
    checks += _guarded("sms", check_modem, config)
    checks += _guarded("sms delivery", check_sms_delivery, config)
    checks += _guarded("broker", check_broker, config)
    checks += _guarded("database", check_database, config, quick=quick)
    checks += _guarded("permissions", check_modes, config)
    checks += _guarded("disk", check_disk, config)
    checks += _guarded("clock", _clock_with_data, config)
    checks += _guarded("timezone", check_timezone, config)
    checks += _guarded("sms alphabet", check_shift_tables, config)
    checks += _guarded("rules", check_rules, config)
    return checks


def check_timezone(config, now=None):
    """The zone of the times in messages and of quiet hours: [alerts]
    timezone (checked when the config loads), else the system's, shown
    with its offset and the time there now."""
    from huaico.alerts import lifecycle as alerts

    name = config["alerts"]["timezone"]
    zone = alerts.zone(config)
    moment = datetime.datetime.fromtimestamp(time.time() if now is None else now, zone)
    moment = moment if zone else moment.astimezone()
    if name:
        return [Check("timezone", OK, "messages and quiet hours use %s (UTC%s, now %s)"
                      % (name, moment.strftime("%z"), moment.strftime("%H:%M")))]
    return [Check("timezone", OK, "messages and quiet hours use the system's zone %s (UTC%s, "
                  "now %s)" % (moment.tzname(), moment.strftime("%z"), moment.strftime("%H:%M")),
                  'set [alerts] timezone, e.g. "America/Lima", to keep it whatever the system '
                  'says')]


def check_shift_tables(config):
    """Groups asking for a national shift table that their backend cannot
    send: gammu-smsd encodes texts itself, so they go without accents."""
    if config["sms"]["backend"] == "modem":
        return []
    return [Check("sms alphabet", WARN, "group %s: shift_table = %r needs [sms] backend = "
                  "\"modem\"; its texts go without accents" % (group["name"],
                                                               group["shift_table"]),
                  'set backend = "modem", or shift_table = ""')
            for group in config["groups"] if group.get("shift_table")]


def check_rules(config):
    """Rules that match no device, groups with no numbers, and rules whose
    alerts reach nobody (no group with numbers takes their highest level
    over a configured SMS backend, and MQTT is off)."""
    from huaico.alerts import lifecycle as alerts
    from huaico.rules import engine as rules

    checks = []
    groups = list(alerts.groups(config).values())
    for group in groups:
        if not group["numbers"]:
            checks.append(Check("groups", WARN, "group %s has no numbers" % group["name"],
                                "add numbers = [\"+51...\"] to its [[groups]] in huaico.toml"))
    path = config.database_path
    if not path.exists():
        return checks or [Check("rules", SKIP, "no database yet")]
    database = db.open_db(path)
    try:
        if "rules" not in database.table_names():
            return checks or [Check("rules", SKIP, "no rules table yet")]
        cursor = database.execute("SELECT * FROM rules WHERE enabled = 1 ORDER BY name")
        names = [column[0] for column in cursor.description]
        found = [rules.Rule.from_row(dict(zip(names, row))) for row in cursor.fetchall()]
        cursor = database.execute("SELECT * FROM devices WHERE retired = 0")
        names = [column[0] for column in cursor.description]
        devices = [dict(zip(names, row)) for row in cursor.fetchall()]
    finally:
        database.conn.close()
    sms = config["sms"]["backend"] != "none"
    mqtt = config["mqtt"]["enabled"]
    for rule in found:
        if not any(rule.matches(device) for device in devices):
            checks.append(Check("rules", WARN, "rule %s matches no device (%s)"
                                % (rule.name, rule.describe()),
                                "`huaico rules edit %s --device/--site ...` or `huaico rules "
                                "remove %s`" % (rule.name, rule.name)))
        top = max(rules.LEVELS.index(name) for name in rule.levels)
        takers = [g["name"] for g in groups if g["numbers"] and
                  rules.LEVELS.index(g["min_level"]) <= top] if sms else []
        if not takers and not mqtt:
            checks.append(Check("rules", FAIL, "alerts of rule %s reach nobody: %s" % (
                rule.name, "no SMS backend and MQTT is off" if not sms else
                "no group with numbers takes %s" % rules.LEVELS[top]),
                "set [sms] backend and a [[groups]] with numbers and min_level <= %s"
                % rules.LEVELS[top]))
        if rule.kind in rules.BASIN_KINDS and takers and not mqtt and not any(
                g["numbers"] and g["min_level"] == "advisory" for g in groups):
            checks.append(Check("rules", WARN, "rule %s says at advisory level when too few "
                                "gauges are known, and no group takes advisory" % rule.name,
                                "give the operators a [[groups]] with min_level = \"advisory\""))
    if not checks:
        checks.append(Check("rules", OK, "%d rule(s), each matches a device and reaches "
                                         "someone" % len(found)))
    return checks


def _clock_with_data(config):
    """check_clock against the database's newest data and saved state, when it opens."""
    path = config.database_path
    if not path.exists():
        return check_clock()
    database = db.open_db(path)
    try:
        if "gateway_state" not in database.table_names():
            return check_clock()
        return check_clock(database=database)
    finally:
        database.conn.close()
