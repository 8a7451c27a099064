"""Acknowledgements: an SMS reply "ACK 42" (or "OK 42", "SI 42") from a
number in one of the recipient groups, or `huaico alerts ack 42`; and
take_incoming(), which reads a backend's replies and delivery reports for
both dispatchers: a gateway's (its SQLite) and the hub's SMS-lock holder
(the city's PostgreSQL, through the same EngineStore queries).

An acknowledgement stops the alert's escalation. Only numbers listed in
[[groups]] may acknowledge: anyone can text a modem's number, and a stranger
silencing an escalation is exactly the failure this guards against. Every
incoming message is recorded in `incoming` with what was done with it, so
an operator can see ignored ones.

The backend deletes a message only after the transaction that recorded it
has committed, so after a crash the same message can come back: each is
recorded under a key (message_key) and a message already recorded is
reported as a repeat and not acted on again.
"""
import hashlib
import json
import logging
import re

from huaico.alerts import lifecycle as alerts
from huaico.rules import store as engine_store
from huaico.sms.backend import SmsError

log = logging.getLogger("huaico.acks")

_ACK = re.compile(r"^\s*(?:ACK|OK|S[IÍ])\b[\s:#.,-]*(\d{1,12})\b", re.IGNORECASE)


def parse(text):
    """The alert id an acknowledgement names, or None."""
    match = _ACK.match(text or "")
    return int(match.group(1)) if match else None


def sender_group(config, number):
    """The group name a number belongs to, or None. Both sides are compared
    in E.164 after normalising with the gateway's country ([sms]
    country_code), nothing looser: trailing digits that happen to match a
    leader's number do not make a stranger a leader."""
    number = alerts.normalize_number(number, alerts.country_code(config))
    if not number.startswith("+"):
        return None
    for group in alerts.groups(config).values():
        if number in group["numbers"]:
            return group["name"]
    return None


def message_key(number, text, sent, refs=()):
    """What makes a received message the same message when read again: its
    sender, the service centre's timestamp and its text. Without a
    timestamp the backend's refs stand in for it (a spool file name is
    unique; a SIM index only while the message sits on the SIM); with
    neither there is no key and no repeat can be recognised."""
    if sent is not None:
        when = sent.isoformat()
    elif refs:
        when = "refs:" + ",".join(str(ref) for ref in refs)
    else:
        return None
    return hashlib.sha256("\x1f".join((number, when, text)).encode(
        "utf-8", "surrogatepass")).hexdigest()


def handle_sms(conn, config, number, text, now, sent=None, refs=()):
    """Record one incoming SMS and act on it inside the caller's transaction;
    returns (action, alert_id): action is acked, already_acked,
    unknown_alert, not_an_ack, unknown_number, or repeat for a message
    recorded before (read again after a crash), which changes nothing.
    sent is the service centre's timestamp, refs the backend's handles."""
    store = engine_store.of(conn)
    alert_id = parse(text)
    key = message_key(number, text, sent, refs)
    if key is not None and store.incoming_seen(key):
        log.info("event=sms_repeat number=%s text=%r", number, text)
        return "repeat", alert_id
    group = sender_group(config, number)
    if group is None:
        action, detail = "unknown_number", "sender is in no group"
        log.warning("event=sms_ignored number=%s reason=unknown_number text=%r", number, text)
    elif alert_id is None:
        action, detail = "not_an_ack", "group %s" % group
        log.info("event=sms_not_ack number=%s group=%s text=%r", number, group, text)
    else:
        try:
            sender = alerts.normalize_number(number, alerts.country_code(config))
            fresh = alerts.acknowledge(store, alert_id, "%s (%s)" % (sender, group), now)
        except alerts.AlertError:
            action, detail = "unknown_alert", "group %s" % group
        else:
            action = "acked" if fresh else "already_acked"
            detail = "group %s" % group
    store.add_incoming({"time": now, "number": number, "text": text, "action": action,
                        "alert_id": alert_id if group else None, "detail": detail,
                        "sent": sent.isoformat() if sent is not None else None,
                        "sms_key": key})
    return action, alert_id


def take_incoming(backend, transaction, config, now, log_fields=None):
    """Acknowledgements and delivery reports from an SMS backend; returns
    handle_sms's (action, alert_id) for each message.

    transaction() is a context manager yielding the connection or
    EngineStore to record them in: all of them in that one transaction,
    and only after its commit does the backend delete them. A failure
    before the commit leaves them with the backend for the next poll; one
    after it (the delete failing, or a crash) has them read again and
    recognised as repeats. log_fields: columns of the store's delivery_log
    beyond the gateway's (the hub's worker)."""
    try:
        messages = backend.read_incoming()
        reports = backend.delivery_reports()
    except SmsError as exc:
        log.warning("event=sms_poll_failed error=%s", exc)
        return []
    results = []
    with transaction() as conn:
        store = engine_store.of(conn)
        for message in messages:
            results.append(handle_sms(store, config, message.number, message.text, now,
                                      message.time, message.refs))
        for report in reports:
            outbox_id = store.reported_message(report.ref)
            if outbox_id is not None:
                store.log_delivery(dict({
                    "outbox_id": outbox_id, "time": now, "outcome": "report_" + report.status,
                    "detail": "TP-Status %s" % report.code, "refs": json.dumps([report.ref])},
                    **(log_fields or {})))
    refs = [ref for message in messages for ref in message.refs]
    if refs:
        try:
            backend.delete_incoming(refs)
        except SmsError as exc:
            log.warning("event=sms_delete_failed refs=%s error=%s", refs, exc)
    return results
