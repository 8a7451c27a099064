"""The hub's dispatcher: exactly one sender of the city's outbox, whatever the number of workers.

Every hub worker runs one, but for each transport only the holder of its
session-scoped PostgreSQL advisory lock sends: every worker competes for
MQTT's, only workers with an SMS backend (a modem on their machine) for
SMS's. The others try the locks every poll_s and one of them takes over
within that time when the holder's connection ends (a worker killed with
kill -9: the server drops its session and the lock with it). The holder
also claims the rows it sends with `SELECT ... FOR UPDATE SKIP LOCKED`, so
that even two dispatchers (a session the server has not yet noticed is
dead) never take the same row. One sender keeps each topic's and each
number's messages in order. A pass takes the due rows in id order, BATCH
at a time, each row once.

MQTT rows are published QoS 1 on the central broker while their rows are
locked, and marked sent in the same transaction once the broker acked
them: a dispatcher killed between the broker's ack and its commit leaves
them pending, and the next one publishes them again (at least once, as
the gateway's MQTT path; the copy carries the same CAP identifier, and
sent_by and delivery_log say which worker sent what).

SMS rows (only when the hub has an SMS backend) follow a gateway's
policies and its rule for what a modem accepted (gateway/alerts/dispatch.py),
from the same [alerts] and [[groups]] keys with the same defaults:
- quiet hours, the hourly per-recipient rate limit and test expiry are
  huaico.alerts.policy's, the module a gateway's dispatcher uses; each is
  decided just before the row's send, so the rate limit counts the SMS
  this pass sent before it. A held row stays pending with "quiet" or
  "rate" in its hold column and counts under that name in step()'s
  outcomes, as at a gateway; the next pass looks at it again;
- the copy is marked in flight and committed before the modem gets it; a
  row found in flight after a crash is sent once more with the language's
  repeat mark, and a second copy found in flight is not sent a third time;
- it goes to the modem through huaico.alerts.sms_send, a gateway's code:
  the group's shift_table, a multipart send resumed at its failed part
  (outbox.parts), and a permanent failure of a warning or emergency
  escalating the alert at once, under the engine's lock as any write;
- a row waiting for its retry holds its recipient's later rows (topic or
  number) behind it, in order, as at a gateway: a pass claims pending rows
  whether due or not, so that it sees the waiting one;
- huaico.alerts.sms_health watches the modem, as a gateway's: an absent one
  holds SMS rows ("sms_absent") and, once delivery has failed for [sms]
  alert_after_s, operators are told on MQTT (the hub has no health table).
  Then the holder gives the SMS lock up, so that a worker whose modem
  works takes the rows over within poll_s; it takes the lock again only
  once its own modem is back. With every modem away the lock goes round
  once per alert_after_s, each holder telling operators of its own.
Rows wait while no worker has a backend for their transport.

The SMS-lock holder also reads the modem's replies and delivery reports
every incoming_every_s (huaico.alerts.acks.take_incoming, as a gateway):
an "OK 42" from a group's number acknowledges hub alert 42, recorded in
the hub's `incoming` table under the engine's lock (gateway/hub/rules.py)
so that it never lands inside an evaluation; the backend deletes the
messages only after that commit, and one read again after a kill -9 is
recognised as a repeat.

The dispatcher wakes on NOTIFY huaico_outbox, sent by the commit that
queued messages (gateway/hub/rules.py), and every poll_s otherwise.
"""
import json
import logging
import random
import threading
import time

from huaico.alerts import acks, lifecycle as alerts, sms_send
from huaico.alerts.sms_health import SmsHealth
from huaico.alerts.policy import Policy
from huaico.hub.operator import EngineBusy, HubRules
from huaico.hub.rules import CHANNEL
from huaico.hub.rules_store import PgEngineStore
from huaico.sms.backend import SmsError

log = logging.getLogger("huaico.hub")

_LOCK = "SELECT pg_try_advisory_lock(hashtext('huaico-hub-dispatch-' || %s))"
_UNLOCK = "SELECT pg_advisory_unlock(hashtext('huaico-hub-dispatch-' || %s))"
_CLAIM = """
    SELECT id, alert_id, transport, recipient, grp, level, language, body, attempts, copies,
           inflight, concat_ref, parts, hold, next_attempt, created
    FROM outbox WHERE status = 'pending' AND transport = ANY(%s)
    AND id > %s ORDER BY id LIMIT %s FOR UPDATE SKIP LOCKED"""
