"""The gateway's configuration: one commented TOML file in the data directory.

`huaico init` writes DEFAULT_TOML so that an operator editing it over SSH
finds every key explained next to its value; `load()` reads it back with
tomllib, fills in defaults for keys left out, and checks types so that a typo
is reported by key name at start-up, not as a crash an hour later.

The data directory (HUAICO_HOME, or --home) holds huaico.toml, the database
and sites/; relative paths in the file are relative to it.
"""
import copy
import difflib
import os
import pathlib
import tomllib
import zoneinfo

CONFIG_NAME = "huaico.toml"
DEFAULT_HOME = "~/.huaico"

DEFAULT_TOML = '''\
# huaico gateway configuration. Written by `huaico init`; edit freely.
# Relative paths are relative to the directory holding this file (HUAICO_HOME).

[gateway]
# SQLite database holding devices, readings, rules, alerts and the outbox.
database = "huaico.db"
# Where `huaico device add` writes each board's site config (sites/NAME.json).
sites_dir = "sites"
# Log level: "debug", "info", "warning" or "error".
log = "info"

[ingest]
# Serial ports to read frames from, as pyserial URLs: a device path
# ("/dev/ttyUSB0"), "loop://" (loopback for tests) or "spy:///dev/ttyUSB0"
# (hexdumps both directions to stderr for field debugging). Several at once.
serial = []
# Baud rate for every serial port above.
baudrate = 115200
# UDP listen address "HOST:PORT" (one datagram = one frame); "" is off.
udp = ""
# Group commit: frames arriving within this many milliseconds share one
# commit (and one fsync). Acks are sent only after that commit.
batch_ms = 5
# Replay window: how many recent sequence numbers per device are remembered
# (1..64). A frame whose number is older than the window and was never
# stored is rejected as "replayed".
replay_window = 64

[clock]
# When the gateway trusts its own clock (it never gives boards a time it does
# not trust). "auto": the kernel says the system clock is synchronised (NTP:
# systemd-timesyncd, chrony, ntpd), else the GSM network's time from the
# modem ([sms] backend = "modem"). "system": trust the system clock as it is
# (a gateway with a battery-backed RTC); it must still not be behind the
# newest stored data.
trust = "auto"
# How often the clock's sources are checked again, in seconds.
check_every_s = 60

[mqtt]
# Connect to an MQTT broker: frames from Wi-Fi boards (<prefix>/<device id>/up),
# acks back (<prefix>/<device id>/ack), readings, alerts, status and counters.
enabled = false
host = "127.0.0.1"
port = 1883
# Leave empty for an anonymous broker.
username = ""
password = ""
# TLS: true for a broker whose certificate a public CA signed (checked
# against the system's CA list). Setting tls_ca turns TLS on as well; with
# neither, the connection is plain TCP.
tls = false
# CA certificate file for a broker with a private CA ("" = the system's CAs).
tls_ca = ""
# Client certificate and its key, for a broker that asks for one ("" = none;
# tls_key may stay "" when tls_cert holds the key too).
tls_cert = ""
tls_key = ""
# "auto" (MQTT 5, falling back to 3.1.1), "5" or "3.1.1".
protocol = "auto"
# Also the persistent session's name: the broker keeps frames for it while
# the gateway is down. Give every gateway sharing a broker its own.
client_id = "huaico-gateway"
# First level of every topic.
topic_prefix = "huaico"
# Publish every stored reading as SenML JSON on <prefix>/<device id>/senml.
# Packs wait in the database while the broker is away; none is lost.
publish_readings = true
# Home Assistant MQTT discovery: retained config messages under ha_prefix
# make every station and channel appear in a Home Assistant on this broker,
# with its newest values on <prefix>/<device id>/state.
ha_discovery = true
ha_prefix = "homeassistant"

[upstream]
# The city tier: forward every stored frame (the board's original signed
# bytes, with gateway id, receive time, link and RSSI) to a central broker,
# QoS 1, from a cursor in the database that moves only on the broker's
# PUBACK, so a gateway cut off for days catches up in order. `huaico hub`
# workers verify and store them. Boards are still acked by this gateway.
enabled = false
host = "127.0.0.1"
port = 1883
username = ""
password = ""
# TLS to the central broker: tls = true checks it against the system's CAs,
# tls_ca against that CA file instead; tls_cert/tls_key log in with a client
# certificate (as in [mqtt]).
tls = false
tls_ca = ""
tls_cert = ""
tls_key = ""
# This gateway's name at the hub ("" = [mqtt] client_id); unique per city.
gateway_id = ""
# Frames go to <topic_prefix>/<gateway_id>/frames.
topic_prefix = "huaico-city"
# The hub receipts each frame it stored; one not receipted in this many
# seconds (a central broker that lost it) is sent again, in order.
confirm_timeout_s = 30
# Receipted frames' bytes are kept this many days, then deleted.
keep_days = 7

[hub]
# The hub's PostgreSQL (a libpq connection string, e.g. "host=db.example
# dbname=huaico user=huaico"): when set, `huaico status | readings | plot |
# device list | device show | rules ... | alerts ...` work on the city's
# database instead of this gateway's (as with --hub DSN). "" uses this
# gateway's.
dsn = ""

[sms]
# "none", "modem" (a GSM modem on a serial port, AT commands) or "spool"
# (files for gammu-smsd).
backend = "none"
# Serial port (pyserial URL) of the modem.
port = ""
baudrate = 115200
# gammu-smsd outbox directory when backend = "spool".
spool_dir = ""
# Ask the network for delivery reports.
status_reports = true
# Longest wait for the modem to answer AT+CMGS (the standard's 60 s limit).
cmgs_timeout_s = 60
# The gateway's country calling code: numbers written without it (in
# [[groups]] or as the sender of a reply) are read as national numbers of
# this country. "" reads only numbers in international form (+...).
country_code = "+51"
# Tell operators on MQTT (<prefix>/alerts/gateway) when SMS delivery has
# failed (modem absent, network errors) for this many seconds.
alert_after_s = 300

[alerts]
# Sender name shown in alert texts.
sender = "huaico"
# Default language of message texts: "es", "en", "qu" or "zh".
language = "es"
# Escalate to the next group when an alert is not acknowledged in this time.
escalate_after_min = 15
# Most advisory and watch SMS one recipient gets per hour; warnings,
# emergencies and all-clears are never held by it. 0 is no limit.
rate_limit_per_hour = 12
# No advisory-level SMS in these hours (local time, "HH:MM-HH:MM", e.g.
# "22:00-06:00"; "" is never). Watch, warning and emergency always go.
quiet_hours = ""
# Retry delays for failed deliveries: exponential from base to max, with jitter.
retry_base_s = 5
retry_max_s = 600
# SMS about one alert to one number are coalesced: a lower level or the
# all-clear waits this long after the last message sent (the newer state
# replaces it meanwhile); the first message and a rise go at once. 0 sends
# every transition as its own message.
coalesce_s = 60
# A reading older than this when it arrives (a backlog after an outage) is
# reported as late data: see late_reports in [[groups]].
late_after_s = 900
# IANA time zone of the times in messages, quiet hours and CAP alerts, e.g.
# "America/Lima" ("" is the system's; `huaico doctor` shows which).
timezone = ""
# A test message (`huaico alerts test`) not gone out within this many
# seconds expires instead of going out hours later.
test_expiry_s = 600

[retention]
# Raw readings are kept this many days after they arrived; older ones are
# folded into hourly aggregates (count, sum, min, max per device and
# channel, kept for ever) by `huaico run` once an hour. 0 keeps every raw
# reading (watch the disk with `huaico storage estimate`).
raw_days = 365

[metrics]
# Prometheus metrics (counters, queue depth, last-frame ages, outbox, active
# alerts) over HTTP at http://HOST:PORT/metrics, e.g. "127.0.0.1:9464";
# "" is off. Keep it on 127.0.0.1 unless a firewall guards the port.
listen = ""

# Recipient groups; copy the block for more. escalate_to names another group.
[[groups]]
name = "leaders"
language = "es"
# Phone numbers, e.g. ["+51987654321"]; none until you add them.
numbers = []
escalate_to = ""
# Overrides [alerts] quiet_hours for this group when not empty.
quiet_hours = ""
# Lowest level sent to this group: "advisory", "watch", "warning" or "emergency".
min_level = "watch"
# Alerts from late data: "summary" (one message per alert saying what
# happened and when), "timeline" (every event with its time: operators) or
# "none".
late_reports = "summary"
# "es": send á í ó ú with the Spanish national single shift table (3GPP TS
# 23.038) instead of writing them without accents; needs [sms] backend =
# "modem", and phones and networks that honour it. "" is off.
shift_table = ""

# Sites by the name their devices give (`huaico device add --site`): the
# place residents read in messages, and the site's own actions per language
# and level. Uncomment and copy for each site.
# [[sites]]
# name = "Quebrada Huaycoloro"
# place = "Huaycoloro, km 3 (colegio)"
# [sites.actions.es]
# warning = "Suba al colegio San Juan por la calle 4."
'''

