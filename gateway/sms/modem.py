"""A GSM modem (SIM800 / SIM7600 class) driven with 3GPP TS 27.005 / 27.007
AT commands in PDU mode, as an SMS backend (huaico.sms.backend).

The port is opened with pyserial's serial_for_url, so a device path, a pty,
`loop://` or `spy://` (hexdump for field debugging) all work. There is no
reader thread: each command reads its own answer under the modem's lock, and
unsolicited result codes (RING, +CMTI, +CDS, ...) met on the way, or found
waiting before the next command, are set aside instead of being mistaken
for the answer. Every read has a deadline.
"""
import calendar
import collections
import logging
import random
import threading
import time

import serial

from huaico.sms import pdu as sms_pdu
from huaico.sms.backend import DeliveryReport, IncomingSms, SmsError, SmsTimeout

log = logging.getLogger("huaico.sms.modem")

_CTRL_Z = b"\x1a"
_ESC = b"\x1b"

# +CMS ERROR (27.005 3.2.5; 1-127 are RP causes from TS 24.011 E.2, 128-255
# TP-FCS from TS 23.040 9.2.3.22): meaning, and whether the same message may
# go through later. A cause not listed is retryable unless it is a TP-FCS
# (the message itself was refused).
CMS_ERRORS = {
    1: ("unassigned (unallocated) number", False),
    8: ("operator determined barring", False),
    10: ("call barred", False),
    17: ("network failure", True),
    21: ("short message transfer rejected", False),
    22: ("congestion", True),
    27: ("destination out of service", True),
    28: ("unidentified subscriber", False),
    29: ("facility rejected", False),
    30: ("unknown subscriber", False),
    38: ("network out of order", True),
    41: ("temporary failure", True),
    42: ("congestion", True),
    47: ("resources unavailable, unspecified", True),
    50: ("requested facility not subscribed", False),
    69: ("requested facility not implemented", False),
    81: ("invalid short message transfer reference value", True),
    95: ("invalid message, unspecified", False),
    96: ("invalid mandatory information", False),
    97: ("message type non-existent or not implemented", False),
    98: ("message not compatible with short message protocol state", True),
    99: ("information element non-existent or not implemented", False),
    111: ("protocol error, unspecified", True),
    127: ("interworking, unspecified", True),
    144: ("data coding scheme (alphabet) not supported", False),
    176: ("TPDU not supported", False),
    192: ("SC busy", True),
    193: ("no SC subscription", False),
    194: ("SC system failure", True),
    195: ("invalid SME address", False),
    196: ("destination SME barred", False),
    197: ("SM rejected - duplicate SM", False),
    198: ("TP-VPF not supported", False),
    199: ("TP-VP not supported", False),
    208: ("SIM SMS storage full", True),
    210: ("error in MS", True),
    211: ("memory capacity exceeded", True),
    212: ("SIM application toolkit busy", True),
    255: ("unspecified error cause", True),
    300: ("ME failure", True),
    301: ("SMS service of ME reserved", True),
    302: ("operation not allowed", False),
    303: ("operation not supported", False),
    304: ("invalid PDU mode parameter", False),
    305: ("invalid text mode parameter", False),
    310: ("SIM not inserted", False),
    311: ("SIM PIN required", False),
    312: ("PH-SIM PIN required", False),
    313: ("SIM failure", False),
    314: ("SIM busy", True),
    315: ("SIM wrong", False),
    316: ("SIM PUK required", False),
    317: ("SIM PIN2 required", False),
    318: ("SIM PUK2 required", False),
    320: ("memory failure", True),
    321: ("invalid memory index", False),
    322: ("memory full", True),
    330: ("SMSC address unknown", False),
    331: ("no network service", True),
    332: ("network timeout", True),
    340: ("no +CNMA acknowledgement expected", False),
    500: ("unknown error", True),
}

# +CME ERROR (27.007 9.2).
CME_ERRORS = {
    0: ("phone failure", True),
    3: ("operation not allowed", False),
    4: ("operation not supported", False),
    10: ("SIM not inserted", False),
    11: ("SIM PIN required", False),
    12: ("SIM PUK required", False),
    13: ("SIM failure", False),
    14: ("SIM busy", True),
    15: ("SIM wrong", False),
    16: ("incorrect password", False),
    20: ("memory full", True),
    21: ("invalid index", False),
    30: ("no network service", True),
    31: ("network timeout", True),
    32: ("network not allowed - emergency calls only", True),
    100: ("unknown", True),
}

