"""`huaico run`: the gateway as one process, from start-up to a clean shutdown.

Wiring: readers (serial ports, UDP, MQTT) -> the writer thread (store,
rules, acks, and the engine's timers every few seconds) -> the dispatcher
(huaico.alerts.dispatch), woken after each commit that queued messages; with
--no-rules neither the rule engine nor the dispatcher runs. With MQTT, the
readings feed (huaico.mqtt.readings_feed) publishes what was stored as SenML.
SIGTERM or SIGINT stops the readers first, then lets the writer drain its
queue and commit, then stops the dispatcher, the feed and MQTT, so that no
frame that was read is left unacked for a reason of our own.

Operators watch it through structured logs on stderr (key=value, or JSON
lines with --log-format json), a status line every few seconds (frames/s,
readings, rejects, queue depth, age of the last frame), and the counters
table, which is also published on MQTT when it is enabled.
"""
import json
import logging
import signal
import sys
import threading
import time

from huaico import clock as clock_mod
from huaico.alerts import dispatch
from huaico.hub import upstream
from huaico.ingest import readers as ingest
from huaico.mqtt.readings_feed import ReadingsFeed
from huaico.rules import engine as rules_mod
from huaico.service import console
from huaico.store import db
from huaico.store.writer import Counters, Writer

log = logging.getLogger("huaico.service")

LOG_FORMATS = ("kv", "json")


class ServiceError(RuntimeError):
    """The service cannot start (names the part and why)."""


class KeyValueFormatter(logging.Formatter):
    def format(self, record):
        text = "ts=%s level=%s logger=%s %s" % (
            self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), record.levelname.lower(),
            record.name, record.getMessage())
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


class JsonFormatter(logging.Formatter):
    """One JSON object per line; key=value pairs of the message become fields."""

    def format(self, record):
        entry = {"ts": record.created, "level": record.levelname.lower(), "logger": record.name}
        message = record.getMessage()
        for word in message.split(" "):
            key, sep, value = word.partition("=")
            if sep and key.isidentifier() and key not in entry:
                entry[key] = value
        entry["msg"] = message
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, sort_keys=True)


def setup_logging(level="info", log_format="kv", stream=None):
    if log_format not in LOG_FORMATS:
        raise ServiceError("log format must be one of %s, not %r" % (LOG_FORMATS, log_format))
    handler = console.LogHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else KeyValueFormatter())
    root = logging.getLogger("huaico")
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    root.propagate = False


