"""SMS PDUs as a GSM modem takes and gives them in PDU mode (AT+CMGF=0).

Encodes SMS-SUBMIT (3GPP TS 23.040 9.2.2.2) with the GSM 7-bit default
alphabet and its extension table, or UCS-2 when any character is outside
them (TS 23.038), split into concatenated parts (UDH IE 0x00) when too long.
Decodes SMS-DELIVER and SMS-STATUS-REPORT, and joins concatenated parts.
Own code rather than a library because a garbled or lost alert SMS is the
failure that matters most, and every rule below is one of the standard's.
"""
import datetime
import struct
from typing import NamedTuple

# TS 23.038 6.2.1: the default alphabet, indexed by septet value.
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
# TS 23.038 6.2.1.1: the extension table, reached by ESC (0x1B) + septet.
GSM7_EXTENSION = {
    "\f": 0x0A, "^": 0x14, "{": 0x28, "}": 0x29, "\\": 0x2F,
    "[": 0x3C, "~": 0x3D, "]": 0x3E, "|": 0x40, "€": 0x65,
}
# TS 23.038 A.2.2: the Spanish national language single shift table, which
# replaces the extension table in a message whose UDH carries IE 0x24 with
# language 2 (6.2.1.2.4). It keeps the extension table's characters and adds
# the accented vowels GSM-7 lacks, at two septets each.
SPANISH_SHIFT = dict(GSM7_EXTENSION, **{
    "ç": 0x09, "Á": 0x41, "Í": 0x49, "Ó": 0x4F, "Ú": 0x55,
    "á": 0x61, "í": 0x69, "ó": 0x6F, "ú": 0x75,
})
# Single shift tables by option name: (national language identifier, table).
SHIFT_TABLES = {"es": (0x02, SPANISH_SHIFT)}
_IEI_SINGLE_SHIFT = 0x24
_ESC = 0x1B
_BASIC_INDEX = {c: i for i, c in enumerate(GSM7_BASIC) if i != _ESC}
_EXTENSION_CHAR = {v: k for k, v in GSM7_EXTENSION.items()}
_SHIFT_CHARS = {language: {v: k for k, v in table.items()}
                for language, table in SHIFT_TABLES.values()}

GSM7 = "gsm7"
UCS2 = "ucs2"
BINARY = "8bit"

# Septets / UTF-16 units in one part: whole message, then with the 6-octet
# concatenation UDH (7 septets incl. 1 fill bit; 3 UCS-2 units).
_LIMITS = {GSM7: (160, 153), UCS2: (70, 67)}
MAX_PARTS = 255  # the UDH counts parts in one octet

_MTI_DELIVER = 0
_MTI_SUBMIT = 1
_MTI_STATUS_REPORT = 2
_IEI_CONCAT_8 = 0x00
_IEI_CONCAT_16 = 0x08


class PduError(ValueError):
    """A PDU could not be made from the input or decoded from the hex."""


class Deliver(NamedTuple):
    """An SMS-DELIVER: one received part."""
    number: str
    time: datetime.datetime | None
    encoding: str
    text: str
    concat: tuple | None  # (reference, total, sequence) or None


class StatusReport(NamedTuple):
    """An SMS-STATUS-REPORT (TS 23.040 9.2.2.3) for a part we sent."""
    reference: int
    number: str
    time: datetime.datetime | None
    discharge: datetime.datetime | None
    status: int

    @property
    def outcome(self):
        """TS 23.040 9.2.3.15: 0x00-0x1F done, 0x20-0x3F still trying,
        0x40-0x7F failed (0x60-0x7F after temporary errors, no longer trying)."""
        if self.status < 0x20:
            return "delivered"
        if self.status < 0x40:
            return "pending"
        return "failed"


def choose_encoding(text, extension=GSM7_EXTENSION):
    """GSM7 when every character is in the default alphabet or the extension
    (or single shift) table, else UCS2."""
    for ch in text:
        if ch not in _BASIC_INDEX and ch not in extension:
            return UCS2
    return GSM7