DEFAULTS = tomllib.loads(DEFAULT_TOML)
# The keys a [[groups]] table may hold are those of the example group above.
GROUP_KEYS = tuple(DEFAULTS["groups"][0])
DEFAULTS["groups"] = []
# The keys of a [[sites]] table (the commented example above).
SITE_KEYS = ("name", "place", "actions")
DEFAULTS["sites"] = []


class ConfigError(ValueError):
    """The config file is missing, not TOML, or has a key of the wrong type."""


def home_dir(home=None):
    """The data directory: the argument, else $HUAICO_HOME, else ~/.huaico."""
    chosen = home or os.environ.get("HUAICO_HOME") or DEFAULT_HOME
    return pathlib.Path(chosen).expanduser().resolve()


class Config(dict):
    """Sections as dicts (config["ingest"]["batch_ms"]) plus where they live."""

    def __init__(self, home, sections):
        dict.__init__(self, sections)
        self.home = pathlib.Path(home)

    def path(self, value):
        """A path from the file, made absolute against the data directory."""
        path = pathlib.Path(value).expanduser()
        return path if path.is_absolute() else self.home / path

    def mqtt_tls(self):
        """MqttLink's `tls` argument from [mqtt]: None for plain TCP, True
        for the system's CAs alone, else a dict of absolute paths (ca, cert, key)."""
        return self._tls(self["mqtt"])

    def upstream_tls(self):
        """mqtt_tls()'s answer for [upstream]."""
        return self._tls(self["upstream"])

    def _tls(self, section):
        if not (section["tls"] or section["tls_ca"] or section["tls_cert"]):
            return None
        files = {name: str(self.path(section["tls_" + name]))
                 for name in ("ca", "cert", "key") if section["tls_" + name]}
        return files or True

    @property
    def gateway_id(self):
        """The name this gateway forwards under: [upstream] gateway_id, else [mqtt] client_id."""
        return self["upstream"]["gateway_id"] or self["mqtt"]["client_id"]

    @property
    def database_path(self):
        return self.path(self["gateway"]["database"])

    @property
    def sites_dir(self):
        return self.path(self["gateway"]["sites_dir"])


