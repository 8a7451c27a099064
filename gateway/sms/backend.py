"""The small interface every SMS backend offers, so the alert dispatcher need
not know whether a GSM modem (huaico.sms.modem) or a gammu-smsd spool
(huaico.sms.spool) carries its messages.

A backend has:
    send(number, text, status_report=False, reference=None, skip=0) -> list[str]
        references, one per part sent (see Modem.send for reference and skip)
    read_incoming() -> list[IncomingSms]
    delete_incoming(refs) -> None
    delivery_reports() -> list[DeliveryReport]
    probe() -> dict
and raises SmsError for every failure, with `retryable` telling the
dispatcher whether to try again later (network down, congestion, timeout) or
to give up and escalate (number unknown, message rejected, no SIM).

Received messages are taken in two steps so that none is lost in a crash:
read_incoming() hands messages out and leaves them where they are; the
caller stores them, commits, and only then calls delete_incoming() with the
refs of what it stored. A crash in between means a message is read twice,
which the caller recognises (huaico.alerts.acks keys each message), never lost.
"""
import datetime
from typing import NamedTuple, Protocol


class SmsError(Exception):
    """A send or modem operation failed.

    code: the +CMS / +CME error number, or None for a plain ERROR, a timeout
    or a local fault; text: what it means for a person; retryable: whether the
    same message may succeed later unchanged."""

    def __init__(self, code, text, retryable):
        super().__init__("SMS error %s: %s" % ("-" if code is None else code, text))
        self.code = code
        self.text = text
        self.retryable = retryable
        # References of parts already accepted before a multipart send failed:
        # the dispatcher logs them, since a resend will deliver them twice.
        self.sent_refs = []


class SmsTimeout(SmsError):
    """The modem did not answer in time; always retryable."""

    def __init__(self, text):
        super().__init__(None, text, True)


class IncomingSms(NamedTuple):
    """A received message, multipart already joined. time is the service
    centre's timestamp (timezone-aware) when the backend knows it; refs are
    the backend's own handles on the stored parts (SIM indexes, spool file
    names), opaque to the caller, to pass to delete_incoming() once stored."""
    number: str
    text: str
    time: datetime.datetime | None
    refs: tuple = ()


class DeliveryReport(NamedTuple):
    """What became of a sent part.

    ref: the reference send() returned for it; status: "delivered",
    "pending" (network still trying), "failed", or for a spool "sent" (handed
    to the network); code: TP-Status (TS 23.040 9.2.3.15) when known."""
    ref: str
    number: str
    status: str
    code: int | None
    time: datetime.datetime | None


class SmsBackend(Protocol):
    def send(self, number: str, text: str, status_report: bool = False,
             reference: int | None = None, skip: int = 0) -> list[str]: ...

    def read_incoming(self) -> list[IncomingSms]: ...

    def delete_incoming(self, refs) -> None: ...

    def delivery_reports(self) -> list[DeliveryReport]: ...

    def probe(self) -> dict: ...
