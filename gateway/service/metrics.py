"""Prometheus metrics of a running gateway, on a local HTTP port.

Operators who already run Prometheus and Grafana get the gateway's health
where they look: the counters `huaico run` keeps (frames stored, rejected by
reason, link errors, messages sent), the writer's queue depth, each
device's last-frame age and battery, the outbox by state and the active
alerts by level. Nothing is computed on a timer: a custom collector reads
the counters from memory and the rest from its own read-only SQLite
connection when Prometheus scrapes, so an idle gateway does no extra work.

Counters are the process's own (they start at 0 when `huaico run` starts),
as Prometheus expects of a counter; the totals across restarts stay in the
counters table (`huaico status`, `huaico serve`).
"""
import re
import sqlite3
import threading
import time

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from huaico import version

# counter-name prefix -> (metric, help, label for the rest of the name)
_FAMILIES = (
    ("rejected_", "huaico_rejected_frames", "Frames refused, by reason.", "reason"),
    ("link_", "huaico_link_errors", "Bytes on a link that were not a frame, by reason.",
     "reason"),
)
_NAMED = {
    "frames_ok": ("huaico_frames_stored", "Frames stored (and acked)."),
    "readings": ("huaico_readings_stored", "Readings stored."),
    "duplicates": ("huaico_duplicate_frames", "Frames received again (acked, not stored)."),
}
_SAFE = re.compile(r"[^a-zA-Z0-9_]")


class MetricsError(ValueError):
    """The metrics listen address cannot be used."""


def parse_listen(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise MetricsError("metrics listen address %r: use HOST:PORT, e.g. 127.0.0.1:9464"
                           % text)
    return host or "127.0.0.1", int(port)


class GatewayCollector:
    """Collects at scrape time from the service's counters and writer, and
    from the database."""

    def __init__(self, database_path, counters, writer=None, clock=time.time):
        self.database_path = database_path
        self.counters = counters
        self.writer = writer
        self.clock = clock
        self._lock = threading.Lock()  # one scrape at a time on the connection
        self._conn = None

    def _db(self):
        if self._conn is None:
            self._conn = sqlite3.connect("file:%s?mode=ro" % self.database_path, uri=True,
                                         check_same_thread=False, timeout=2.0)
        return self._conn

    def collect(self):
        yield from self._counters()
        if self.writer is not None:
            depth = GaugeMetricFamily("huaico_writer_queue_depth",
                                      "Frames read but not yet stored.")
            depth.add_metric([], self.writer.depth)
            yield depth
        with self._lock:
            yield from self._database()
        info = InfoMetricFamily("huaico_build", "The huaico version running.")
        info.add_metric([], {"version": version.installed()})
        yield info

    def _counters(self):
        totals = self.counters.snapshot()
        families = {}
        other = CounterMetricFamily("huaico_events", "Other events the gateway counts.",
                                    labels=["event"])
        for name, value in sorted(totals.items()):
            if name in _NAMED:
                metric, text = _NAMED[name]
                family = CounterMetricFamily(metric, text)
                family.add_metric([], value)
                yield family
                continue
            for prefix, metric, text, label in _FAMILIES:
                if name.startswith(prefix):
                    if metric not in families:
                        families[metric] = CounterMetricFamily(metric, text, labels=[label])
                    families[metric].add_metric([_SAFE.sub("_", name[len(prefix):])], value)
                    break
            else:
                other.add_metric([_SAFE.sub("_", name)], value)
        yield from families.values()
        yield other

    def _database(self):
        conn = self._db()
        now = self.clock()
        age = GaugeMetricFamily("huaico_device_last_frame_age_seconds",
                                "Seconds since the device's last stored frame.",
                                labels=["device", "site"])
        battery = GaugeMetricFamily("huaico_device_battery_volts",
                                    "The device's last reported battery voltage.",
                                    labels=["device", "site"])
        for name, site, last_seen, battery_mv in conn.execute(
                "SELECT name, site, last_seen, battery_mv FROM devices_live WHERE retired = 0 "
                "ORDER BY name"):
            if last_seen is not None:
                age.add_metric([name, site or ""], max(0.0, now - last_seen))
            if battery_mv is not None:
                battery.add_metric([name, site or ""], battery_mv / 1000.0)
        yield age
        yield battery
        outbox = GaugeMetricFamily("huaico_outbox_messages",
                                   "Messages in the outbox by state and transport.",
                                   labels=["status", "transport"])
        for status, transport, count in conn.execute(
                "SELECT status, transport, count(*) FROM outbox GROUP BY status, transport"):
            outbox.add_metric([status, transport], count)
        yield outbox
        oldest = GaugeMetricFamily("huaico_outbox_oldest_pending_age_seconds",
                                   "Age of the oldest message not yet delivered (0: none).")
        created = conn.execute("SELECT min(created) FROM outbox WHERE status = 'pending'"
                               ).fetchone()[0]
        oldest.add_metric([], 0.0 if created is None else max(0.0, now - created))
        yield oldest
        alerts = GaugeMetricFamily("huaico_active_alerts", "Active alerts by level.",
                                   labels=["level"])
        for level, count in conn.execute(
                "SELECT level, count(*) FROM alerts WHERE status = 'active' GROUP BY level"):
            alerts.add_metric([level], count)
        yield alerts

    def close(self):
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


class MetricsServer:
    """The HTTP endpoint (/metrics) on its own registry and thread."""

    def __init__(self, listen, database_path, counters, writer=None):
        self.host, self.port = parse_listen(listen)
        self.collector = GatewayCollector(database_path, counters, writer)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(self.collector)
        self._server = None

    def start(self):
        try:
            self._server, _ = start_http_server(self.port, addr=self.host,
                                                registry=self.registry)
        except OSError as exc:
            raise MetricsError("cannot listen for metrics on %s:%d: %s"
                               % (self.host, self.port, exc)) from None

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.collector.close()
