"""Acknowledgements: an SMS reply "ACK 42" (or "OK 42", "SI 42") from a
number in one of the recipient groups, or `huaico alerts ack 42`.

An acknowledgement stops the alert's escalation. Only numbers listed in
[[groups]] may acknowledge: anyone can text a modem's number, and a stranger
silencing an escalation is exactly the failure this guards against. Every
incoming message is recorded in `incoming` with what was done with it, so
an operator can see ignored ones.
"""
import logging
import re

from gateway import alerts

log = logging.getLogger("huaico.acks")

_ACK = re.compile(r"^\s*(?:ACK|OK|S[IÍ])\b[\s:#.,-]*(\d{1,12})\b", re.IGNORECASE)
# A number written without its country code still matches on this many
# trailing digits (Peruvian mobiles have 9).
_SUFFIX_DIGITS = 9


def parse(text):
    """The alert id an acknowledgement names, or None."""
    match = _ACK.match(text or "")
    return int(match.group(1)) if match else None


def sender_group(config, number):
    """The group name a number belongs to, or None."""
    number = alerts.normalize_number(number)
    digits = number.lstrip("+")
    for group in alerts.groups(config).values():
        for known in group["numbers"]:
            if known == number:
                return group["name"]
            if (not number.startswith("+") or not known.startswith("+")) and \
                    len(digits) >= _SUFFIX_DIGITS and \
                    known.lstrip("+")[-_SUFFIX_DIGITS:] == digits[-_SUFFIX_DIGITS:]:
                return group["name"]
    return None


def handle_sms(conn, config, number, text, now):
    """Record one incoming SMS and act on it inside the caller's transaction;
    returns (action, alert_id): action is acked, already_acked,
    unknown_alert, not_an_ack or unknown_number."""
    group = sender_group(config, number)
    alert_id = parse(text)
    if group is None:
        action, detail = "unknown_number", "sender is in no group"
        log.warning("event=sms_ignored number=%s reason=unknown_number text=%r", number, text)
    elif alert_id is None:
        action, detail = "not_an_ack", "group %s" % group
        log.info("event=sms_not_ack number=%s group=%s text=%r", number, group, text)
    else:
        try:
            fresh = alerts.acknowledge(conn, alert_id, "%s (%s)" % (number, group), now)
        except alerts.AlertError:
            action, detail = "unknown_alert", "group %s" % group
        else:
            action = "acked" if fresh else "already_acked"
            detail = "group %s" % group
    conn.execute("INSERT INTO incoming (time, number, text, action, alert_id, detail) "
                 "VALUES (?, ?, ?, ?, ?, ?)",
                 [now, number, text, action, alert_id if group else None, detail])
    return action, alert_id
