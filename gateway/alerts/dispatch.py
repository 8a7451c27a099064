"""The dispatcher: one thread, with its own database connection, that delivers
the outbox over SMS (huaico.sms.backend backends) and MQTT (huaico.mqtt.link.MqttLink).

Each pass takes the pending rows in id order and, per recipient:
- skips rows that a policy holds back, without blocking the recipient's
  other rows: no backend configured for the transport; quiet hours hold
  advisory messages only, and the hourly rate limit advisory and watch
  ones: a warning, an emergency or their all-clear is never held back
  (huaico.alerts.policy, which the hub's dispatcher applies too);
- a test message not gone out within [alerts] test_expiry_s expires
  (status 'expired'): a test that arrives hours later would mislead;
- sends the rest in order: a row waiting for its retry blocks the
  recipient's later rows (in order per recipient), but never anyone else's,
  and so does a retry whose outcome the database refused (kept in memory);
- a retryable failure sets the row's own next attempt, exponential from
  retry_base_s to retry_max_s with jitter so that many rows failing together
  do not retry together; a permanent one (SmsError.retryable False) marks it
  failed, counts it, and, for warnings and emergencies, escalates the alert
  at once, since its recipient will not be warned.

What the modem accepted is never forgotten in a way that repeats it:
- before an SMS goes to the backend, a commit marks its copy in flight
  (outbox.copies, inflight, concat_ref); the outcome (sent with the
  modem's references, or a failure with the parts accepted so far) clears it
  in the same transaction as the delivery log line;
- when that outcome cannot be committed (disk full, database locked), it is
  kept in memory and only the commit is retried, with backoff: the message
  is not sent again while this process lives;
- a multipart message whose later part failed resumes at that part under
  the same concatenation reference (outbox.parts holds the references of
  the parts accepted), so the first part is not sent again each time
  (huaico.alerts.sms_send, which the hub's dispatcher sends through too);
- after a crash, a row still in flight may or may not have gone out: it is
  sent once more with the language's repeat mark in front ("REPETIDO: "),
  because a doubled warning costs a shrug and a lost one can cost a life.
  A second copy that is in flight after another crash is not sent a third
  time: the row is marked sent, unconfirmed, counted and logged.
So no SMS goes out more than twice, and a second copy says it is one. MQTT
is at-least-once (QoS 1; CAP identifiers let consumers drop repeats), with
the same in-memory guard against a loop when its outcome cannot be stored.

Time comes from `clock` (and every pass takes `now`), so tests drive quiet
hours, rate limits, backoff and escalation with an injected clock.
"""
import collections
import json
import logging
import random
import sqlite3
import threading
import time

from huaico.alerts import acks, lifecycle as alerts, sms_send
from huaico.alerts.policy import Policy
from huaico.alerts.sms_health import SmsHealth
from huaico.sms.backend import SmsError
from huaico.store import db

log = logging.getLogger("huaico.dispatch")

def sms_backend_from_config(config):
    """The SMS backend [sms] names, or None for backend = "none"."""
    sms = config["sms"]
    if sms["backend"] == "modem":
        from huaico.sms.modem import Modem
        if not sms["port"]:
            raise ValueError('[sms] backend is modem but port is empty: set it, e.g. '
                             '"/dev/ttyUSB2"')
        return Modem(sms["port"], baudrate=sms["baudrate"], send_timeout=sms["cmgs_timeout_s"])
    if sms["backend"] == "spool":
        from huaico.sms.spool import GammuSpool
        return GammuSpool(str(config.path(sms["spool_dir"])) if hasattr(config, "path")
                          else sms["spool_dir"])
    if sms["backend"] != "none":
        raise ValueError("sms.backend must be none, modem or spool, not %r" % sms["backend"])
    return None