class Service:
    """Everything `huaico run` starts; start(), then wait(), then stop()."""

    def __init__(self, config, *, serial_urls=None, udp=None, status_every=10.0,
                 tick_s=5.0, status_stream=None, engine=None, rules=True, clock=None):
        self.config = config
        ingest_cfg = config["ingest"]
        self.serial_urls = list(ingest_cfg["serial"] if serial_urls is None else serial_urls)
        self.udp = ingest_cfg["udp"] if udp is None else udp
        self.status_every = status_every
        self.tick_s = tick_s
        self.status_stream = status_stream or sys.stderr
        self.engine = engine
        self.use_rules = rules
        self.counters = Counters()
        self.database = None
        self.writer = None
        self.readers = []
        self.mqtt = None
        self.dispatcher = None
        self.feed = None
        self.forwarder = None  # huaico.hub.upstream: frames to the city's hub
        self.clock = clock  # a huaico.clock.GatewayClock; made from [clock] when None
        self.stopping = threading.Event()
        self._last_status = (time.monotonic(), 0)

    # Start-up.

    def start(self):
        if not self.serial_urls and not self.udp and not self.config["mqtt"]["enabled"]:
            raise ServiceError("nothing to listen on: set ingest.serial, ingest.udp or "
                               "mqtt.enabled in %s, or pass --serial/--udp"
                               % (self.config.home / "huaico.toml"))
        self.database = db.open_db(self.config.database_path)
        applied = db.migrate(self.database)
        if applied:
            log.info("event=migrated names=%s", ",".join(applied))
        if self.config["mqtt"]["enabled"]:
            self.mqtt = self._mqtt_link()
        self.dispatcher = self._dispatcher()
        # The modem's network time stands in when NTP is not there (gateway/clock.py).
        sms = self.dispatcher.sms if self.dispatcher is not None else None
        if self.clock is None:
            self.clock = clock_mod.from_config(self.config,
                                               network=getattr(sms, "network_time", None))
        self.clock.note_data(clock_mod.newest_stored(self.database))
        self.clock.start(self.config["clock"]["check_every_s"])
        if self.dispatcher is not None:
            # Outbox times come from this clock (the writer's): the dispatcher
            # must read the same one, or a network-time offset holds messages.
            self.dispatcher.clock = self.clock.now
        if self.engine is None and self.use_rules:
            self.engine = rules_mod.RuleEngine(self.database, self.config, clock=self.clock)
        ingest_cfg = self.config["ingest"]
        try:
            self.forwarder = upstream.from_config(self.config, self.counters)
        except ValueError as exc:
            raise ServiceError("upstream: %s" % exc) from None
        self.writer = Writer(self.database, engine=self.engine, counters=self.counters,
                             window=ingest_cfg["replay_window"], batch_ms=ingest_cfg["batch_ms"],
                             tick_s=self.tick_s, on_commit=self._committed, clock=self.clock,
                             keep_raw=self.forwarder is not None,
                             on_stored=self.forwarder.wake if self.forwarder else None)
        self.writer.start()
        if self.forwarder is not None:
            self.forwarder.mqtt.start()
            self.forwarder.start()
        try:
            for url in self.serial_urls:
                self.readers.append(ingest.SerialReader(self.writer, url, ingest_cfg["baudrate"]))
            if self.udp:
                self.readers.append(ingest.UdpReader(self.writer, self.udp))
            if self.mqtt is not None:
                self.readers.append(ingest.MqttReader(
                    self.writer, self.mqtt, self.config["mqtt"]["topic_prefix"]))
        except (OSError, ingest.IngestConfigError) as exc:
            self.stop()
            raise ServiceError("cannot listen: %s" % exc) from None
        for reader in self.readers:
            reader.start()
        if self.mqtt is not None:
            self.mqtt.start()
            if self.config["mqtt"]["publish_readings"]:
                self.feed = ReadingsFeed(self.config.database_path, self.mqtt,
                                         self.config["mqtt"]["topic_prefix"], self.counters)
                self.feed.start()
        if self.dispatcher is not None:
            self._say_sms()
            self.dispatcher.start()
        log.info("event=started serial=%s udp=%s mqtt=%s rules=%s dispatcher=%s clock=%s "
                 "clock_source=%s", ",".join(self.serial_urls) or "-", self.udp or "-",
                 "on" if self.mqtt else "off", "on" if self.engine else "off",
                 "on" if self.dispatcher else "off",
                 "trusted" if self.clock.trusted else "untrusted", self.clock.source)

    def _status_topic(self, leaf):
        mqtt_cfg = self.config["mqtt"]
        return "%s/gateway/%s/%s" % (mqtt_cfg["topic_prefix"], mqtt_cfg["client_id"], leaf)

    def _mqtt_link(self):
        from huaico.mqtt.link import MqttConfigError, MqttLink
        mqtt_cfg = self.config["mqtt"]
        status = self._status_topic("status")
        try:
            return MqttLink(
                mqtt_cfg["host"], mqtt_cfg["port"], mqtt_cfg["client_id"],
                username=mqtt_cfg["username"] or None, password=mqtt_cfg["password"] or None,
                tls=self.config.mqtt_tls(), protocol=mqtt_cfg["protocol"], clean=False,
                will=(status, b"offline", 1, True), birth=(status, b"online", 1, True))
        except MqttConfigError as exc:
            raise ServiceError("mqtt: %s" % exc) from None

    def _dispatcher(self):
        if not self.use_rules:
            return None
        try:
            sms = dispatch.sms_backend_from_config(self.config)
        except (ValueError, OSError) as exc:
            raise ServiceError("sms: %s" % exc) from None
        # Its own connection (opened in its thread), so delivery never waits
        # on the writer's transactions beyond SQLite's own locking.
        return dispatch.Dispatcher(self.config.database_path, self.config, sms=sms,
                                   mqtt=self.mqtt, counters=self.counters)

    def _say_sms(self):
        """An operator must not learn at the first alert that SMS goes nowhere."""
        sms = self.dispatcher.sms
        if sms is None:
            log.warning("event=no_sms_backend detail=%s",
                        "[sms] backend is none: alerts go to MQTT only, to nobody's phone")
        elif getattr(sms, "open_error", None):
            log.warning("event=modem_absent port=%s retry=backoff detail=%s", sms.url,
                        "running without it; SMS wait in the outbox until it answers")

    def _committed(self, outbox_ids):
        # On the writer's thread, with its connection: MQTT alerts leave now.
        if self.dispatcher is not None:
            self.dispatcher.wake(outbox_ids, self.database.conn)

    # Running.

    def install_signals(self):
        def handler(signum, frame):
            log.info("event=signal name=%s", signal.Signals(signum).name)
            self.stopping.set()
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def wait(self, duration=None, once=False, idle_s=1.0):
        """Run until a signal; or for `duration` seconds; or, with once, until
        nothing has arrived for idle_s."""
        started = time.monotonic()
        next_status = started + self.status_every
        quiet_since = started
        seen = -1
        while not self.stopping.wait(0.1):
            now = time.monotonic()
            if duration is not None and now - started >= duration:
                break
            if once:
                total = sum(self.counters.snapshot().values())
                if total != seen or self.writer.depth:
                    seen, quiet_since = total, now
                elif now - quiet_since >= idle_s:
                    break
            if now >= next_status:
                self.status()
                next_status = now + self.status_every

    def status(self):
        """The status line (stderr when it is a terminal, else a log line) and
        the counters on MQTT."""
        totals = self.counters.snapshot()
        now = time.monotonic()
        frames = totals.get("frames_ok", 0)
        then, frames_then = self._last_status
        self._last_status = (now, frames)
        rate = (frames - frames_then) / max(now - then, 1e-6)
        rejects = sum(n for name, n in totals.items()
                      if name.startswith("rejected_") or name.startswith("link_"))
        last = self.writer.last_frame
        age = "%.0fs" % (self.clock.now() - last) if last else "-"
        sms, down_s, _ = (self.dispatcher.sms_state() if self.dispatcher is not None
                          else ("off", None, None))
        line = ("frames/s=%.1f frames=%d readings=%d duplicates=%d rejects=%d queue=%d "
                "last_frame_age=%s clock=%s sms=%s" % (
                    rate, frames, totals.get("readings", 0), totals.get("duplicates", 0),
                    rejects, self.writer.depth, age,
                    "trusted" if self.clock.trusted else "UNTRUSTED",
                    sms if down_s is None else "%s_%.0fs" % (sms, down_s)))
        totals["sms_failing_s"] = round(down_s or 0)
        if self.status_stream.isatty():
            console.status_line(self.status_stream).show(line)
        else:
            log.info("event=status %s", line)
        if self.mqtt is not None:
            self.mqtt.publish(self._status_topic("counters"),
                              json.dumps(totals, sort_keys=True).encode(), qos=0)

    # Shutdown.

    def stop(self):
        """Readers first, then the writer drains and commits, then the rest."""
        for reader in self.readers:
            reader.stop()
        for reader in self.readers:
            reader.join()
        if self.writer is not None:
            self.writer.stop()
        if self.clock is not None:
            self.clock.stop()
        if self.dispatcher is not None:
            self.dispatcher.stop()
        if self.feed is not None:
            self.feed.stop()
        if self.forwarder is not None:
            self.forwarder.stop()
            self.forwarder.mqtt.stop()
        if self.mqtt is not None:
            # A clean disconnect suppresses the will, so say it ourselves.
            self.mqtt.publish(self._status_topic("status"), b"offline", qos=1,
                              retain=True).wait(2)
            self.mqtt.stop()
        if self.database is not None:
            self.database.conn.close()
            self.database = None
        if self.status_stream.isatty():
            console.status_line(self.status_stream).end()
        log.info("event=stopped counters=%s", json.dumps(self.counters.snapshot(),
                                                         sort_keys=True))


def run(config, duration=None, once=False, **options):
    """Start, run until a signal (or duration/once), stop; returns the counters."""
    service = Service(config, **options)
    service.install_signals()
    service.start()
    try:
        service.wait(duration=duration, once=once)
    finally:
        service.stop()
    return service.counters.snapshot()