def _units(text, encoding, extension=GSM7_EXTENSION):
    """The text as indivisible units: a GSM-7 extension character is two
    septets (ESC + code), a character outside the BMP two UTF-16 units, and
    neither may be split across parts."""
    if encoding == GSM7:
        return [(_BASIC_INDEX[ch],) if ch in _BASIC_INDEX else (_ESC, extension[ch])
                for ch in text]
    try:
        return [struct.unpack(">%dH" % (len(b) // 2), b)
                for b in (ch.encode("utf-16-be") for ch in text)]
    except UnicodeEncodeError:
        raise PduError("text holds a lone surrogate, which no phone can show") from None


_SPACE = (0x20,)  # a space, as a septet and as a UTF-16 unit
# A part ends at the last space within this many units of its end, so that
# words and values are not cut; a longer word is cut where it must be.
_WORD_SLACK = 30


def split_units(text, encoding=None, extension=GSM7_EXTENSION, header=(0, 0)):
    """The parts a text is sent in, each a flat list of septets or UTF-16 units,
    split between words where a space lies near the end of a part. header is
    what other UDH elements take from a lone part and from each of several."""
    encoding = encoding or choose_encoding(text, extension)
    units = _units(text, encoding, extension)
    single, multi = _LIMITS[encoding]
    single, multi = single - header[0], multi - header[1]
    if sum(len(u) for u in units) <= single:
        return [[x for u in units for x in u]]
    parts = _split(units, multi, True)
    if len(parts) > len(_split(units, multi, False)):
        # Cutting at words must not cost the reader a part.
        parts = _split(units, multi, False)
    if len(parts) > MAX_PARTS:
        raise PduError("text needs %d parts; at most %d fit a concatenation header"
                       % (len(parts), MAX_PARTS))
    return parts


def _split(units, multi, at_words):
    parts, current, size = [], [], 0
    for unit in units:
        if size + len(unit) > multi:
            cut = _last_space(current) if at_words else len(current)
            head, current = current[:cut], current[cut:]
            parts.append([x for u in head for x in u])
            size = sum(len(u) for u in current)
        current.append(unit)
        size += len(unit)
    parts.append([x for u in current for x in u])
    return parts


def _last_space(units):
    """Where a full part is cut: after its last space near the end, else at the end."""
    for i in range(len(units) - 1, max(len(units) - _WORD_SLACK, 0) - 1, -1):
        if units[i] == _SPACE:
            return i + 1
    return len(units)


def pack_septets(septets, fill_bits=0):
    """Septets packed LSB first (TS 23.038 6.1.2.1.1), after fill_bits zeros."""
    nbits = fill_bits + 7 * len(septets)
    value = 0
    for i, s in enumerate(septets):
        value |= s << (fill_bits + 7 * i)
    return value.to_bytes((nbits + 7) // 8, "little")


def unpack_septets(data, count, start_bit=0):
    value = int.from_bytes(data, "little")
    if start_bit + 7 * count > 8 * len(data):
        raise PduError("user data shorter than its length says")
    return [(value >> (start_bit + 7 * i)) & 0x7F for i in range(count)]


def septets_to_text(septets, extension_char=_EXTENSION_CHAR):
    out = []
    escaped = False
    for s in septets:
        if escaped:
            # 23.038 6.2.1.1: an unknown extension code shows as the default
            # alphabet's character.
            out.append(extension_char.get(s, GSM7_BASIC[s]))
            escaped = False
        elif s == _ESC:
            escaped = True
        else:
            out.append(GSM7_BASIC[s])
    return "".join(out)


def encode_address(number):
    """TP-DA (TS 23.040 9.1.2.5): digit count, type of address, BCD digits.
    A leading + makes it international (0x91), else national/unknown (0x81)."""
    digits = number[1:] if number.startswith("+") else number
    if not digits or len(digits) > 20 or any(c not in "0123456789*#" for c in digits):
        raise PduError("not a phone number: %r" % number)
    toa = 0x91 if number.startswith("+") else 0x81
    return struct.pack("BB", len(digits), toa) + _bcd(digits)


def _bcd(digits):
    semi = ["0123456789*#".index(c) for c in digits]
    if len(semi) % 2:
        semi.append(0xF)
    return bytes(semi[i] | (semi[i + 1] << 4) for i in range(0, len(semi), 2))


def validity_octet(minutes):
    """Relative TP-VP (TS 23.040 9.2.3.12.1), rounded up to the next step."""
    if minutes <= 0:
        raise PduError("validity must be positive")
    if minutes <= 720:
        return -(-minutes // 5) - 1
    if minutes <= 1440:
        return 143 + -(-(minutes - 720) // 30)
    days = -(-minutes // 1440)
    if days <= 30:
        return 166 + days
    return min(192 + -(-days // 7), 255)


def layout(text, shift=None):
    """(encoding, single shift UDH element or b"", parts as septets or UTF-16
    units): how submit_pdus sends text. shift names a national language
    single shift table (SHIFT_TABLES), used only when the text needs it and
    fits GSM-7 with it."""
    encoding = choose_encoding(text)
    shift_ie = b""
    extension = GSM7_EXTENSION
    if shift is not None and encoding == UCS2:
        if shift not in SHIFT_TABLES:
            raise PduError("no single shift table %r (have %s)" % (shift, ", ".join(SHIFT_TABLES)))
        language, table = SHIFT_TABLES[shift]
        if choose_encoding(text, table) == GSM7:
            encoding, extension = GSM7, table
            shift_ie = struct.pack("BBB", _IEI_SINGLE_SHIFT, 1, language)
    # The shift IE's 3 octets, plus the UDH length octet when it is alone,
    # in septets with their fill bits: 155 septets in one part, 149 split.
    return encoding, shift_ie, split_units(text, encoding, extension,
                                           (5, 4) if shift_ie else (0, 0))


def submit_pdus(number, text, ref, status_report=False, validity_minutes=24 * 60, shift=None):
    """SMS-SUBMIT PDUs for a text: list of (hex_pdu, tpdu_length).

    hex_pdu starts with a zero-length SMSC address, so the modem uses the
    SIM's service centre; tpdu_length is what AT+CMGS=<length> wants (octets
    without that SMSC part). ref is the 8-bit concatenation reference: the
    caller varies it per message so that a phone never mixes two messages'
    parts. shift: see layout."""
    if not 0 <= ref <= 255:
        raise PduError("concatenation reference must fit one octet")
    encoding, shift_ie, parts = layout(text, shift)
    address = encode_address(number)
    dcs = 0x00 if encoding == GSM7 else 0x08
    vp = validity_octet(validity_minutes)
    out = []
    for seq, part in enumerate(parts, 1):
        elements = shift_ie
        if len(parts) > 1:
            elements = struct.pack("BBBBB", _IEI_CONCAT_8, 3, ref, len(parts), seq) + shift_ie
        udh = bytes([len(elements)]) + elements if elements else b""
        if encoding == GSM7:
            header_septets = (len(udh) * 8 + 6) // 7
            fill = header_septets * 7 - len(udh) * 8
            # Spare bits after the last septet stay zero (TS 23.038 6.1.2.1.1,
            # SMS packing); the CR filler of 6.1.2.3.1 is for USSD, and SMS
            # decoders would show it as a trailing "\r".
            ud = udh + pack_septets(part, fill)
            udl = header_septets + len(part)
        else:
            ud = udh + struct.pack(">%dH" % len(part), *part)
            udl = len(ud)
        # First octet: MTI=01 SUBMIT, VPF=10 relative, SRR, UDHI.
        first = _MTI_SUBMIT | 0x10 | (0x20 if status_report else 0) | (0x40 if udh else 0)
        tpdu = (struct.pack("BB", first, 0) + address
                + struct.pack("BBBB", 0, dcs, vp, udl) + ud)
        out.append(("00" + tpdu.hex().upper(), len(tpdu)))
    return out


class _Reader:
    """Cursor over PDU octets that turns running off the end into PduError."""

    def __init__(self, data):
        self.data = data
        self.pos = 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise PduError("PDU truncated at octet %d" % self.pos)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def octet(self):
        return self.take(1)[0]


def _decode_address(reader):
    ndigits = reader.octet()
    toa = reader.octet()
    raw = reader.take((ndigits + 1) // 2)
    if (toa >> 4) & 0x07 == 5:
        # Alphanumeric sender (an operator's or a bank's name): GSM-7 packed.
        return septets_to_text(unpack_septets(raw, ndigits * 4 // 7))
    digits = []
    for b in raw:
        for nibble in (b & 0x0F, b >> 4):
            if nibble == 0x0F:
                break
            digits.append("0123456789*#abc"[nibble])
    number = "".join(digits[:ndigits])
    return "+" + number if (toa >> 4) & 0x07 == 1 else number


def _swapped(b):
    return (b & 0x0F) * 10 + (b >> 4)


def _decode_timestamp(raw):
    """TP-SCTS (TS 23.040 9.2.3.11): swapped BCD, zone in signed quarter hours."""
    try:
        year, month, day, hour, minute, second = (_swapped(b) for b in raw[:6])
        quarters = (raw[6] & 0x07) * 10 + (raw[6] >> 4)
        if raw[6] & 0x08:
            quarters = -quarters
        zone = datetime.timezone(datetime.timedelta(minutes=15 * quarters))
        return datetime.datetime(2000 + year, month, day, hour, minute, second, tzinfo=zone)
    except ValueError:
        return None  # a broken clock at the SMSC must not lose the message


def _alphabet(dcs):
    """TS 23.038 4: the alphabet a DCS octet names."""
    group = dcs >> 4
    if group <= 0x7:
        if dcs & 0x20:
            raise PduError("compressed user data is not supported")
        return (GSM7, BINARY, UCS2, GSM7)[(dcs >> 2) & 0x03]
    if group in (0xC, 0xD):
        return GSM7
    if group == 0xE:
        return UCS2
    if group == 0xF:
        return BINARY if dcs & 0x04 else GSM7
    raise PduError("reserved data coding scheme 0x%02X" % dcs)


def _decode_user_data(reader, udhi, encoding):
    udl = reader.octet()
    rest = reader.data[reader.pos:]
    concat = None
    shift = _EXTENSION_CHAR
    header_len = 0
    if udhi:
        if not rest:
            raise PduError("UDHI set but no user data header")
        header_len = rest[0] + 1
        concat, shift = _elements_of_udh(rest[1:header_len])
    if encoding == GSM7:
        header_septets = (header_len * 8 + 6) // 7
        if udl < header_septets:
            raise PduError("user data length shorter than its header")
        septets = unpack_septets(rest, udl - header_septets, header_septets * 7)
        return septets_to_text(septets, shift), concat
    if udl > len(rest) or udl < header_len:
        raise PduError("user data length %d does not fit the PDU" % udl)
    body = rest[header_len:udl]
    if encoding == UCS2:
        # surrogatepass: a part that a careless sender split inside a pair
        # still decodes; the reassembler joins the halves.
        return body.decode("utf-16-be", "surrogatepass"), concat
    return body.decode("latin-1"), concat


def _elements_of_udh(udh):
    """(concatenation (ref, total, seq) or None, the extension characters by
    code: a known national single shift table, else the default one)."""
    pos = 0
    concat = None
    shift = _EXTENSION_CHAR
    while pos + 2 <= len(udh):
        iei, length = udh[pos], udh[pos + 1]
        value = udh[pos + 2:pos + 2 + length]
        if len(value) != length:
            raise PduError("user data header element overruns the header")
        if iei == _IEI_CONCAT_8 and length == 3:
            concat = struct.unpack("BBB", value)
        elif iei == _IEI_CONCAT_16 and length == 4:
            concat = struct.unpack(">HBB", value)
        elif iei == _IEI_SINGLE_SHIFT and length == 1:
            # 23.038 6.2.1.2.4: a table this decoder lacks reads as the default one.
            shift = _SHIFT_CHARS.get(value[0], _EXTENSION_CHAR)
        pos += 2 + length
    if concat is not None and not (1 <= concat[2] <= concat[1]):
        raise PduError("concatenation part %d of %d" % (concat[2], concat[1]))
    return concat, shift


def _tpdu_bytes(hex_pdu, tpdu_length=None):
    """The TPDU of a PDU as a modem shows it (with the SMSC address in front,
    27.005 3.1 <pdu>); when tpdu_length is given and equals the whole, there
    is no SMSC part."""
    try:
        data = bytes.fromhex(hex_pdu.strip())
    except ValueError:
        raise PduError("PDU is not hex") from None
    if not data:
        raise PduError("empty PDU")
    if tpdu_length is not None and tpdu_length == len(data):
        return data
    sca_len = data[0]
    if tpdu_length is not None and 1 + sca_len + tpdu_length != len(data):
        raise PduError("PDU length %d does not match <length> %d" % (len(data), tpdu_length))
    return data[1 + sca_len:]


def decode_pdu(hex_pdu, tpdu_length=None):
    """A received PDU as a Deliver or a StatusReport."""
    reader = _Reader(_tpdu_bytes(hex_pdu, tpdu_length))
    try:
        first = reader.octet()
        mti = first & 0x03
        if mti == _MTI_DELIVER:
            number = _decode_address(reader)
            reader.octet()  # TP-PID: plain SME-to-SME
            encoding = _alphabet(reader.octet())
            time = _decode_timestamp(reader.take(7))
            text, concat = _decode_user_data(reader, first & 0x40, encoding)
            return Deliver(number, time, encoding, text, concat)
        if mti == _MTI_STATUS_REPORT:
            reference = reader.octet()
            number = _decode_address(reader)
            time = _decode_timestamp(reader.take(7))
            discharge = _decode_timestamp(reader.take(7))
            return StatusReport(reference, number, time, discharge, reader.octet())
    except (IndexError, ValueError) as exc:
        if isinstance(exc, PduError):
            raise
        raise PduError("malformed PDU: %s" % exc) from None
    raise PduError("not an SMS-DELIVER or SMS-STATUS-REPORT (MTI %d)" % mti)


class Reassembler:
    """Joins concatenated parts by (sender, reference, total). A lone part
    passes straight through; parts of an incomplete message wait."""

    def __init__(self):
        self._pending = {}

    def add(self, deliver):
        """Returns (number, text, time) once a message is complete, else None."""
        if deliver.concat is None or deliver.concat[1] == 1:
            return deliver.number, deliver.text, deliver.time
        reference, total, seq = deliver.concat
        key = (deliver.number, reference, total)
        parts = self._pending.setdefault(key, {})
        parts[seq] = deliver
        if len(parts) < total:
            return None
        del self._pending[key]
        ordered = [parts[i] for i in range(1, total + 1)]
        text = "".join(p.text for p in ordered)
        # Rejoin surrogate halves a sender split across parts.
        text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
        return deliver.number, text, ordered[0].time

    def pending(self):
        """Keys of messages still missing parts."""
        return list(self._pending)
