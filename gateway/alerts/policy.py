"""What holds an outgoing message back, the same at a gateway and at the hub.

Both dispatchers (gateway/alerts/dispatch.py over SQLite, gateway/hub/dispatch.py
over PostgreSQL) take these decisions from here, read from the same keys
with the same defaults ([alerts] and each [[groups]] quiet_hours), so a
message is held at the hub exactly when a gateway would hold it:

- quiet hours hold advisory SMS only, in the group's hours of the
  [alerts] timezone;
- the hourly rate limit holds advisory and watch SMS to a number that was
  sent rate_limit_per_hour SMS in the last hour (0: no limit);
- a warning, an emergency and their all-clear are never held back;
- a test message not gone out within test_expiry_s expires: a test that
  arrives hours later would mislead;
- a failed delivery waits backoff() before its next attempt.

A held row stays pending, the policy's name ("quiet", "rate") in its hold
column for operators; it is re-examined on every pass and goes out as soon
as the policy lets it, without blocking its recipient's other messages.
"""
import datetime

from huaico.alerts import lifecycle as alerts
from huaico.rules import store as engine_store

# Levels that quiet hours hold, and that the per-recipient rate limit holds.
QUIET_HELD = ("advisory",)
RATE_HELD = ("advisory", "watch")


def parse_quiet_hours(text):
    """(start_minute, end_minute) of the day from "22:00-06:00", or None."""
    if not text or text.strip().lower() in ("", "off", "none", "-"):
        return None
    try:
        start, end = text.split("-")
        minutes = []
        for part in (start, end):
            hours, mins = part.strip().split(":")
            minutes.append(int(hours) * 60 + int(mins))
    except ValueError:
        raise ValueError("quiet hours %r: use HH:MM-HH:MM, e.g. 22:00-06:00" % text) from None
    return tuple(minutes)


def in_quiet_hours(span, local):
    if span is None:
        return False
    start, end = span
    minute = local.hour * 60 + local.minute
    return start <= minute < end if start <= end else minute >= start or minute < end


def backoff(attempts, base, cap, rng):
    """Seconds before attempt number attempts+1: base * 2^(attempts-1), at most
    cap, scaled by a random factor in [0.5, 1) ("equal jitter")."""
    delay = min(cap, base * 2 ** max(0, attempts - 1))
    return delay * (0.5 + 0.5 * rng.random())


class Policy:
    """The delivery policy of one config; hold(), expired(), delay()."""

    def __init__(self, config):
        section = (config or {}).get("alerts") or {}
        self.retry_base_s = float(section.get("retry_base_s", 5))
        self.retry_max_s = float(section.get("retry_max_s", 600))
        self.rate_limit = int(section.get("rate_limit_per_hour", 12))
        self.test_expiry_s = float(section.get("test_expiry_s", 600))
        self.zone = alerts.zone(config)
        self.groups = alerts.groups(config)
        self._quiet = {name: parse_quiet_hours(group["quiet_hours"])
                       for name, group in self.groups.items()}

    def hold(self, conn, row, now):
        """"quiet" or "rate" when an SMS row must wait now, else "". conn: the
        dispatcher's connection or an EngineStore (the rate limit counts the
        number's SMS sent in the last hour)."""
        if row["transport"] != "sms":
            return ""
        level = row["level"]
        if level in QUIET_HELD:
            local = datetime.datetime.fromtimestamp(now, self.zone)
            if in_quiet_hours(self._quiet.get(row["grp"]), local):
                return "quiet"
        if level in RATE_HELD and self.rate_limit > 0 and \
                engine_store.of(conn).sms_sent_since(row["recipient"], now - 3600) \
                >= self.rate_limit:
            return "rate"
        return ""

    def expired(self, row, now):
        """A test message not gone out (nor in flight) within test_expiry_s."""
        return row["level"] == "test" and now - row["created"] > self.test_expiry_s \
            and not row["inflight"]

    def delay(self, attempts, rng):
        """Seconds before attempt number attempts+1."""
        return backoff(attempts, self.retry_base_s, self.retry_max_s, rng)
