"""A SIM800 / SIM7600-class GSM modem on a pty, for tests and `huaico demo`.

Shipped with the gateway so that `huaico demo` can show SMS leaving a modem
on any machine; the tests import it through tests/modem_emulator.py. It runs in a thread on the master side of os.openpty(); the gateway opens the
slave path with pyserial as it would /dev/ttyUSB2. It speaks the AT commands
the gateway uses (27.005 / 27.007) with echo on at power-up as real modems
do, the AT+CMGS "> " prompt flow, and checks and records every SMS-SUBMIT PDU
it is given. Its SMS-DELIVER and SMS-STATUS-REPORT PDUs are built here, on
bit strings, independently of huaico.sms.pdu, so that one bug cannot hide in
both sides. Faults are injected by the test: +CMS ERROR for the next N sends,
plain ERROR, silence, lost network registration, a restart, a failing
AT+CMGD.

Each accepted PDU's record carries the wall-clock time just before its +CMGS
answer was written ("time") and its recipient ("number"); `on_sent(record)`,
when set, is called with it (on the emulator's thread: keep it short). Both
happen before the answer goes out, so whoever has read +CMGS finds the record
in `sent`. decode_submit()
reads a record's text back, again without huaico.sms.pdu.
"""
import datetime
import os
import select
import threading
import time
import tty

# TS 23.038 default alphabet (independent copy; 0x1B is the escape).
_GSM = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
        "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM_EXT = {"\f": 10, "^": 20, "{": 40, "}": 41, "\\": 47, "[": 60, "~": 61, "]": 62,
            "|": 64, "€": 101}
SMSC = "+51190000000"


def _septets(text):
    out = []
    for ch in text:
        if ch in _GSM_EXT:
            out += [27, _GSM_EXT[ch]]
        else:
            out.append(_GSM.index(ch))
    return out


def _pack(septets, fill):
    # Bits are written least significant first: build the bit string
    # reversed (most significant on the left), then cut it into octets.
    bits = "".join(format(s, "07b") for s in reversed(septets)) + "0" * fill
    bits = "0" * (-len(bits) % 8) + bits
    octets = [int(bits[i:i + 8], 2) for i in range(0, len(bits), 8)]
    return bytes(reversed(octets))


def _address(number):
    digits = number.lstrip("+")
    toa = "91" if number.startswith("+") else "81"
    padded = digits + ("F" if len(digits) % 2 else "")
    swapped = "".join(padded[i + 1] + padded[i] for i in range(0, len(padded), 2))
    return "%02X%s%s" % (len(digits), toa, swapped)


