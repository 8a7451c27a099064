"""How one SMS row of the outbox goes to the modem, the same at a gateway and at the hub.

Both dispatchers (gateway/alerts/dispatch.py over SQLite,
gateway/hub/dispatch.py over PostgreSQL) send through here, so that a
message reaches a phone in the same parts whichever tier sends it:

- the copy's concatenation reference is per row and copy, so consecutive
  messages (and a message and its repeat) never share one: a phone would
  join their parts;
- a multipart message whose later part failed resumes at that part under
  the same reference (outbox.parts holds the references of the parts the
  modem accepted), so the recipient does not get the first part again
  each retry; a copy sent again after a crash starts over, marked;
- the group's national shift table (its shift_table key) goes to the
  modem: the stored text kept its accents for it
  (huaico.alerts.templates.sms_form) and a Spanish alert stays one part;
- a permanent failure of a warning or an emergency escalates the alert at
  once: nobody at that number will be warned, and the next group must know
  now, not after the escalation timer.
"""
import json

from huaico.alerts import lifecycle as alerts, templates
from huaico.rules import store as engine_store
from huaico.sms.backend import SmsError

# Levels whose permanent delivery failure escalates the alert at once.
ESCALATE_ON_FAILURE = ("warning", "emergency")


def next_copy(row):
    """(copies, parts accepted, concatenation reference) of the copy about
    to go: the row's own when it resumes a multipart send, a new copy when
    the row was in flight at a crash (it may have gone out: once more)."""
    parts = json.loads(row["parts"]) if row["parts"] else []
    copies = row["copies"] or 1
    reference = row["concat_ref"]
    if row["inflight"]:
        copies, parts, reference = copies + 1, [], None
    if reference is None or not parts:
        reference = (row["id"] * 2 + copies - 1) % 256
    return copies, parts, reference


def send(sms, row, groups, status_reports, copies, parts, reference):
    """Send what of the copy the modem has not accepted yet; the references
    of all its parts. An SmsError carries in sent_refs every part accepted
    so far (the earlier attempts' too), for outbox.parts."""
    text = row["body"] if copies < 2 else templates.repeat(row["language"] or "en", row["body"])
    shift = (groups.get(row["grp"]) or {}).get("shift_table")
    try:
        refs = sms.send(row["recipient"], text, status_reports, reference=reference,
                        skip=len(parts), **({"shift": shift} if shift else {}))
    except SmsError as exc:
        exc.sent_refs = parts + list(exc.sent_refs)
        raise
    return parts + refs


def escalate_failed(conn, config, row, now, detail):
    """After a permanent failure of `row`: escalate its alert when it is a
    warning or an emergency still active and unacknowledged; the new outbox
    ids. conn: the transaction that marks the row failed (a SQLite
    connection or an EngineStore)."""
    if row["alert_id"] is None or row["level"] not in ESCALATE_ON_FAILURE:
        return []
    store = engine_store.of(conn)
    alert = store.alert(row["alert_id"])
    if alert is None or alert["acked"] is not None or alert["status"] != "active":
        return []
    return alerts.escalate(store, config, row["alert_id"], now,
                           "delivery to %s failed: %s" % (row["recipient"], detail))
