"""An SMS backend that hands messages to gammu-smsd through its `files`
service spool (gammu-smsd-files(7)), for gateways where gammu already owns
the modem.

Outgoing: one file per message in the outbox, named
OUT<priority><date>_<time>_<serial>_<number>_<note>.txt[d] so that gammu's
alphabetical scan sends higher priorities first, then oldest first; "d" asks
for a delivery report. The text is UTF-16 with a byte-order mark, which gammu
reads as Unicode whatever the daemon's locale (it guesses the charset of any
other file from the locale, which an init script may not set). It is written
under a dot-name, which gammu's scan skips, and renamed into place, so gammu
never sends half a message. gammu then moves the file to the sent or the
error folder under the same name: that name is the reference send() returns.
The daemon needs TransmitFormat = auto (the files service defaults to 7bit,
which would garble Spanish and Chinese alerts): see smsdrc().

Incoming: IN<date>_<time>_<serial>_<sender>_<part>.txt files from the inbox,
parts joined; the files stay in the inbox until the caller has stored the
message and calls delete_incoming() with their names, which moves them to
a `processed` folder.
"""
import collections
import datetime
import itertools
import logging
import os
import re
import uuid

from huaico.sms.backend import DeliveryReport, IncomingSms, SmsError

log = logging.getLogger("huaico.sms.spool")

_NUMBER = re.compile(r"^\+?[0-9]{1,20}$")
_INBOX_NAME = re.compile(
    r"^IN(\d{8})_(\d{6})_(\d{2})_(.+)_(\d{2})\.(txt|bin)$")
_BOM_BE = b"\xfe\xff"
_BOM_LE = b"\xff\xfe"


def smsdrc(spool_dir, gammu_section):
    """A gammu-smsd configuration for this spool; gammu_section is the
    [gammu] part (device, connection, model) for the modem at hand."""
    paths = {name: os.path.join(os.path.abspath(spool_dir), name) + os.sep
             for name in ("inbox", "outbox", "sent", "error")}
    return (
        "[gammu]\n%s\n\n[smsd]\nservice = files\n"
        "inboxpath = %s\noutboxpath = %s\nsentsmspath = %s\nerrorsmspath = %s\n"
        "inboxformat = unicode\noutboxformat = unicode\ntransmitformat = auto\n"
        % (gammu_section.strip(), paths["inbox"], paths["outbox"], paths["sent"],
           paths["error"]))