def _unknown(keys, known, where):
    """A ConfigError for the first key that no default names, with the
    closest known key: a typo must not silently leave a setting at its
    default (`quiet_hour = ""` would keep quiet hours on)."""
    for key in keys:
        if key in known:
            continue
        near = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
        raise ConfigError("%s: unknown key %r%s" % (
            where, key, "; did you mean %r?" % near[0] if near else
            " (known: %s)" % ", ".join(sorted(known))))


def _check(sections, defaults, where):
    _unknown(sections, defaults, where)
    for key, default in defaults.items():
        if key not in sections:
            sections[key] = copy.deepcopy(default)
            continue
        value = sections[key]
        if isinstance(default, dict):
            if not isinstance(value, dict):
                raise ConfigError("[%s] must be a table" % key)
            _check(value, default, key)
        elif isinstance(default, bool) or not isinstance(default, (int, float)):
            if type(value) is not type(default):
                raise ConfigError("%s.%s must be %s, not %r"
                                  % (where, key, type(default).__name__, value))
        elif isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError("%s.%s must be a number, not %r" % (where, key, value))


def _check_sites(sites):
    if not isinstance(sites, list) or not all(isinstance(entry, dict) for entry in sites):
        raise ConfigError("sites must be an array of tables ([[sites]])")
    for at, entry in enumerate(sites):
        where = "sites[%d] (%s)" % (at, entry.get("name", "?"))
        _unknown(entry, SITE_KEYS, where)
        if not isinstance(entry.get("name"), str) or not entry["name"].strip():
            raise ConfigError("%s: name, the site as its devices spell it, is missing" % where)
        if not isinstance(entry.get("place", ""), str):
            raise ConfigError("%s.place must be text" % where)
        actions = entry.get("actions", {})
        if not isinstance(actions, dict) or not all(
                isinstance(table, dict) and all(isinstance(v, str) for v in table.values())
                for table in actions.values()):
            raise ConfigError("%s.actions: a table per language of level = \"text\", e.g. "
                              "[sites.actions.es] warning = \"Suba al colegio.\"" % where)