class Dispatcher:
    """Delivers the outbox; see the module docstring.

    database: a path (opened here, for the thread) or a sqlite_utils
    Database used only by this dispatcher. sms: an SMS backend or None;
    mqtt: an MqttLink or None."""

    def __init__(self, database, config, *, sms=None, mqtt=None, clock=time.time, rng=None,
                 poll_s=1.0, incoming_every_s=10.0, mqtt_timeout_s=5.0, counters=None):
        self.database = database if hasattr(database, "conn") else None
        self._path = None if self.database is not None else database
        self.config = config
        self.sms = sms
        self.mqtt = mqtt
        self.clock = clock
        self.rng = rng or random.Random()
        self.poll_s = poll_s
        self.incoming_every_s = incoming_every_s
        self.mqtt_timeout_s = mqtt_timeout_s
        self.counters = counters
        self.policy = Policy(config)
        self.status_reports = bool(((config or {}).get("sms") or {}).get("status_reports", True))
        self.groups = self.policy.groups
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._last_incoming = None
        self.health = SmsHealth(sms, config)
        # MQTT rows published by the committing thread (wake), by outbox id,
        # and the newest this thread published itself: an early publish that
        # selected a row before this thread took it must not send it again.
        self._early = {}
        self._claimed = collections.deque(maxlen=1000)
        # MQTT rows whose publish was not acked in time but is still the
        # link's to settle (connected, PUBACK not yet in), by outbox id: the
        # row's next attempt waits for that publish instead of sending a
        # second copy (a late PUBACK means the broker has the first).
        self._unsettled = {}
        self._early_lock = threading.Lock()
        # Outcomes of sends that happened but could not be committed, by
        # outbox id: (record function, its arguments, attempts, next try).
        self._unrecorded = {}

    # -- thread ---------------------------------------------------------------

    def start(self):
        self._thread = threading.Thread(target=self.run, name="dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout=30):
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self, outbox_ids=None, conn=None):
        """Called after a commit that queued messages: deliver now. With the
        committing thread's connection, the new MQTT rows are published on
        that thread at once (one thread hop less between a reading and the
        alert on the broker); this thread then waits for their acks and
        records them as it would its own publishes."""
        if outbox_ids and conn is not None and self.mqtt is not None:
            try:
                self._publish_early(conn, outbox_ids)
            except Exception:  # never the writer's problem: the pass publishes them
                log.exception("event=early_publish_failed")
        self._wake.set()

    def _publish_early(self, conn, outbox_ids):
        marks = ",".join("?" * len(outbox_ids))
        rows = conn.execute("SELECT id, recipient, body FROM outbox WHERE id IN (%s) "
                            "AND transport = 'mqtt' AND status = 'pending' AND attempts = 0 "
                            "ORDER BY id" % marks, list(outbox_ids)).fetchall()
        with self._early_lock:
            for row_id, topic, body in rows:
                if row_id not in self._claimed:  # the dispatcher may have been first
                    self._early[row_id] = self.mqtt.publish(topic, body.encode("utf-8"), qos=1)

    def _publish(self, row):
        """The row's Delivery: the early publish's, or its earlier publish's
        still awaiting a PUBACK, else a publish now."""
        with self._early_lock:
            delivery = self._early.pop(row["id"], None)
            if delivery is None:
                delivery = self._unsettled.pop(row["id"], None)
                if delivery is not None and delivery.done and not delivery.wait(0):
                    delivery = None  # failed for good: the link no longer holds it
            if delivery is None:
                delivery = self.mqtt.publish(row["recipient"], row["body"].encode("utf-8"),
                                             qos=1)
                # Claimed, so that a late early publish does not send it again.
                self._claimed.append(row["id"])
            return delivery

    def run(self):
        if self.database is None:
            self.database = db.open_db(self._path)
        while not self._stop.is_set():
            self._wake.clear()
            now = self.clock()
            try:
                self.watch_sms(now)
                self.step(now)
                if self.sms is not None and (self._last_incoming is None or
                                             now - self._last_incoming >= self.incoming_every_s):
                    self._last_incoming = now
                    self.poll_incoming(now)
            except Exception:
                log.exception("event=dispatch_pass_failed")
            self._wake.wait(self.poll_s)

    # -- SMS health --------------------------------------------------------------

    def watch_sms(self, now):
        """Try an absent modem, tell operators on MQTT once SMS delivery has
        failed for [sms] alert_after_s, and when it works again (SmsHealth)."""
        self.health.watch(now, self._health, self._release)

    def _release(self, now):
        # The modem is back: what waited for it goes now, not at its
        # backed-off time.
        with db.transaction(self.database) as conn:
            conn.execute("UPDATE outbox SET next_attempt = ? WHERE status = 'pending' "
                         "AND transport = 'sms' AND next_attempt > ?", [now, now])

    def _health(self, now, event):
        """Store the SMS state for `status` and `doctor`; with an event, queue
        the operators' MQTT message in the same transaction."""
        state = "ok" if self.health.down_since is None else "failing"
        try:
            with db.transaction(self.database) as conn:
                conn.execute(
                    "INSERT INTO health (name, state, since, detail, updated) "
                    "VALUES ('sms', ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET "
                    "state = excluded.state, since = excluded.since, "
                    "detail = excluded.detail, updated = excluded.updated",
                    [state, self.health.down_since, self.health.error, now])
                if event is not None:
                    alerts.queue_gateway_alert(conn, self.config, event, self.health.error,
                                               self.health.down_since, now)
        except sqlite3.Error as exc:
            log.warning("event=health_not_stored error=%s", exc)
        if event is not None:
            self._wake.set()

    def sms_state(self):
        """("none" | "ok" | "failing", seconds failing or None, why)."""
        return self.health.state(self.clock())

    # -- one pass ---------------------------------------------------------------

    def step(self, now):
        """One pass over the pending outbox; returns {outcome: count}."""
        conn = self.database.conn
        cursor = conn.execute(
            "SELECT id, alert_id, transport, recipient, grp, level, language, body, attempts, "
            "next_attempt, hold, copies, inflight, concat_ref, parts, created "
            "FROM outbox WHERE status = 'pending' ORDER BY id")
        names = [column[0] for column in cursor.description]
        rows = [dict(zip(names, row)) for row in cursor.fetchall()]
        # MQTT first: a publish takes a broker round trip, an SMS seconds,
        # and machines downstream (sirens, dashboards) should not wait for
        # the modem. Order within each recipient is kept (a stable sort).
        rows.sort(key=lambda row: row["transport"] != "mqtt")
        blocked = set()
        done = {}
        published = []
        for row in rows:
            key = (row["transport"], row["recipient"])
            # One message per topic in flight: its outcome decides whether
            # the next may go (order per topic, one retry per topic).
            if published and (row["transport"] != "mqtt" or
                              any(key == (r["transport"], r["recipient"])
                                  for r, _ in published)):
                self._settle(published, now, done, blocked)
                published = []
            if row["id"] in self._unrecorded:
                # Sent already: only its outcome waits for the database.
                retrying = self._retrying(row["id"])
                outcome = self._record_again(row["id"], now)
                done[outcome] = done.get(outcome, 0) + 1
                if retrying:
                    blocked.add(key)
                continue
            if key in blocked:
                continue
            if self.policy.expired(row, now):
                outcome = self._record(self._expired, row, now)
                done[outcome] = done.get(outcome, 0) + 1
                continue
            hold = self._policy_hold(conn, row, now)
            if hold:
                if row["hold"] != hold:
                    self._show_hold(conn, row["id"], hold)
                done[hold] = done.get(hold, 0) + 1
                continue
            if row["next_attempt"] > now:
                blocked.add(key)
                continue
            if row["transport"] == "mqtt":
                # Published now, settled together: one commit for the lot.
                published.append((row, self._publish(row)))
                continue
            outcome = self._attempt(row, now)
            done[outcome] = done.get(outcome, 0) + 1
            if outcome == "retry" or self._retrying(row["id"]):
                blocked.add(key)
        if published:
            self._settle(published, now, done, blocked)
        return done

    def _settle(self, published, now, done, blocked):
        """Wait for the broker's acks of the MQTT rows published in this pass
        and record them: the acked in one transaction, the rest for retry
        (and what follows them on their topic, to keep its order)."""
        acked = []
        for row, delivery in published:
            key = (row["transport"], row["recipient"])
            if key not in blocked and delivery.wait(self.mqtt_timeout_s):
                acked.append(row)
                continue
            blocked.add(key)
            if not delivery.done:
                self._unsettled[row["id"]] = delivery
            outcome = self._record(self._retry, row, now,
                                   "broker did not ack (link down or slow)")
            done[outcome] = done.get(outcome, 0) + 1
        if not acked:
            return
        try:
            with db.transaction(self.database) as conn:
                for row in acked:
                    self._mark_sent(conn, row, now, [])
                db.add_counters(conn, {"messages_sent": len(acked)})
        except sqlite3.Error:
            for row in acked:
                self._record(self._sent, row, now, [])
            return
        done["sent"] = done.get("sent", 0) + len(acked)

    @staticmethod
    def _show_hold(conn, outbox_id, hold):
        # Only shown to operators: a locked database must not stop the pass.
        try:
            conn.execute("UPDATE outbox SET hold = ? WHERE id = ?", [hold, outbox_id])
        except sqlite3.Error as exc:
            log.warning("event=hold_not_stored outbox=%d error=%s", outbox_id, exc)

    def _policy_hold(self, conn, row, now):
        # Without a backend a row waits, unchanged and uncounted, for the
        # operator to configure one: that is not a delivery failure.
        if row["transport"] == "mqtt":
            return "" if self.mqtt is not None else "no_mqtt"
        if self.sms is None:
            return "no_sms_backend"
        return self.health.hold() or self.policy.hold(conn, row, now)

    def _attempt(self, row, now):
        if row["transport"] == "sms" and row["inflight"] and row["copies"] >= 2:
            return self._record(self._unconfirmed, row, now)
        try:
            refs = self._send(row, now)
        except SmsError as exc:
            detail = "%s%s" % (exc, " (parts accepted: %s)" % ",".join(exc.sent_refs)
                               if exc.sent_refs else "")
            return self._record(self._retry if exc.retryable else self._failed,
                                row, now, detail)
        except _NotDelivered as exc:
            if str(exc) == "superseded":
                return "superseded"
            return self._record(self._retry, row, now, str(exc))
        except Exception as exc:  # a port that vanished, a broken backend: try later
            log.exception("event=send_error outbox=%d", row["id"])
            return self._record(self._retry, row, now, repr(exc))
        return self._record(self._sent, row, now, refs)

    def _record(self, function, row, now, *args):
        """Commit an attempt's outcome; when the database refuses (full,
        locked), keep it to commit later, so that what the modem accepted
        is not sent again."""
        if row["transport"] == "sms" and self.sms is not None:
            if function == self._sent:
                self.health.ok(now, self._health)
            elif function == self._retry:
                self.health.fault(now, args[0], self._health)
        try:
            return function(row, now, *args)
        except sqlite3.Error as exc:
            delay = self.policy.delay(1, self.rng)
            self._unrecorded[row["id"]] = (function, row, args, 1, now + delay)
            if self.counters is not None:
                self.counters.add("outcome_not_stored")
            log.error("event=outcome_not_stored outbox=%d outcome=%s retry_in_s=%.1f error=%s",
                      row["id"], function.__name__.strip("_"), delay, exc)
            return "unrecorded"

    def _retrying(self, outbox_id):
        """Whether the row's outcome kept in memory is a retry: it waits for
        its next attempt, and its recipient's later rows behind it, though
        the database does not say so yet."""
        return self._unrecorded.get(outbox_id, (None,))[0] == self._retry

    def _record_again(self, outbox_id, now):
        function, row, args, tries, due = self._unrecorded[outbox_id]
        if now < due:
            return "unrecorded"
        try:
            outcome = function(row, now, *args)
        except sqlite3.Error as exc:
            delay = self.policy.delay(tries + 1, self.rng)
            self._unrecorded[outbox_id] = (function, row, args, tries + 1, now + delay)
            log.error("event=outcome_not_stored outbox=%d tries=%d retry_in_s=%.1f error=%s",
                      outbox_id, tries + 1, delay, exc)
            return "unrecorded"
        del self._unrecorded[outbox_id]
        log.info("event=outcome_stored outbox=%d tries=%d", outbox_id, tries + 1)
        return outcome

    def _sent(self, row, now, refs):
        with db.transaction(self.database) as conn:
            self._mark_sent(conn, row, now, refs)
            db.add_counters(conn, {"messages_sent": 1})
        return "sent"

    def _mark_sent(self, conn, row, now, refs):
        conn.execute("UPDATE outbox SET status = 'sent', sent = ?, refs = ?, "
                     "attempts = attempts + 1, hold = '', last_error = NULL, inflight = 0, "
                     "parts = NULL WHERE id = ? AND status = 'pending'",
                     [now, json.dumps(refs), row["id"]])
        self._log(conn, row, now, "sent", None, refs)
        log.info("event=message_sent outbox=%d transport=%s to=%s alert=%s refs=%s",
                 row["id"], row["transport"], row["recipient"], row["alert_id"], refs)

    def _unconfirmed(self, row, now):
        # The second copy was in flight when the gateway stopped: a third
        # would break the promise of at most two. Its parts may all have
        # gone out; the operator is told that nobody knows.
        detail = "second copy in flight at a crash: delivery unconfirmed, not sent again"
        with db.transaction(self.database) as conn:
            conn.execute("UPDATE outbox SET status = 'sent', sent = ?, inflight = 0, "
                         "hold = '', last_error = ? WHERE id = ?", [now, detail, row["id"]])
            self._log(conn, row, now, "unconfirmed", detail, None)
            db.add_counters(conn, {"messages_unconfirmed": 1})
        log.error("event=message_unconfirmed outbox=%d to=%s alert=%s", row["id"],
                  row["recipient"], row["alert_id"])
        return "unconfirmed"

    def _send(self, row, now):
        if row["transport"] == "sms":
            if self.sms is None:
                raise _NotDelivered("no SMS backend configured ([sms] backend)")
            return self._send_sms(row, now)
        if row["transport"] == "mqtt":
            if self.mqtt is None:
                raise _NotDelivered("MQTT is not enabled")
            delivery = self.mqtt.publish(row["recipient"], row["body"].encode("utf-8"), qos=1)
            if not delivery.wait(self.mqtt_timeout_s):
                raise _NotDelivered("broker did not ack (link down or slow)")
            return []
        raise _NotDelivered("unknown transport %r" % row["transport"])

    def _send_sms(self, row, now):
        """Mark the copy in flight, then send what of it the modem has not
        accepted yet; the references of all its parts."""
        copies, parts, reference = sms_send.next_copy(row)
        if row["inflight"]:
            log.warning("event=message_repeat outbox=%d to=%s alert=%s", row["id"],
                        row["recipient"], row["alert_id"])
        try:
            with db.transaction(self.database) as conn:
                taken = conn.execute(
                    "UPDATE outbox SET copies = ?, inflight = 1, concat_ref = ?, parts = ? "
                    "WHERE id = ? AND status = 'pending'",
                    [copies, reference, json.dumps(parts), row["id"]]).rowcount
            if not taken:
                # A newer state of the alert replaced it since this pass read it.
                raise _NotDelivered("superseded")
        except sqlite3.Error as exc:
            # A warning must not wait for the disk: sent without the mark,
            # it is still guarded in memory; only a crash before its outcome
            # is stored could then repeat it unmarked.
            log.error("event=inflight_not_stored outbox=%d error=%s", row["id"], exc)
        row.update(copies=copies, inflight=1, concat_ref=reference, parts=json.dumps(parts))
        try:
            return sms_send.send(self.sms, row, self.groups, self.status_reports, copies, parts,
                                 reference)
        except SmsError as exc:
            row["parts"] = json.dumps(exc.sent_refs)
            raise

    def _expired(self, row, now):
        detail = "test message not sent within %.0f s" % self.policy.test_expiry_s
        with db.transaction(self.database) as conn:
            conn.execute("UPDATE outbox SET status = 'expired', hold = '', last_error = ? "
                         "WHERE id = ? AND status = 'pending'", [detail, row["id"]])
            self._log(conn, row, now, "expired", detail, None)
        log.warning("event=message_expired outbox=%d to=%s", row["id"], row["recipient"])
        return "expired"

    def _retry(self, row, now, detail):
        attempts = row["attempts"] + 1
        delay = self.policy.delay(attempts, self.rng)
        with db.transaction(self.database) as conn:
            conn.execute("UPDATE outbox SET attempts = ?, next_attempt = ?, hold = 'retry', "
                         "last_error = ?, inflight = 0, parts = ? WHERE id = ?",
                         [attempts, now + delay, detail, row["parts"], row["id"]])
            self._log(conn, row, now, "retry", detail, None)
            db.add_counters(conn, {"message_retries": 1})
        log.warning("event=message_retry outbox=%d to=%s attempt=%d in_s=%.1f error=%s",
                    row["id"], row["recipient"], attempts, delay, detail)
        return "retry"

    def _failed(self, row, now, detail):
        with db.transaction(self.database) as conn:
            conn.execute("UPDATE outbox SET status = 'failed', attempts = attempts + 1, "
                         "hold = '', last_error = ?, inflight = 0, parts = ? WHERE id = ?",
                         [detail, row["parts"], row["id"]])
            self._log(conn, row, now, "failed", detail, None)
            db.add_counters(conn, {"messages_failed": 1})
            # Nobody at this number will be warned: the next group must know now.
            sms_send.escalate_failed(conn, self.config, row, now, detail)
        log.error("event=message_failed outbox=%d to=%s alert=%s error=%s",
                  row["id"], row["recipient"], row["alert_id"], detail)
        return "failed"

    @staticmethod
    def _log(conn, row, now, outcome, detail, refs):
        conn.execute("INSERT INTO delivery_log (outbox_id, time, outcome, detail, refs) "
                     "VALUES (?, ?, ?, ?, ?)",
                     [row["id"], now, outcome, detail, json.dumps(refs) if refs else None])

    # -- incoming ---------------------------------------------------------------

    def poll_incoming(self, now):
        """Acknowledgements and delivery reports from the SMS backend
        (huaico.alerts.acks.take_incoming: stored, committed, then deleted)."""
        return acks.take_incoming(self.sms, lambda: db.transaction(self.database),
                                  self.config, now)


class _NotDelivered(Exception):
    """A delivery that did not happen and may later (no ack, no backend)."""