class GammuSpool:
    """The SMS backend on a gammu-smsd files spool in spool_dir (with inbox,
    outbox, sent, error folders, made if missing). priority is gammu's
    letter, A highest."""

    def __init__(self, spool_dir, priority="B"):
        if not re.fullmatch("[A-Z]", priority):
            raise ValueError("gammu priority is one letter A-Z")
        self.priority = priority
        self.dirs = {name: os.path.join(spool_dir, name)
                     for name in ("inbox", "outbox", "sent", "error", "processed")}
        for path in self.dirs.values():
            os.makedirs(path, exist_ok=True)
        self.counters = collections.Counter()
        self._serial = itertools.count()
        self._reported = set()

    def send(self, number, text, status_report=False, reference=None, skip=0):
        """Queue text for number; returns [file name], gammu's ID for it.
        One file is the whole message (gammu-smsd splits it): reference and
        skip, which a modem needs to resume a multipart message, do not apply."""
        if not _NUMBER.match(number):
            raise SmsError(None, "not a phone number: %r" % number, False)
        if not text:
            raise SmsError(None, "gammu-smsd cannot send an empty file", False)
        now = datetime.datetime.now()
        name = "OUT%s%s_%02d_%s_%s.txt%s" % (
            self.priority, now.strftime("%Y%m%d_%H%M%S"), next(self._serial) % 100, number,
            uuid.uuid4().hex[:12], "d" if status_report else "")
        try:
            data = _BOM_BE + text.encode("utf-16-be")
        except UnicodeEncodeError:
            raise SmsError(None, "text holds a lone surrogate", False) from None
        try:
            _atomic_write(self.dirs["outbox"], name, data)
        except OSError as exc:
            raise SmsError(None, "cannot write to the gammu outbox: %s" % exc, True) from None
        return [name]

    def status(self, ref):
        """queued, sent, failed or unknown (gammu deletes sent files when it
        has no SentSMSPath)."""
        for folder, state in (("outbox", "queued"), ("sent", "sent"), ("error", "failed")):
            if os.path.exists(os.path.join(self.dirs[folder], ref)):
                return state
        return "unknown"

    def delivery_reports(self):
        """What gammu did with queued files since the last call: "sent" when
        the network took it, "failed" when gammu gave up."""
        reports = []
        for folder, state in (("sent", "sent"), ("error", "failed")):
            for name in sorted(os.listdir(self.dirs[folder])):
                if not name.startswith("OUT") or (folder, name) in self._reported:
                    continue
                self._reported.add((folder, name))
                path = os.path.join(self.dirs[folder], name)
                when = datetime.datetime.fromtimestamp(os.path.getmtime(path),
                                                       datetime.timezone.utc)
                reports.append(DeliveryReport(name, _number_of(name), state, None, when))
        return reports

    def read_incoming(self):
        """Messages gammu received, parts joined, each with its files' names
        as refs. The files stay in the inbox until delete_incoming()."""
        groups = collections.defaultdict(dict)
        for name in sorted(os.listdir(self.dirs["inbox"])):
            match = _INBOX_NAME.match(name)
            if not match:
                continue
            date, clock, serial, sender, part, ext = match.groups()
            groups[(date, clock, serial, sender)][int(part)] = (name, ext)
        messages = []
        for (date, clock, _, sender), parts in sorted(groups.items()):
            texts = []
            for index in sorted(parts):
                name, ext = parts[index]
                with open(os.path.join(self.dirs["inbox"], name), "rb") as f:
                    texts.append(_decode_file(f.read(), ext))
            try:
                when = datetime.datetime.strptime(date + clock, "%Y%m%d%H%M%S")
            except ValueError:
                when = None
                self.counters["bad_inbox_time"] += 1
            refs = tuple(parts[index][0] for index in sorted(parts))
            messages.append(IncomingSms(sender, "".join(texts), when, refs))
        return messages

    def delete_incoming(self, refs):
        """Move the inbox files read_incoming() named to processed/, once the
        caller has stored their messages; a file already gone is no error."""
        for name in refs:
            if not _INBOX_NAME.match(name) or os.path.basename(name) != name:
                raise SmsError(None, "not a gammu inbox file name: %r" % name, False)
            try:
                os.replace(os.path.join(self.dirs["inbox"], name),
                           os.path.join(self.dirs["processed"], name))
            except FileNotFoundError:
                continue
            except OSError as exc:
                raise SmsError(None, "cannot move %s to processed: %s" % (name, exc),
                               True) from None

    def probe(self):
        """ok when every folder is writable; queued and failed counts."""
        info = {"ok": all(os.access(p, os.W_OK) for p in self.dirs.values()),
                "queued": 0, "failed": 0, "error": None}
        try:
            info["queued"] = sum(n.startswith("OUT") for n in os.listdir(self.dirs["outbox"]))
            info["failed"] = sum(n.startswith("OUT") for n in os.listdir(self.dirs["error"]))
        except OSError as exc:
            info["ok"], info["error"] = False, str(exc)
        return info


def _number_of(name):
    fields = name.split("_")
    return fields[3] if len(fields) >= 5 else ""


def _decode_file(data, ext):
    if ext == "bin":
        return data.decode("latin-1")  # 8-bit message, stored raw by gammu
    if data.startswith(_BOM_BE):
        return data[2:].decode("utf-16-be", "replace")
    if data.startswith(_BOM_LE):
        return data[2:].decode("utf-16-le", "replace")
    # InboxFormat = standard: the daemon's locale charset, UTF-8 on any
    # current system.
    return data.decode("utf-8", "replace")


def _atomic_write(directory, name, data):
    temp = os.path.join(directory, ".%s.tmp" % name)
    with open(temp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(temp, os.path.join(directory, name))
    # The rename itself must survive a power cut.
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    log.info("queued %s for gammu-smsd", name)