def from_text(text, home, source="config"):
    try:
        sections = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("%s is not valid TOML: %s" % (source, exc)) from None
    _check(sections, DEFAULTS, "config")
    if not isinstance(sections["groups"], list):
        raise ConfigError("groups must be an array of tables ([[groups]])")
    for at, group in enumerate(sections["groups"]):
        if not isinstance(group, dict):
            raise ConfigError("groups must be an array of tables ([[groups]])")
        _unknown(group, GROUP_KEYS, "groups[%d] (%s)" % (at, group.get("name", "?")))
        if group.get("shift_table") not in (None, "", "es"):
            raise ConfigError("groups[%d].shift_table must be \"es\" or \"\", not %r"
                              % (at, group["shift_table"]))
    _check_sites(sections["sites"])
    for item in sections["ingest"]["serial"]:
        if not isinstance(item, str) or not item:
            raise ConfigError("ingest.serial must list pyserial URLs, not %r" % (item,))
    window = sections["ingest"]["replay_window"]
    if not 1 <= window <= 64:
        raise ConfigError("ingest.replay_window must be 1..64, not %r" % window)
    if sections["mqtt"]["tls_key"] and not sections["mqtt"]["tls_cert"]:
        raise ConfigError("mqtt.tls_key needs mqtt.tls_cert (the certificate it belongs to)")
    if sections["clock"]["trust"] not in ("auto", "system"):
        raise ConfigError("clock.trust must be \"auto\" or \"system\", not %r"
                          % sections["clock"]["trust"])
    zone = sections["alerts"]["timezone"]
    if zone:
        try:
            zoneinfo.ZoneInfo(zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ConfigError("alerts.timezone %r is not an IANA time zone; use e.g. "
                              "\"America/Lima\" (\"\" is the system's)" % zone) from None
    if sections["retention"]["raw_days"] < 0:
        raise ConfigError("retention.raw_days must not be negative (0 keeps every reading)")
    if sections["ingest"]["batch_ms"] < 0:
        raise ConfigError("ingest.batch_ms must not be negative")
    return Config(home, sections)


def load(home=None):
    """The config in the data directory; defaults alone when there is no file yet."""
    home = home_dir(home)
    path = home / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return from_text("", home)
    except OSError as exc:
        raise ConfigError("cannot read %s: %s" % (path, exc)) from None
    return from_text(text, home, str(path))


def make_home(home):
    """The data directory, created owner-only (0700): it holds the device
    keys (huaico.db) and the broker's password (huaico.toml). An existing
    directory is left as it is; `huaico doctor` says when it is open."""
    home.parent.mkdir(parents=True, exist_ok=True)
    try:
        home.mkdir(mode=0o700)
    except FileExistsError:
        return home
    os.chmod(home, 0o700)  # mkdir's mode is masked by the umask, which may be stricter only
    return home


def write_default(home=None, force=False):
    """Write DEFAULT_TOML unless a config is there; returns (path, written).
    The file is created 0600: it will hold the broker's password."""
    home = make_home(home_dir(home))
    path = home / CONFIG_NAME
    if path.exists() and not force:
        return path, False
    tmp = path.with_suffix(".toml.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)  # a tmp left by an older release may be 0644
        out.write(DEFAULT_TOML)
    os.replace(tmp, path)
    return path, True
