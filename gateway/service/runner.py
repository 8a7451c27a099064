"""What `huaico run` wraps around huaico.service.process for a gateway left running
for years: the data directory's lock, systemd's readiness and watchdog,
housekeeping (retention) on a timer of its own, the Prometheus endpoint and
Home Assistant discovery.

Kept apart from huaico.service.process so that the service stays what tests and
the demo start in-process, and this layer is what a real deployment adds.
"""
import logging
import os
import threading
import time

from huaico.service import datalock, sdnotify
from huaico.service import process as service_mod
from huaico.store import db, retention

log = logging.getLogger("huaico.run")

HOUSEKEEPING_S = 3600.0


class Health:
    """Whether the writer is alive and making progress, for the watchdog:
    a writer thread that died, or one with frames queued that has not stored
    or rejected any since the last look, is not healthy."""

    def __init__(self, service):
        self.service = service
        self._seen = None

    def __call__(self):
        writer = self.service.writer
        if writer is None or not writer.alive:
            return False
        total = sum(self.service.counters.snapshot().values())
        stuck = writer.depth > 0 and total == self._seen
        self._seen = total
        return not stuck


class Housekeeper(threading.Thread):
    """Runs retention at start-up and then every HOUSEKEEPING_S, on its own
    connection: its deletes take the write lock in short transactions, and
    the writer's busy_timeout waits them out."""

    def __init__(self, config, every_s=HOUSEKEEPING_S):
        threading.Thread.__init__(self, name="housekeeping", daemon=True)
        self.config = config
        self.every_s = every_s
        self.stopping = threading.Event()

    def run(self):
        database = db.open_db(self.config.database_path)
        try:
            while True:
                try:
                    done = retention.apply(database, self.config, time.time(), self.stopping)
                    if done["readings_removed"]:
                        log.info("event=retention hours_written=%d readings_removed=%d "
                                 "cutoff=%d", done["hours_written"], done["readings_removed"],
                                 done["cutoff"])
                except Exception:
                    log.exception("event=retention_failed")
                if self.stopping.wait(self.every_s):
                    return
        finally:
            database.conn.close()

    def stop(self):
        self.stopping.set()
        self.join()


def run(config, duration=None, once=False, housekeeping_s=HOUSEKEEPING_S, metrics=None,
        **options):
    """huaico.service.process.run with the lock, sd_notify, housekeeping and metrics
    around it; `metrics` is a HOST:PORT overriding [metrics] listen."""
    lock = datalock.DataDirLock(config.home).acquire()
    notifier = sdnotify.Notifier()
    keeper = exporter = discovery = None
    try:
        service = service_mod.Service(config, **options)
        service.install_signals()
        service.start()
        try:
            listen = metrics or config["metrics"]["listen"]
            if listen:
                from huaico.service import metrics as metrics_mod
                try:
                    exporter = metrics_mod.MetricsServer(listen, config.database_path,
                                                         service.counters, service.writer)
                    exporter.start()
                except metrics_mod.MetricsError as exc:
                    exporter = None
                    raise service_mod.ServiceError(str(exc)) from None
                log.info("event=metrics url=http://%s:%d/metrics", exporter.host, exporter.port)
            if service.mqtt is not None and config["mqtt"]["ha_discovery"]:
                from huaico.mqtt import ha_discovery
                discovery = ha_discovery.Discovery(
                    config.database_path, service.mqtt, config,
                    availability=service._status_topic("status"))
                discovery.start()
            keeper = Housekeeper(config, housekeeping_s)
            keeper.start()
            notifier.ready("pid %d on %s" % (os.getpid(), config.home))
            notifier.start_watchdog(Health(service))
            service.wait(duration=duration, once=once)
        finally:
            notifier.stopping()
            notifier.stop_watchdog()
            if keeper is not None:
                keeper.stop()
            if exporter is not None:
                exporter.stop()
            if discovery is not None:
                discovery.stop()
            service.stop()
        return service.counters.snapshot()
    finally:
        lock.release()
