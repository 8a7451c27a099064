"""Whether SMS delivery works, the same at a gateway and at the hub.

Both dispatchers (gateway/alerts/dispatch.py, gateway/hub/dispatch.py) keep
one SmsHealth for their SMS backend. A modem that is absent (a USB modem
that enumerates late or was unplugged) is tried again on its own backoff
(Modem.ensure_open) while SMS rows wait with "sms_absent" in their hold
column: that is not a delivery failure, so they spend no attempts. When it
is back, what waited for it goes at once, not at its backed-off time. Once
delivery has failed (absent, or sends failing for retry) for [sms]
alert_after_s, operators are told on MQTT ("sms_delivery_failing", through
the outbox, lifecycle.queue_gateway_alert), and again when it works
("sms_delivery_restored"): a modem nobody watches must not fail silently.

Each tier stores the state its own way, through the `record(now, event)`
function its calls pass: a gateway in its health table (for `status` and
`doctor`), the hub only as the operators' MQTT message.
"""
import logging

log = logging.getLogger("huaico.dispatch")


class SmsHealth:
    """Since when SMS delivery has failed (down_since, None: working), why
    (error), and whether operators were told (alerted)."""

    def __init__(self, sms, config):
        self.sms = sms
        self.alert_after_s = float(((config or {}).get("sms") or {}).get("alert_after_s", 300))
        self.down_since = None
        self.error = None
        self.alerted = False

    def absent(self):
        ensure = getattr(self.sms, "ensure_open", None)
        return ensure is not None and not ensure()

    def hold(self):
        """"sms_absent" while the modem is known to be away, else ""."""
        return "sms_absent" if self.down_since is not None and self.absent() else ""

    def watch(self, now, record, release):
        """Try an absent modem, tell operators once delivery has failed for
        alert_after_s; release(now) sends what waited once the modem is back."""
        if self.sms is None:
            return
        was_absent = self.down_since is not None and "absent" in (self.error or "")
        if self.absent():
            self.fault(now, "modem port %s absent: %s" % (self.sms.url, self.sms.open_error),
                       record)
        elif was_absent:
            release(now)
            self.ok(now, record)
        if self.down_since is not None and not self.alerted and \
                now - self.down_since >= self.alert_after_s:
            self.alerted = True
            record(now, "sms_delivery_failing")
            log.error("event=sms_delivery_failing since_s=%.0f error=%s",
                      now - self.down_since, self.error)

    def fault(self, now, detail, record):
        """A send failed for retry, or the modem is absent."""
        self.error = detail
        if self.down_since is None:
            self.down_since = now
            record(now, None)

    def ok(self, now, record):
        """An SMS went out (or the modem is back)."""
        if self.down_since is None:
            return
        event = "sms_delivery_restored" if self.alerted else None
        self.down_since, self.error, self.alerted = None, None, False
        record(now, event)
        log.info("event=sms_delivery_ok")

    def state(self, now):
        """("none" | "ok" | "failing", seconds failing or None, why)."""
        if self.sms is None:
            return "none", None, None
        if self.down_since is None:
            return "ok", None, None
        return "failing", now - self.down_since, self.error