def _smsc_field():
    body = _address(SMSC)[2:]
    return "%02X%s" % (len(body) // 2, body)


def _timestamp(when):
    offset = int(when.utcoffset().total_seconds() // 900) if when.utcoffset() else 0
    digits = "%02d%02d%02d%02d%02d%02d" % (when.year % 100, when.month, when.day,
                                            when.hour, when.minute, when.second)
    swapped = "".join(digits[i + 1] + digits[i] for i in range(0, 12, 2))
    tz = "%02d" % abs(offset)
    tz_octet = int(tz[1] + tz[0], 16) | (0x08 if offset < 0 else 0)
    return swapped + "%02X" % tz_octet


def deliver_pdu(number, text, when, ucs2=False, concat=None):
    """An SMS-DELIVER PDU (with SMSC address) as a modem lists it."""
    udh = b""
    if concat:
        udh = bytes([5, 0, 3]) + bytes(concat)
    if ucs2:
        ud = udh + text.encode("utf-16-be")
        udl, dcs = len(ud), 0x08
    else:
        header_septets = -(-len(udh) * 8 // 7)
        septets = _septets(text)
        ud = udh + _pack(septets, header_septets * 7 - len(udh) * 8)
        udl, dcs = header_septets + len(septets), 0x00
    first = 0x04 | (0x40 if udh else 0)  # MTI=00 DELIVER, TP-MMS: no more
    tpdu = "%02X%s00%02X%s%02X%s" % (first, _address(number), dcs, _timestamp(when),
                                     udl, ud.hex().upper())
    return _smsc_field() + tpdu, len(tpdu) // 2


def status_report_pdu(reference, number, when, status=0):
    tpdu = "06%02X%s%s%s%02X" % (reference, _address(number), _timestamp(when),
                                 _timestamp(when), status)
    return _smsc_field() + tpdu, len(tpdu) // 2


def _unpack(data, count, skip_bits):
    # Septets are packed least significant bit first: read the octets as one
    # little-endian integer and take 7 bits at a time after the fill bits.
    bits = int.from_bytes(data, "little") >> skip_bits
    return [(bits >> (7 * i)) & 0x7F for i in range(count)]


def _gsm_text(septets):
    reverse_ext = {v: k for k, v in _GSM_EXT.items()}
    out = []
    escaped = False
    for s in septets:
        if escaped:
            out.append(reverse_ext.get(s, " "))
            escaped = False
        elif s == 27:
            escaped = True
        else:
            out.append(_GSM[s])
    return "".join(out)


def decode_submit(hex_pdu):
    """{"number", "text", "concat": (reference, total, part) or None} of an
    SMS-SUBMIT PDU (with its SMSC field), as the emulator received it."""
    data = bytes.fromhex(hex_pdu)
    t = data[1 + data[0]:]
    first = t[0]
    pos = 4 + (t[2] + 1) // 2
    dcs = t[pos + 1]
    pos += 2 + {0: 0, 2: 1, 1: 7, 3: 7}[(first >> 3) & 0x03]
    udl = t[pos]
    ud = t[pos + 1:]
    header = b""
    if first & 0x40:
        header = ud[:ud[0] + 1]
    concat = None
    i = 1
    while i + 1 < len(header):
        iei, size = header[i], header[i + 1]
        element = header[i + 2:i + 2 + size]
        if iei == 0x00 and size == 3:
            concat = (element[0], element[1], element[2])
        elif iei == 0x08 and size == 4:
            concat = (element[0] << 8 | element[1], element[2], element[3])
        i += 2 + size
    if dcs & 0x0C == 0x08:
        text = ud[len(header):].decode("utf-16-be")
    else:
        header_septets = -(-len(header) * 8 // 7)
        text = _gsm_text(_unpack(ud, udl - header_septets, header_septets * 7))
    return {"number": _recipient(hex_pdu), "text": text, "concat": concat}


class PduInvalid(Exception):
    pass


def check_submit(hex_pdu, length):
    """Checks an SMS-SUBMIT as a modem would before sending; returns a dict."""
    try:
        data = bytes.fromhex(hex_pdu)
    except ValueError:
        raise PduInvalid("not hex") from None
    if not data or 1 + data[0] + length != len(data):
        raise PduInvalid("length %d does not match PDU" % length)
    t = data[1 + data[0]:]
    first = t[0]
    if first & 0x03 != 1:
        raise PduInvalid("not SMS-SUBMIT")
    ndigits = t[2]
    pos = 4 + (ndigits + 1) // 2
    if t[3] not in (0x91, 0x81, 0xA1):
        raise PduInvalid("type of address %02X" % t[3])
    dcs = t[pos + 1]
    pos += 2
    vpf = (first >> 3) & 0x03
    pos += {0: 0, 2: 1, 1: 7, 3: 7}[vpf]
    udl = t[pos]
    ud = t[pos + 1:]
    if dcs & 0x0C == 0x08:
        if udl != len(ud):
            raise PduInvalid("UCS-2 UDL %d but %d octets" % (udl, len(ud)))
    elif len(ud) != -(-udl * 7 // 8):
        raise PduInvalid("GSM UDL %d but %d octets" % (udl, len(ud)))
    if first & 0x40 and (not ud or ud[0] + 1 > len(ud)):
        raise PduInvalid("UDH overruns user data")
    return {"hex": hex_pdu, "length": length, "srr": bool(first & 0x20),
            "udhi": bool(first & 0x40), "dcs": dcs, "number_digits": ndigits}


class ModemEmulator:
    """The modem. Tests use `path`, the knobs below and `sent` (every valid
    SMS-SUBMIT received, in order, as dicts with "hex", "mr", ...)."""

    def __init__(self, reboot_seconds=0.3):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.reboot_seconds = reboot_seconds
        self.sent = []
        self.commands = []
        self.inbox = {}  # index -> (hex, length, stat)
        self.rssi = 21
        self.registration = 1
        self.operator = "Claro PE"
        self.sim_inserted = True
        self.report_status = 0  # TP-Status of the +CDS the emulator emits
        self.on_sent = None  # called with each accepted SMS-SUBMIT's record
        # The network's time zone information (NITZ): a callable giving an
        # aware datetime, or None for a network that sends none. The modem's
        # clock takes it only after AT+CLTS=1 (SIM800); until then AT+CCLK?
        # answers the clock's power-up default, 2004-01-01 plus uptime.
        self.network_time = None
        self.clts = 0
        self._clock_start = time.monotonic()
        self._lock = threading.Lock()
        self._cms_errors = []
        self._plain_errors = 0
        self._hang_sends = 0
        self._delete_errors = 0
        self._silent_until = 0.0
        self._inject = []
        self._mr = 0
        self._buf = b""
        self._pdu_mode_length = None
        self._power_up()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="modem-emulator", daemon=True)
        self._thread.start()

    # -- knobs for tests -------------------------------------------------

    def fail_sends(self, code, count=1, after=0):
        """Answer +CMS ERROR: code to count sends, after `after` that succeed."""
        with self._lock:
            self._cms_errors += [None] * after + [code] * count

    def error_sends(self, count=1):
        with self._lock:
            self._plain_errors += count

    def hang_sends(self, count=1):
        """Take the PDU of the next count sends and never answer."""
        with self._lock:
            self._hang_sends += count

    def fail_deletes(self, count=1):
        """Answer +CMS ERROR: 314 (SIM busy) to the next count AT+CMGD,
        deleting nothing."""
        with self._lock:
            self._delete_errors += count

    def silence(self, seconds):
        """Answer nothing at all for a while (a crashed or browned-out modem)."""
        with self._lock:
            self._silent_until = time.monotonic() + seconds

    def drop_network(self):
        with self._lock:
            self.registration = 2

    def restore_network(self):
        with self._lock:
            self.registration = 1

    def inject_in_next_answer(self, *lines):
        """Unsolicited lines to slip in before the next command's answer."""
        with self._lock:
            self._inject += lines

    def deliver(self, number, text, when=None, ucs2=False, parts=None, reference=0x42):
        """Store a received message (parts: a list of texts sent as one
        concatenated message) as real SMS-DELIVER PDUs, and announce +CMTI."""
        when = when or datetime.datetime(2024, 3, 14, 15, 9, 26,
                                          tzinfo=datetime.timezone(datetime.timedelta(hours=-5)))
        texts = parts or [text]
        with self._lock:
            for seq, part in enumerate(texts, 1):
                concat = (reference, len(texts), seq) if len(texts) > 1 else None
                index = max(self.inbox, default=0) + 1
                self.inbox[index] = deliver_pdu(number, part, when, ucs2, concat) + (0,)
                if self.cnmi[1] == 1:
                    self._write_line('+CMTI: "SM",%d' % index)

    def store_raw(self, hex_pdu, length):
        with self._lock:
            index = max(self.inbox, default=0) + 1
            self.inbox[index] = (hex_pdu, length, 0)

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass

    # -- the modem -------------------------------------------------------

    def _power_up(self):
        self.echo = True
        self.cmgf = 1  # text mode is the power-up default
        self.cmee = 0
        self.cnmi = [0, 0, 0, 0, 0]
        self._pdu_mode_length = None

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.05)
            if not ready:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            with self._lock:
                if time.monotonic() < self._silent_until:
                    continue
                self._feed(data)

    def _write(self, data):
        os.write(self.master, data)

    def _write_line(self, line):
        self._write(b"\r\n" + line.encode() + b"\r\n")

    def _feed(self, data):
        for byte in data:
            ch = bytes([byte])
            if self._pdu_mode_length is not None:
                self._feed_pdu(ch)
                continue
            if self.echo:
                self._write(ch)
            if ch == b"\r":
                line, self._buf = self._buf.decode("ascii", "replace").strip(), b""
                if line:
                    self.commands.append(line)
                    self._command(line)
            elif byte >= 0x20:
                # Stray control bytes (an ESC after a send that hung) are
                # ignored in command mode, as the SIM800 does.
                self._buf += ch

    def _feed_pdu(self, ch):
        if self.echo:
            self._write(ch)
        if ch == b"\x1b":
            self._pdu_mode_length, self._buf = None, b""
            self._write_line("OK")
            return
        if ch != b"\x1a":
            self._buf += ch
            return
        length, self._pdu_mode_length = self._pdu_mode_length, None
        hex_pdu, self._buf = self._buf.decode("ascii", "replace").strip(), b""
        self._flush_injected()
        if self._hang_sends:
            self._hang_sends -= 1
            return
        code = self._cms_errors.pop(0) if self._cms_errors else None
        if code is not None:
            self._write_line("+CMS ERROR: %d" % code)
            return
        if self._plain_errors:
            self._plain_errors -= 1
            self._write_line("ERROR")
            return
        if self.registration not in (1, 5):
            self._write_line("+CMS ERROR: 331")
            return
        try:
            record = check_submit(hex_pdu, length)
        except PduInvalid:
            self._write_line("+CMS ERROR: 304")
            return
        self._mr = (self._mr + 1) % 256
        record["mr"] = self._mr
        record["number"] = _recipient(hex_pdu)
        record["time"] = time.time()
        # Recorded before the answer: a test that counts parts once the
        # gateway has its +CMGS must find this one counted.
        self.sent.append(record)
        if self.on_sent is not None:
            self.on_sent(record)
        self._write_line("+CMGS: %d" % self._mr)
        self._write_line("OK")
        if record["srr"] and self.cnmi[3] == 1:
            digits = _recipient(hex_pdu)
            pdu, n = status_report_pdu(self._mr, digits, datetime.datetime.now(
                datetime.timezone.utc), self.report_status)
            self._write(b"\r\n+CDS: %d\r\n%s\r\n" % (n, pdu.encode()))

    def _flush_injected(self):
        for line in self._inject:
            self._write_line(line)
        self._inject = []

    def _error(self, cms=None, cme=None):
        if self.cmee and cms is not None:
            self._write_line("+CMS ERROR: %d" % cms)
        elif self.cmee and cme is not None:
            self._write_line("+CME ERROR: %d" % cme)
        else:
            self._write_line("ERROR")

    def _command(self, line):
        upper = line.upper()
        if not upper.startswith("AT"):
            self._write_line("ERROR")
            return
        cmd = upper[2:]
        if cmd.startswith("+CMGS=") and self.cmgf == 0:
            try:
                self._pdu_mode_length = int(cmd[6:])
            except ValueError:
                self._error(cms=304)
                return
            self._write(b"\r\n> ")
            return
        self._flush_injected()
        answer = self._answer(cmd, line)
        if answer is None:
            return
        for text in answer:
            self._write_line(text)

    def _answer(self, cmd, line):
        """Lines to answer a command with (ending in OK or an error), or None
        when the command answered by itself."""
        if cmd in ("", "E0", "E1"):
            if cmd:
                self.echo = cmd == "E1"
            return ["OK"]
        if cmd.startswith("+CMEE="):
            self.cmee = int(cmd[6:])
            return ["OK"]
        if cmd.startswith("+CMGF="):
            self.cmgf = int(cmd[6:])
            return ["OK"]
        if cmd.startswith("+CNMI="):
            self.cnmi = [int(x) for x in cmd[6:].split(",")] + [0] * 5
            return ["OK"]
        if cmd.startswith(("+CSMP=", "+CPMS=", "+CSCS=")):
            return ["OK"]
        if cmd in ("+CLTS=0", "+CLTS=1"):
            self.clts = int(cmd[-1])
            return ["OK"]
        if cmd == "+CLTS?":
            return ["+CLTS: %d" % self.clts, "OK"]
        if cmd == "+CCLK?":
            return ['+CCLK: "%s"' % self._cclk(), "OK"]
        if cmd == "+CSQ":
            return ["+CSQ: %d,0" % self.rssi, "OK"]
        if cmd == "+CREG?":
            return ["+CREG: 0,%d" % self.registration, "OK"]
        if cmd == "+CPIN?":
            if not self.sim_inserted:
                self._error(cme=10)
                return None
            return ["+CPIN: READY", "OK"]
        if cmd == "+COPS?":
            if self.registration in (1, 5):
                return ['+COPS: 0,0,"%s"' % self.operator, "OK"]
            return ["+COPS: 0", "OK"]
        if cmd.startswith("+CFUN=1,1"):
            self._write_line("OK")
            threading.Thread(target=self._reboot, daemon=True).start()
            return None
        if cmd == "+CMGL=4" and self.cmgf == 0:
            out = []
            for index in sorted(self.inbox):
                hex_pdu, length, stat = self.inbox[index]
                out += ["+CMGL: %d,%d,,%d" % (index, stat, length), hex_pdu]
                self.inbox[index] = (hex_pdu, length, 1)
            return out + ["OK"]
        if cmd.startswith("+CMGD="):
            index = int(cmd[6:].split(",")[0])
            if self._delete_errors:
                self._delete_errors -= 1
                self._error(cms=314)
                return None
            if self.inbox.pop(index, None) is None:
                self._error(cms=321)
                return None
            return ["OK"]
        self._write_line("ERROR")
        return None

    def _cclk(self):
        """The modem clock as AT+CCLK? gives it: yy/MM/dd,hh:mm:ss±zz, local
        time and its offset in quarter hours (27.007 8.15)."""
        if self.clts and self.network_time is not None:
            when = self.network_time()
        else:
            when = (datetime.datetime(2004, 1, 1, tzinfo=datetime.timezone.utc)
                    + datetime.timedelta(seconds=int(time.monotonic() - self._clock_start)))
        quarters = int(when.utcoffset().total_seconds() // 900)
        return "%02d/%02d/%02d,%02d:%02d:%02d%s%02d" % (
            when.year % 100, when.month, when.day, when.hour, when.minute, when.second,
            "-" if quarters < 0 else "+", abs(quarters))

    def _reboot(self):
        # The modem drops off for a moment and comes back in power-up state.
        with self._lock:
            self._silent_until = time.monotonic() + self.reboot_seconds
            self._power_up()
        time.sleep(self.reboot_seconds)
        if self._stop.is_set():
            return
        with self._lock:
            for urc in ("RDY", "+CFUN: 1", "+CPIN: READY", "Call Ready", "SMS Ready"):
                self._write_line(urc)


def _recipient(hex_pdu):
    data = bytes.fromhex(hex_pdu)
    t = data[1 + data[0]:]
    ndigits, toa = t[2], t[3]
    raw = t[4:4 + (ndigits + 1) // 2].hex().upper()
    digits = "".join(raw[i + 1] + raw[i] for i in range(0, len(raw), 2))[:ndigits]
    return ("+" if toa == 0x91 else "") + digits