_FIELDS = ("id", "alert_id", "transport", "recipient", "grp", "level", "language", "body",
           "attempts", "copies", "inflight", "concat_ref", "parts", "hold", "next_attempt",
           "created")
BATCH = 200


class HubDispatcher:
    """Sends the hub's outbox when it holds the dispatch lock; start(), stop()."""

    def __init__(self, connect, worker_id, mqtt=None, sms=None, *, config=None, poll_s=1.0,
                 incoming_every_s=10.0, mqtt_timeout_s=5.0, clock=time.time):
        self.connect = connect
        self.worker_id = worker_id
        self.mqtt = mqtt
        self.sms = sms
        self.config = config
        self.policy = Policy(config)
        self.health = SmsHealth(sms, config)
        self.status_reports = bool(((config or {}).get("sms") or {}).get("status_reports", True))
        self.poll_s = poll_s
        self.incoming_every_s = incoming_every_s
        self.mqtt_timeout_s = mqtt_timeout_s
        self.clock = clock
        self.rng = random.Random()
        self.transports = [name for name, backend in (("mqtt", mqtt), ("sms", sms))
                           if backend is not None]
        self.holding = []  # the transports whose lock this dispatcher holds
        self.handed_over = False  # gave the SMS lock up while its modem was away
        self.counts = {}
        self._last_incoming = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, name="hub-dispatch", daemon=True)
        self._thread.start()

    def stop(self, timeout=30):
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def wake(self):
        self._wake.set()

    def _run(self):
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None or conn.closed:
                    conn = self.connect()
                    conn.autocommit = True
                    self.holding = []
                self.take_locks(conn)
                self._wake.clear()
                if self.holding:
                    now = self.clock()
                    if "sms" in self.holding:
                        self.watch_sms(conn, now)
                    self.step(conn, now)
                    if "sms" in self.holding and (self._last_incoming is None or
                                                  now - self._last_incoming >=
                                                  self.incoming_every_s):
                        self._last_incoming = now
                        self.poll_incoming(conn, now)
                if not self._wake.is_set() and not self._stop.is_set():
                    # psycopg keeps a notification that came during a query
                    # for this wait (with no notify handler set).
                    for _ in conn.notifies(timeout=self.poll_s, stop_after=1):
                        pass
            except Exception as exc:  # psycopg.Error, a lost connection
                log.error("event=hub_dispatch_failed error=%r", exc)
                if conn is not None:
                    conn.close()
                conn = None
                self._stop.wait(self.poll_s)
        if conn is not None:
            conn.close()

    def take_locks(self, conn):
        """Try the dispatch lock of each transport this worker has a backend
        for (conn: autocommit, the session that keeps them)."""
        for transport in self.transports:
            if transport == "sms" and self.handed_over:
                if self.health.absent():
                    continue
                self.handed_over = False
            if transport not in self.holding and conn.execute(_LOCK, [transport]).fetchone()[0]:
                if not self.holding:
                    conn.execute("LISTEN %s" % CHANNEL)
                self.holding.append(transport)
                log.info("event=hub_dispatcher_active worker=%s transport=%s",
                         self.worker_id, transport)

    def step(self, conn, now):
        """One pass over the due rows of the transports held; {outcome:
        count}, as a gateway's Dispatcher.step (held rows under "quiet" and
        "rate")."""
        done = {}
        after = 0
        # (transport, recipient) whose earlier row waits for its retry: their
        # later rows wait behind it, in order, as at a gateway. Rows not due
        # are claimed too, so that they are seen.
        blocked = set()
        while not self._stop.is_set():
            with conn.transaction():
                rows = [dict(zip(_FIELDS, row)) for row in conn.execute(
                    _CLAIM, [self.holding, after, BATCH]).fetchall()]
                mqtt = [row for row in rows if row["transport"] == "mqtt" and
                        not _waits(row, now, blocked)]
                if mqtt:
                    self._send_mqtt(conn, mqtt, now, done, blocked)
            for row in rows:
                if row["transport"] == "sms":
                    _count(done, self._send_sms(conn, row, now, blocked))
            if len(rows) < BATCH:
                break
            after = rows[-1]["id"]
        for outcome, count in done.items():
            self.counts[outcome] = self.counts.get(outcome, 0) + count
        return done

    def watch_sms(self, conn, now):
        """The SMS-lock holder's watch of its modem, as a gateway's (SmsHealth)."""
        self.health.watch(now, self._recorder(conn), lambda now: conn.execute(
            "UPDATE outbox SET next_attempt = %s WHERE status = 'pending' "
            "AND transport = 'sms' AND next_attempt > %s", [now, now]))
        if self.health.alerted and self.health.hold():
            self.hand_over(conn)

    def hand_over(self, conn):
        """Give the SMS lock up: this worker's modem has been away for
        alert_after_s and operators were told; another worker's may work."""
        conn.execute(_UNLOCK, ["sms"])
        self.holding.remove("sms")
        self.handed_over = True
        log.warning("event=hub_sms_handed_over worker=%s error=%s", self.worker_id,
                    self.health.error)

    def _recorder(self, conn):
        """SmsHealth's record function: the hub has no health table, so only
        an event is stored, as the operators' MQTT message; NOTIFY wakes
        the MQTT-lock holder, which may be another worker."""
        def record(now, event):
            if event is None:
                return
            with conn.transaction():
                if alerts.queue_gateway_alert(PgEngineStore(conn), self.config, event,
                                              self.health.error, self.health.down_since,
                                              now):
                    conn.execute("NOTIFY %s" % CHANNEL)
        return record

    def poll_incoming(self, conn, now):
        """The modem's replies and delivery reports, recorded under the
        engine's lock; handle_sms's (action, alert id) of each reply."""
        return acks.take_incoming(self.sms, lambda: HubRules(conn).write(), self.config, now,
                                  {"worker": self.worker_id})

    # -- MQTT ----------------------------------------------------------------------

    def _send_mqtt(self, conn, rows, now, done, blocked):
        published = []
        for row in rows:
            published.append((row, self.mqtt.publish(row["recipient"],
                                                     row["body"].encode("utf-8"), qos=1)))
        for row, delivery in published:
            key = ("mqtt", row["recipient"])
            if key not in blocked and delivery.wait(self.mqtt_timeout_s):
                _count(done, self._sent(conn, row, now, []))
                continue
            # Not acked: this one and the rest of its topic wait, in order.
            blocked.add(key)
            _count(done, self._retry(conn, row, now, "broker did not ack (link down or slow)"))

    # -- SMS -----------------------------------------------------------------------

    def _send_sms(self, conn, row, now, blocked):
        """Send one claimed SMS row unless a policy holds it or its turn has
        not come; its outcome (None: waits behind an earlier row or for its
        own retry, uncounted, as at a gateway)."""
        if (row["transport"], row["recipient"]) in blocked:
            return None
        if self.policy.expired(row, now):
            detail = "test message not sent within %.0f s" % self.policy.test_expiry_s
            with conn.transaction():
                conn.execute("UPDATE outbox SET status = 'expired', hold = '', last_error = %s "
                             "WHERE id = %s AND status = 'pending'", [detail, row["id"]])
                self._log(conn, row, now, "expired", detail, None)
            log.warning("event=message_expired outbox=%d to=%s", row["id"], row["recipient"])
            return "expired"
        hold = self.health.hold() or self.policy.hold(PgEngineStore(conn), row, now)
        if hold:
            if row["hold"] != hold:  # shown to operators (`alerts show`, the outbox)
                conn.execute("UPDATE outbox SET hold = %s WHERE id = %s AND status = 'pending'",
                             [hold, row["id"]])
            return hold
        if _waits(row, now, blocked):
            return None
        if row["inflight"] and (row["copies"] or 1) >= 2:
            # A third copy would break the promise of at most two.
            with conn.transaction():
                conn.execute("UPDATE outbox SET status = 'sent', sent = %s, inflight = 0, "
                             "hold = '', last_error = %s, sent_by = %s WHERE id = %s",
                             [now, "second copy in flight at a crash: unconfirmed",
                              self.worker_id, row["id"]])
                self._log(conn, row, now, "unconfirmed", None, None)
            return "unconfirmed"
        copies, parts, reference = sms_send.next_copy(row)
        if row["inflight"]:
            log.warning("event=message_repeat outbox=%d to=%s", row["id"], row["recipient"])
        with conn.transaction():
            taken = conn.execute(
                "UPDATE outbox SET copies = %s, inflight = 1, concat_ref = %s, parts = %s "
                "WHERE id = %s AND status = 'pending'",
                [copies, reference, json.dumps(parts), row["id"]]).rowcount
        if not taken:
            return "superseded"  # since it was claimed
        try:
            refs = sms_send.send(self.sms, row, self.policy.groups, self.status_reports, copies,
                                 parts, reference)
        except SmsError as exc:
            # The parts the modem accepted, so that a retry resumes after them.
            row["parts"] = json.dumps(exc.sent_refs)
            detail = "%s%s" % (exc, " (parts accepted: %s)" % ",".join(exc.sent_refs)
                               if exc.sent_refs else "")
            if exc.retryable:
                self.health.fault(now, detail, self._recorder(conn))
                blocked.add((row["transport"], row["recipient"]))
                with conn.transaction():
                    return self._retry(conn, row, now, detail)
            return self._failed(conn, row, now, detail)
        self.health.ok(now, self._recorder(conn))
        with conn.transaction():
            return self._sent(conn, row, now, refs)

    # -- outcomes --------------------------------------------------------------------

    def _sent(self, conn, row, now, refs):
        conn.execute("UPDATE outbox SET status = 'sent', sent = %s, refs = %s, "
                     "attempts = attempts + 1, hold = '', last_error = NULL, inflight = 0, "
                     "parts = NULL, sent_by = %s WHERE id = %s AND status = 'pending'",
                     [now, json.dumps(refs), self.worker_id, row["id"]])
        self._log(conn, row, now, "sent", None, refs)
        log.info("event=message_sent outbox=%d transport=%s to=%s alert=%s worker=%s",
                 row["id"], row["transport"], row["recipient"], row["alert_id"], self.worker_id)
        return "sent"

    def _retry(self, conn, row, now, detail):
        attempts = row["attempts"] + 1
        delay = self.policy.delay(attempts, self.rng)
        conn.execute("UPDATE outbox SET attempts = %s, next_attempt = %s, hold = 'retry', "
                     "last_error = %s, inflight = 0, parts = %s WHERE id = %s",
                     [attempts, now + delay, detail, row.get("parts"), row["id"]])
        self._log(conn, row, now, "retry", detail, None)
        log.warning("event=message_retry outbox=%d to=%s attempt=%d in_s=%.1f error=%s",
                    row["id"], row["recipient"], attempts, delay, detail)
        return "retry"

    def _failed(self, conn, row, now, detail):
        """A permanent failure: the row failed and, for a warning or an
        emergency, its alert escalated at once, in one transaction under
        the engine's lock (gateway/hub/rules.py), as an operator's write.
        When that lock is stuck (EngineBusy), the row is still marked failed
        (left in flight, it would be sent again as a repeat) and the alert
        escalates on the engine's timer instead."""
        try:
            with HubRules(conn).write() as store:
                self._mark_failed(conn, row, now, detail)
                if sms_send.escalate_failed(store, self.config, row, now, detail):
                    conn.execute("NOTIFY %s" % CHANNEL)
        except EngineBusy as exc:
            log.error("event=escalation_deferred outbox=%d alert=%s error=%s", row["id"],
                      row["alert_id"], exc)
            with conn.transaction():
                self._mark_failed(conn, row, now, detail)
        log.error("event=message_failed outbox=%d to=%s alert=%s error=%s",
                  row["id"], row["recipient"], row["alert_id"], detail)
        return "failed"

    def _mark_failed(self, conn, row, now, detail):
        conn.execute("UPDATE outbox SET status = 'failed', attempts = attempts + 1, "
                     "hold = '', last_error = %s, inflight = 0, parts = %s WHERE id = %s",
                     [detail, row["parts"], row["id"]])
        self._log(conn, row, now, "failed", detail, None)

    def _log(self, conn, row, now, outcome, detail, refs):
        conn.execute("INSERT INTO delivery_log (outbox_id, time, outcome, detail, refs, worker) "
                     "VALUES (%s, %s, %s, %s, %s, %s)",
                     [row["id"], now, outcome, detail, json.dumps(refs) if refs else None,
                      self.worker_id])


def _count(done, outcome):
    if outcome is not None:
        done[outcome] = done.get(outcome, 0) + 1


def _waits(row, now, blocked):
    """Whether the row's turn has not come: an earlier row of its recipient
    waits (blocked), or its own retry is not due, which then blocks the
    recipient's later rows."""
    key = (row["transport"], row["recipient"])
    if key in blocked:
        return True
    if row["next_attempt"] > now:
        blocked.add(key)
        return True
    return False