# 27.007 7.2 <stat> of +CREG.
REGISTRATION = {
    0: "not registered", 1: "home", 2: "searching", 3: "denied", 4: "unknown", 5: "roaming",
}

# Lines a modem may send at any time; +CDS and +CMT carry a PDU on the next line.
_URC_PREFIXES = ("RING", "+CMTI:", "+CDS:", "+CDSI:", "+CMT:", "NO CARRIER", "+CLIP:",
                 "RDY", "+CFUN:", "+CPIN:", "Call Ready", "SMS Ready", "+CREG:",
                 "NORMAL POWER DOWN", "UNDER-VOLTAGE", "OVER-VOLTAGE", "PB DONE")


def cms_error(code):
    text, retryable = CMS_ERRORS.get(
        code, ("unlisted cause %d" % code, not 128 <= code <= 255))
    return SmsError(code, text, retryable)


def cme_error(code):
    text, retryable = CME_ERRORS.get(code, ("unlisted cause %d" % code, True))
    return SmsError(code, text, retryable)


def csq_to_dbm(rssi):
    """27.007 8.5: 0 is -113 dBm or less, 31 is -51 or more, 99 unknown."""
    if rssi == 99 or not 0 <= rssi <= 31:
        return None
    return -113 + 2 * rssi


class Modem:
    """An SMS backend on a GSM modem.

    command_timeout bounds ordinary commands; send_timeout bounds the wait
    for +CMGS after the PDU (the SIM800 manual gives AT+CMGS up to 60 s).
    reset_command is what reset() sends (AT+CFUN=1,1 restarts SIM800 and
    SIM7600; some boards want a power-key pulse instead). partial_after_s is
    how long parts of a concatenated message wait on the SIM for the rest
    (see read_incoming)."""

    def __init__(self, url, baudrate=115200, command_timeout=5.0, send_timeout=60.0,
                 reset_command="AT+CFUN=1,1", ready_timeout=60.0, validity_minutes=24 * 60,
                 partial_after_s=3600.0):
        self.command_timeout = command_timeout
        self.send_timeout = send_timeout
        self.reset_command = reset_command
        self.ready_timeout = ready_timeout
        self.validity_minutes = validity_minutes
        self.partial_after_s = partial_after_s
        self.counters = collections.Counter()
        self.url = url
        self._baudrate = baudrate
        self._port = None
        # Why the port is not open, and when to try again: a USB modem that
        # enumerates late or was unplugged is retried with backoff, and the
        # gateway runs on meanwhile (huaico.alerts.dispatch reports it).
        self.open_error = None
        self._open_failures = 0
        self._open_due = 0.0
        self._closed = False
        self._lock = threading.RLock()
        self._buf = bytearray()
        self._reports = []
        self._incoming = []
        # Parts routed straight to us (+CMT) exist only here; stored parts
        # are joined afresh on every read, since they stay on the SIM.
        self._reassembler = sms_pdu.Reassembler()
        # When each incomplete stored message was first seen (monotonic).
        self._incomplete_since = {}
        self._ready = False
        # The concatenation reference varies per message so that a phone
        # never joins parts of two alerts; a random start survives restarts.
        self._concat_ref = random.randrange(256)
        self.ensure_open()

    def close(self):
        """Close the port for good: a closed Modem does not reopen it (the
        backoff reopening is for a port that vanished under a running one)."""
        with self._lock:
            self._closed = True
            self.open_error = "closed"
            if self._port is not None:
                self._port.close()
                self._port = None

    def ensure_open(self):
        """True when the port is open; otherwise try to open it when its
        backoff (1 s doubling to 60 s) is due. Absence is no exception here."""
        with self._lock:
            if self._port is not None:
                return True
            if self._closed or time.monotonic() < self._open_due:
                return False
            try:
                self._port = serial.serial_for_url(self.url, baudrate=self._baudrate,
                                                   timeout=0.05,
                                                   write_timeout=self.command_timeout)
            except (serial.SerialException, OSError) as exc:
                self._open_failures += 1
                self._open_due = time.monotonic() + min(60.0, 2.0 ** (self._open_failures - 1))
                if self.open_error is None:
                    log.warning("event=modem_absent port=%s error=%s", self.url, exc)
                self.open_error = str(exc)
                return False
            if self.open_error is not None:
                log.info("event=modem_present port=%s after_tries=%d", self.url,
                         self._open_failures)
            self.open_error = None
            self._open_failures = 0
            self._ready = False
            self._buf.clear()
            return True

    def _lost(self, exc):
        """The port failed under us (unplugged): closed, to be reopened."""
        self._ready = False
        try:
            self._port.close()
        except (serial.SerialException, OSError):
            pass
        self._port = None
        self.open_error = "port failed: %s" % exc
        return SmsError(None, "serial port failed: %s" % exc, True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- the backend interface -------------------------------------------

    def send(self, number, text, status_report=False, reference=None, skip=0, shift=None):
        """Send text to number; the TP-MR of each part, as strings, in order.

        shift names a national language single shift table
        (huaico.sms.pdu.SHIFT_TABLES, a recipient group's shift_table).

        reference is the concatenation reference (a fresh one when None);
        skip leaves out the first parts: the caller that recorded which parts
        of a message the modem accepted before one failed resends the rest
        under the same reference, so the phone still joins them."""
        with self._lock:
            if reference is None:
                self._concat_ref = (self._concat_ref + 1) % 256
                reference = self._concat_ref
            try:
                pdus = sms_pdu.submit_pdus(number, text, reference, status_report,
                                           self.validity_minutes, shift=shift)
            except sms_pdu.PduError as exc:
                raise SmsError(None, str(exc), False) from None
            self._ensure_ready()
            refs = []
            for hex_pdu, length in pdus[skip:]:
                try:
                    refs.append(str(self._send_part(hex_pdu, length)))
                except SmsError as exc:
                    exc.sent_refs = refs
                    raise
            return refs

    def read_incoming(self):
        """Complete messages stored on the SIM, multipart joined, each with
        the SIM indexes of its parts as refs, plus any routed straight to us
        (+CMT, no refs). Nothing is deleted here: the caller stores the
        messages, then calls delete_incoming(refs), so a crash in between
        costs a second read, never a message.

        Parts of an incomplete message stay on the SIM until the rest
        arrives; after partial_after_s without it, what has come is handed
        out with "[...]" for each missing part, because parts that never
        come would fill the SIM's few slots and stop all reception. Status
        reports, and PDUs that cannot be read, are deleted at once."""
        with self._lock:
            self._ensure_ready()
            lines = self._command("AT+CMGL=4", expect="+CMGL:", pdu_lines=True)
            messages, self._incoming = self._incoming, []
            # A fresh reassembler each read: every part is still on the SIM.
            reassembler = sms_pdu.Reassembler()
            found = collections.defaultdict(lambda: ({}, []))  # key -> ({seq: part}, indexes)
            for header, pdu in lines:
                index, length = _cmgl_fields(header)
                try:
                    decoded = sms_pdu.decode_pdu(pdu, length)
                except sms_pdu.PduError as exc:
                    # Deleted: a PDU that cannot be read would fill the
                    # SIM's few slots and stop all reception.
                    self.counters["bad_pdu"] += 1
                    log.warning("unreadable stored SMS at index %s (%s): %s", index, exc, pdu)
                    self._delete(index)
                    continue
                if isinstance(decoded, sms_pdu.StatusReport):
                    self._take(decoded)
                    self._delete(index)
                    continue
                done = reassembler.add(decoded)
                key = _concat_key(decoded)
                if key is None:
                    refs = () if index is None else (index,)
                else:
                    parts, indexes = found[key]
                    parts[decoded.concat[2]] = decoded
                    if index is not None:
                        indexes.append(index)
                    refs = tuple(found.pop(key)[1]) if done is not None else None
                if done is not None:
                    messages.append(IncomingSms(*done, refs=refs))
            messages += self._partials(found, reassembler.pending())
            return messages

    def delete_incoming(self, refs):
        """Delete stored messages by the SIM indexes read_incoming() gave
        (after the caller has stored them); one already gone is no error."""
        with self._lock:
            self._ensure_ready()
            for index in refs:
                self._delete(index)

    def delivery_reports(self):
        """Status reports (+CDS) received since the last call."""
        with self._lock:
            if self._port is not None and self._port.is_open:
                self._drain()
            reports, self._reports = self._reports, []
            return reports

    def probe(self):
        """Health as a dict: ok, rssi, dbm, sim, sim_ready, registration,
        registered, roaming, operator, error."""
        with self._lock:
            info = {"ok": False, "rssi": None, "dbm": None, "sim": None, "sim_ready": False,
                    "registration": None, "registered": False, "roaming": False,
                    "operator": None, "error": None}
            try:
                self._ensure_ready()
                info["ok"] = True
                info["sim"] = self._query_sim()
                info["sim_ready"] = info["sim"] == "READY"
                fields = _fields(self._command("AT+CSQ", expect="+CSQ:")[0])
                info["rssi"] = int(fields[0])
                info["dbm"] = csq_to_dbm(info["rssi"])
                stat = int(_fields(self._command("AT+CREG?", expect="+CREG:")[0])[1])
                info["registration"] = REGISTRATION.get(stat, "unknown")
                info["registered"] = stat in (1, 5)
                info["roaming"] = stat == 5
                cops = _fields(self._command("AT+COPS?", expect="+COPS:")[0])
                info["operator"] = cops[2].strip('"') if len(cops) >= 3 else None
            except (SmsError, ValueError, IndexError) as exc:
                info["error"] = str(exc)
            return info

    def network_time(self):
        """The GSM network's time (NITZ) as seconds since 1970 UTC, from the
        modem's clock (AT+CCLK?, 27.007 8.15), or None when the answer is no
        time at all. AT+CLTS=1 first asks a SIM800-class modem to set that
        clock from the network (SIM7600 does by itself and answers ERROR,
        which is fine). A modem that never heard the network's time answers
        its power-up default (2004 or 1980): huaico.clock refuses it as
        implausible, so no check of its own is made here."""
        with self._lock:
            self._ensure_ready()
            try:
                self._command("AT+CLTS=1")
            except SmsError as exc:
                if exc.code is not None:
                    raise
            line = self._command("AT+CCLK?", expect="+CCLK:")[0]
        return parse_cclk(line)

    # -- modem control -----------------------------------------------------

    def reset(self):
        """Restart the modem (reset_command) and wait until it answers with a
        ready SIM; then set it up again."""
        with self._lock:
            self._ready = False
            self._write(self.reset_command + "\r")
            deadline = time.monotonic() + self.ready_timeout
            # The modem may answer OK before restarting, or restart at once.
            time.sleep(0.2)
            while True:
                try:
                    self._setup()
                    if self._query_sim() == "READY":
                        return
                except SmsError as exc:
                    if time.monotonic() >= deadline:
                        raise SmsTimeout("modem not ready %.0f s after reset: %s"
                                         % (self.ready_timeout, exc.text)) from None
                if time.monotonic() >= deadline:
                    raise SmsTimeout("SIM not ready %.0f s after reset" % self.ready_timeout)
                time.sleep(0.2)

    def _ensure_ready(self):
        if not self.ensure_open():
            raise SmsError(None, "modem port %s absent: %s" % (self.url, self.open_error), True)
        if not self._ready:
            self._setup()

    def _setup(self):
        """Echo off, numeric errors, PDU mode, status reports as +CDS."""
        self._ready = False
        # A gateway that died between AT+CMGS and the PDU's Ctrl-Z left the
        # modem waiting for PDU text: ESC ends that (27.005 3.5.1) and is
        # ignored in command mode; what it answers is dropped as stale.
        self._write(_ESC)
        time.sleep(0.1)
        self._drain()
        self._command("AT", timeout=min(self.command_timeout, 2.0))
        self._command("ATE0")
        self._command("AT+CMEE=1")
        self._command("AT+CMGF=0")
        # 27.005 3.4.1: mt=1 stores incoming SMS and says +CMTI; ds=1 routes
        # SMS-STATUS-REPORTs straight to us as +CDS.
        self._command("AT+CNMI=2,1,0,1,0")
        self._ready = True

    def _query_sim(self):
        try:
            return self._command("AT+CPIN?", expect="+CPIN:")[0].split(":", 1)[1].strip()
        except SmsError as exc:
            if exc.code in (10, 310):
                return "NOT INSERTED"
            raise

    # -- the AT exchange -----------------------------------------------------

    def _send_part(self, hex_pdu, length):
        self._drain()
        self._write("AT+CMGS=%d\r" % length)
        deadline = time.monotonic() + self.command_timeout
        while True:
            line = self._line_or_timeout(deadline, "no > prompt after AT+CMGS", prompt=True)
            if line == ">":
                break
            self._final_or_none(line)
        self._write(hex_pdu + "\x1a")
        deadline = time.monotonic() + self.send_timeout
        reference = None
        while True:
            line = self._line_or_timeout(deadline, "no +CMGS within %.0f s" % self.send_timeout)
            if line.startswith("+CMGS:"):
                reference = int(line.split(":", 1)[1].split(",")[0])
            elif self._final_or_none(line) and reference is not None:
                return reference

    def _line_or_timeout(self, deadline, what, prompt=False):
        try:
            return self._read_line(deadline, prompt)
        except SmsTimeout:
            # ESC leaves the prompt without sending (27.005 3.5.1); the modem
            # is then re-synchronised before its next use.
            self._write(_ESC)
            self._ready = False
            self.counters["timeout"] += 1
            raise SmsTimeout(what) from None

    def _command(self, command, expect=None, timeout=None, pdu_lines=False):
        """Run one command; the lines starting with `expect` (with the PDU line
        that follows each, as pairs, when pdu_lines), or raise SmsError."""
        self._drain()
        self._write(command + "\r")
        deadline = time.monotonic() + (timeout or self.command_timeout)
        lines = []
        while True:
            try:
                line = self._read_line(deadline)
            except SmsTimeout:
                self._ready = False
                self.counters["timeout"] += 1
                raise SmsTimeout("no answer to %s" % command) from None
            if expect and line.startswith(expect):
                if pdu_lines:
                    lines.append((line, self._read_line(deadline)))
                else:
                    lines.append(line)
            elif self._final_or_none(line):
                if expect and not lines and not pdu_lines:
                    raise SmsError(None, "%s answered OK without %s" % (command, expect), True)
                return lines
            elif line == command:
                pass  # echo, before ATE0 took effect or after a modem restart

    def _final_or_none(self, line):
        """True for OK; raises for an error result; False for anything else
        (after handing unsolicited codes to _urc)."""
        if line == "OK":
            return True
        if line == "ERROR":
            raise SmsError(None, "modem answered ERROR", True)
        if line.startswith("+CMS ERROR:"):
            raise _coded(line, cms_error)
        if line.startswith("+CME ERROR:"):
            raise _coded(line, cme_error)
        if line.startswith(_URC_PREFIXES):
            self._urc(line, time.monotonic() + self.command_timeout)
        return False

    def _urc(self, line, deadline):
        self.counters["urc"] += 1
        if line.startswith(("+CDS:", "+CMT:")):
            try:
                pdu = self._read_line(deadline)
                length = int(line.rsplit(",", 1)[-1].split(":")[-1])
                decoded = sms_pdu.decode_pdu(pdu, length)
            except (SmsTimeout, ValueError) as exc:
                self.counters["bad_pdu"] += 1
                log.warning("unreadable %s: %s", line, exc)
                return
            self._take(decoded)
        elif line.startswith("+CMTI:"):
            self.counters["cmti"] += 1
        else:
            log.debug("unsolicited: %s", line)

    def _delete(self, index):
        if index is None:
            return
        try:
            self._command("AT+CMGD=%d" % index)
        except SmsError as exc:
            if exc.code != 321:  # invalid memory index: already deleted
                raise

    def _partials(self, found, pending):
        """Incomplete messages whose first part was seen partial_after_s ago
        or more, as IncomingSms with "[...]" for what is missing."""
        now = time.monotonic()
        self._incomplete_since = {key: self._incomplete_since.get(key, now) for key in pending}
        out = []
        for key, since in self._incomplete_since.items():
            if now - since < self.partial_after_s:
                continue
            parts, indexes = found[key]
            text = "".join(parts[seq].text if seq in parts else "[...]"
                           for seq in range(1, key[2] + 1))
            text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
            first = parts[min(parts)]
            self.counters["partial_sms"] += 1
            log.warning("event=sms_partial number=%s parts=%d/%d", key[0], len(parts), key[2])
            out.append(IncomingSms(first.number, text, first.time, tuple(indexes)))
        return out

    def _take(self, decoded):
        if isinstance(decoded, sms_pdu.StatusReport):
            self._reports.append(DeliveryReport(
                str(decoded.reference), decoded.number, decoded.outcome, decoded.status,
                decoded.discharge or decoded.time))
            return
        done = self._reassembler.add(decoded)
        if done is not None:
            self._incoming.append(IncomingSms(*done))

    def _drain(self):
        """Handle what arrived between commands: URCs are kept, anything else
        is a late answer to a command that timed out, and is dropped."""
        deadline = time.monotonic()
        while True:
            try:
                waiting = self._port.in_waiting
                if waiting:
                    self._buf += self._port.read(waiting)
            except (serial.SerialException, OSError) as exc:
                raise self._lost(exc) from None
            if b"\n" not in self._buf:
                return
            line = self._read_line(deadline + self.command_timeout)
            if line.startswith(_URC_PREFIXES):
                self._urc(line, time.monotonic() + self.command_timeout)
            else:
                self.counters["stale_line"] += 1
                log.info("dropped stale line from the modem: %r", line)

    def _read_line(self, deadline, prompt=False):
        """The next non-empty line, or ">" for the CMGS prompt (which has no
        line end), before deadline, else SmsTimeout."""
        while True:
            while self._buf[:1] in (b"\r", b"\n"):
                del self._buf[0]
            if prompt and self._buf[:1] == b">":
                del self._buf[:2 if self._buf[1:2] == b" " else 1]
                return ">"
            end = self._buf.find(b"\n")
            if end >= 0:
                line = bytes(self._buf[:end]).decode("ascii", "replace").strip()
                del self._buf[:end + 1]
                if line:
                    return line
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise SmsTimeout("modem silent")
            self._port.timeout = min(remaining, 0.1)
            try:
                chunk = self._port.read(max(1, self._port.in_waiting))
            except (serial.SerialException, OSError) as exc:
                raise self._lost(exc) from None
            self._buf += chunk

    def _write(self, data):
        if isinstance(data, str):
            data = data.encode("ascii")
        if self._port is None and not self.ensure_open():
            raise SmsError(None, "modem port %s absent: %s" % (self.url, self.open_error), True)
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise self._lost(exc) from None


def parse_cclk(line):
    """Seconds since 1970 UTC from '+CCLK: "yy/MM/dd,hh:mm:ss±zz"' (local
    time and its offset from UTC in quarter hours, 27.007 8.15), or None."""
    text = line.split(":", 1)[1].strip().strip('"')
    try:
        date, clock = text.split(",")
        year, month, day = (int(x) for x in date.split("/"))
        sign = -1 if "-" in clock else 1
        hms, quarters = clock.replace("-", "+").split("+")
        hour, minute, second = (int(x) for x in hms.split(":"))
        local = calendar.timegm((2000 + year, month, day, hour, minute, second, 0, 0, 0))
    except ValueError:
        return None
    return local - sign * int(quarters) * 900


def _coded(line, table):
    value = line.split(":", 1)[1].strip()
    try:
        return table(int(value))
    except ValueError:
        return SmsError(None, value, True)  # verbose errors (AT+CMEE=2)


def _fields(line):
    return [f.strip() for f in line.split(":", 1)[1].split(",")]


def _concat_key(deliver):
    """The key sms_pdu.Reassembler files a part under (sender, reference,
    total), or None for a message in one part."""
    if deliver.concat is None or deliver.concat[1] == 1:
        return None
    return deliver.number, deliver.concat[0], deliver.concat[1]


def _cmgl_fields(header):
    """+CMGL: <index>,<stat>,[<alpha>],<length> -> (index, length)."""
    fields = _fields(header)
    try:
        return int(fields[0]), int(fields[-1])
    except (ValueError, IndexError):
        return None, None

