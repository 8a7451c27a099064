"""Frames and acks: build them on a board, check and unpack them on the gateway.

The decoder is a scanner over the frame's fixed shape rather than a general
CBOR decode followed by a mapping: it is the reference for what a valid frame
is (SPEC.md) and the gateway compiles this very file with Cython (types in
protocol/_frame_c.pxd), so the fast path cannot drift from it. It accepts any
head width CBOR allows, rejects indefinite lengths, and raises FrameError
(or AuthError) for everything else, naming what was wrong and where.

Frames are built here too, with a few lines of CBOR encoding for their fixed
shape rather than protocol/cbor.py, so that a board never loads the general
codec: it costs a board about 19 KB of heap that it cannot spare.
"""
import struct

from .cose import ALG_HMAC_256_64, HDR_ALG, HDR_KID, PROTECTED, TAG_LEN, TAG_MAC0
from .errors import AuthError, FrameError

# Version 2 frames carry the board's epoch in the top bits of a 32-bit seq
# (SPEC.md 1.4), so that a re-flashed board's numbers are new ones and the
# frame is no longer than version 1's; a gateway takes both.
VERSION = 1
VERSION_EPOCH = 2
EPOCH_SHIFT = 24
MAX_EPOCH = 0xFF
MAX_COUNTER = (1 << EPOCH_SHIFT) - 1

# Frame flags (bits of the flags field).
FLAG_CLOCK_UNSYNCED = 1
FLAG_LOW_BATTERY = 2
FLAG_REBOOTED = 4
FLAG_DROPPED = 8

# Reading quality codes; 0 (ok) is never sent.
Q_OK = 0
Q_NO_RETURN = 1
Q_OUT_OF_RANGE = 2
Q_STUCK = 3
Q_NOISY = 4
Q_MAX = 4
QUALITY_NAMES = ("ok", "no_return", "out_of_range", "stuck", "noisy")

KEY_STRIDE = 64  # wire key = channel + 64 * index
MAX_CHANNEL = KEY_STRIDE - 1
MAX_INDEX = 7
MAX_READINGS = 255
MAX_KID = 32
MAX_BYTES = 2048  # far above any real frame; bounds the work a hostile one can cause
ACK_AAD = b"huaico-ack"

_INT64_MAX = 0x7FFFFFFFFFFFFFFF
# "MAC0" as a tstr heading the MAC_structure array (RFC 9052 §6.3).
_MAC0_HEAD = b"\x84\x64MAC0"
# MAC_structure up to the payload for the usual protected header and no external_aad.
_MAC0_USUAL = _MAC0_HEAD + b"\x43" + PROTECTED + b"\x40"


class Frame:
    """A checked frame: rows are (channel, index, time, value, quality);
    epoch is 0 for a version 1 frame, which has none.

    Only decode_frame makes these. It sets every field one by one, with no
    __init__ arguments, because the compiled decoder then builds no argument
    tuple per frame.
    """

    def __repr__(self):
        return "Frame(kid=%s, epoch=%d, seq=%d, time=%d, flags=%d, rows=%r, signed=%r)" % (
            _hex(self.kid), self.epoch, self.seq, self.time, self.flags, self.rows, self.signed)


def _hex(data):
    return "".join("%02x" % b for b in data)


class _Scanner:
    """Reads CBOR heads from buf[pos:end]; every method raises FrameError on bad input.

    Made by _unwrap, which sets every field, for the same reason as Frame.
    """

    def fail(self, reason, detail=""):
        raise FrameError(reason, self.pos, detail)

    def head(self, major):
        """The argument of an item of this major type; moves past the head."""
        pos = self.pos
        if pos < self.end:
            ib = self.buf[pos]
            # Most heads are one byte holding their argument (RFC 8949 §3.1): this
            # path is kept apart so that the compiled head() is small enough to inline.
            if ib >> 5 == major and ib & 0x1F < 24:
                self.pos = pos + 1
                return ib & 0x1F
        return self.long_head(major)

    def long_head(self, major):
        """head() for a head of any width, and every error a head can have."""
        pos = self.pos
        if pos >= self.end:
            self.fail("truncated")
        ib = self.buf[pos]
        if ib >> 5 != major:
            self.fail("structure", "major type %d, wanted %d" % (ib >> 5, major))
        info = ib & 0x1F
        pos += 1
        if info < 24:
            self.pos = pos
            return info
        if info > 27:
            self.fail("malformed", "head 0x%02x" % ib)
        size = 1 << (info - 24)
        if pos + size > self.end:
            self.fail("truncated")
        arg = 0
        for i in range(size):
            arg = (arg << 8) | self.buf[pos + i]
        if arg > _INT64_MAX:
            self.fail("int_range")
        self.pos = pos + size
        return arg

    def int_(self):
        """A major type 0 or 1 integer that fits in 64-bit signed."""
        if self.pos >= self.end:
            self.fail("truncated")
        if self.buf[self.pos] >> 5 == 1:
            return -1 - self.head(1)
        return self.head(0)

    def span(self, major):
        """Start of a byte or text string's content; moves past the content."""
        length = self.head(major)
        start = self.pos
        if length > self.end - start:
            self.fail("truncated")
        self.pos = start + length
        return start

    def skip(self, depth):
        """Moves past one well-formed definite-length item of any type."""
        if depth > 8:
            self.fail("malformed", "nested too deep")
        if self.pos >= self.end:
            self.fail("truncated")
        major = self.buf[self.pos] >> 5
        if major == 7:
            info = self.buf[self.pos] & 0x1F
            if info > 27:
                self.fail("malformed", "simple or float head")
            self.pos += 1 + ((1 << (info - 24)) if info >= 24 else 0)
            if self.pos > self.end:
                self.fail("truncated")
            return
        count = self.head(major)
        if major == 2 or major == 3:
            if count > self.end - self.pos:
                self.fail("truncated")
            self.pos += count
        elif major == 4 or major == 5:
            # Every item takes a byte at least: a count beyond what is left is
            # truncated, and checking before doubling keeps 64-bit math exact.
            if count > self.end - self.pos:
                self.fail("truncated")
            if major == 5:
                count *= 2
            for _ in range(count):
                self.skip(depth + 1)
        elif major == 6:
            self.skip(depth + 1)


def _head_size(length):
    """Bytes in the shortest head for this length (RFC 8949 §4.2.1)."""
    if length < 24:
        return 1
    if length < 0x100:
        return 2
    if length < 0x10000:
        return 3
    return 5


def _head(out, major, n):
    """Append the shortest head for major type and argument n (RFC 8949 §4.2.1)."""
    if n < 24:
        out.append(major << 5 | n)
    elif n < 0x100:
        out.append(major << 5 | 24)
        out.append(n)
    elif n < 0x10000:
        out.append(major << 5 | 25)
        out.extend(struct.pack(">H", n))
    elif n < 0x100000000:
        out.append(major << 5 | 26)
        out.extend(struct.pack(">I", n))
    elif n <= _INT64_MAX:
        out.append(major << 5 | 27)
        out.extend(struct.pack(">Q", n))
    else:
        raise ValueError("%d does not fit a frame's 64-bit integers" % n)


def _int(out, value):
    if value >= 0:
        _head(out, 0, value)
    else:
        _head(out, 1, -1 - value)


def _bstr(out, data):
    _head(out, 2, len(data))
    out.extend(data)


def _mac_input(protected, aad, payload):
    out = bytearray(_MAC0_HEAD)
    _bstr(out, protected)
    _bstr(out, aad)
    _bstr(out, payload)
    return bytes(out)


def _unwrap(data, key_for, aad):
    """Check a COSE_Mac0; return a scanner limited to its payload, with kid and signed set."""
    buf = data if type(data) is bytes else bytes(data)
    if len(buf) > MAX_BYTES:
        raise FrameError("too_long", MAX_BYTES, "%d bytes" % len(buf))
    raw = buf  # compiled, a char pointer: its slices are made without slice objects
    s = _Scanner()
    s.buf = buf
    s.pos = 0
    s.end = len(buf)
    s.kid = None
    s.signed = False
    if s.end > 0 and buf[0] >> 5 == 6:
        if s.head(6) != TAG_MAC0:
            s.fail("structure", "tag is not COSE_Mac0")
    if s.head(4) != 4:
        s.fail("structure", "COSE_Mac0 is an array of 4")
    prot_start = s.span(2)
    prot_end = s.pos
    alg = -1
    kid = None
    if prot_end > prot_start:
        # Scan the protected header in place, then come back to the outer array.
        s.pos = prot_start
        s.end = prot_end
        for _ in range(s.head(5)):
            label = s.int_()
            if label == HDR_ALG:
                alg = s.int_()
            elif label == HDR_KID:
                start = s.span(2)
                kid = raw[start:s.pos]
            else:
                s.skip(0)
        if s.pos != prot_end:
            s.fail("trailing")
        s.end = len(buf)
    for _ in range(s.head(5)):
        label = s.int_()
        if label == HDR_KID and kid is None:
            start = s.span(2)
            kid = raw[start:s.pos]
        else:
            s.skip(0)
    head_start = s.pos
    payload_start = s.span(2)
    payload_end = s.pos
    tag_start = s.span(2)
    tag_end = s.pos
    if s.pos != s.end:
        s.fail("trailing")
    if kid is None or len(kid) == 0 or len(kid) > MAX_KID:
        raise FrameError("no_kid", prot_start)
    key = key_for(kid)
    if key is None:
        raise AuthError("unknown_device", prot_start, _hex(kid))
    s.pos = payload_start
    s.end = payload_end
    if alg == -1 and prot_end == prot_start and tag_end == tag_start:
        if not key.allow_unsigned:
            raise AuthError("unsigned", tag_start, _hex(kid))
        s.kid = kid
        return s
    if alg != ALG_HMAC_256_64:
        raise AuthError("bad_alg", prot_start, "alg %d" % alg)
    if tag_end - tag_start != TAG_LEN:
        raise AuthError("bad_mac", tag_start, "tag of %d bytes" % (tag_end - tag_start))
    if (len(aad) == 0 and prot_end - prot_start == 3 and buf[prot_start - 1] == 0x43
            and buf[prot_start] == 0xA1 and buf[prot_start + 1] == 0x01
            and buf[prot_start + 2] == ALG_HMAC_256_64
            and payload_start - head_start == _head_size(payload_end - payload_start)):
        # The usual frame: its bytes already hold the MAC_structure's tail.
        key.check(_MAC0_USUAL, raw[head_start:payload_end], raw[tag_start:tag_end])
    else:
        key.check(_mac_input(raw[prot_start:prot_end], aad, raw[payload_start:payload_end]),
                  b"", raw[tag_start:tag_end])
    s.kid = kid
    s.signed = True
    return s


def decode_frame(data, key_for):
    """Check a frame's MAC and unpack it.

    key_for(kid) returns the device's MacKey, or None for an unknown device.
    """
    s = _unwrap(data, key_for, b"")
    fields = s.head(4)
    if fields != 5 and fields != 6:
        s.fail("structure", "payload is an array of 5 or 6")
    version = s.head(0)
    if version != VERSION and version != VERSION_EPOCH:
        raise FrameError("version", s.pos - 1, "version %d" % version)
    seq = s.head(0)
    epoch = 0
    if version == VERSION_EPOCH:
        epoch = seq >> EPOCH_SHIFT
        if epoch == 0 or epoch > MAX_EPOCH:
            s.fail("structure", "version 2 seq is epoch 1..%d << %d | counter" % (MAX_EPOCH, EPOCH_SHIFT))
    base = s.head(0)
    flags = s.head(0)
    count = s.head(4)
    if count % 3 != 0:
        s.fail("structure", "readings come in threes")
    count //= 3
    if count > MAX_READINGS:
        s.fail("too_many")
    rows = [None] * count
    at_base = base  # one time object shared by the readings taken at the base time
    # SPEC 1: one reading per channel, index and time. A bit per key modulo 32
    # says which keys were seen; only a key whose bit is set already (another
    # index of the channel, or a channel 32 apart) is compared with the rows
    # before it. That is quadratic for a frame of one key only, which its MAC
    # says came from the device itself, and it allocates nothing on a board.
    mask = 0
    for at in range(count):
        key = s.head(0)
        channel = key % KEY_STRIDE
        if channel == 0:
            s.fail("structure", "channel 0")
        if key // KEY_STRIDE > MAX_INDEX:
            s.fail("structure", "sensor index above %d" % MAX_INDEX)
        dt = s.int_()
        if dt > _INT64_MAX - base:
            s.fail("int_range", "reading time")
        value = s.int_()
        row = (channel, key // KEY_STRIDE, at_base if dt == 0 else base + dt, value, Q_OK)
        rows[at] = row
        bit = 1 << (key & 31)
        if mask & bit:
            for earlier in range(at):
                other = rows[earlier]
                if other[2] == row[2] and other[0] == channel and other[1] == row[1]:
                    s.fail("repeated", "reading %d repeats channel %d index %d at time %d"
                           % (at, channel, row[1], row[2]))
        mask |= bit
    if fields == 6:
        for _ in range(s.head(5)):
            at = s.head(0)
            quality = s.head(0)
            if at >= count or rows[at][4] != Q_OK or quality == Q_OK or quality > Q_MAX:
                s.fail("structure", "quality entry")
            row = rows[at]
            rows[at] = (row[0], row[1], row[2], row[3], quality)
    if s.pos != s.end:
        s.fail("trailing")
    result = Frame()
    result.kid = s.kid
    result.epoch = epoch
    result.seq = seq
    result.time = at_base
    result.flags = flags
    result.rows = rows
    result.signed = s.signed
    return result


def encode_payload(seq, time, flags, readings, epoch=0):
    """The CBOR payload for readings of (channel, index, dt, value, quality):
    version 1 without an epoch (0), else version 2 whose seq field is
    epoch << EPOCH_SHIFT | seq.

    Raises ValueError for what no gateway would accept, rather than letting a
    board resend a frame forever that is never acked.
    """
    if len(readings) > MAX_READINGS:
        raise ValueError("at most %d readings in a frame" % MAX_READINGS)
    if not 0 <= epoch <= MAX_EPOCH or (epoch and not 0 <= seq <= MAX_COUNTER):
        raise ValueError("epoch 0 (none), or 1..%d with seq 0..%d" % (MAX_EPOCH, MAX_COUNTER))
    out = bytearray()
    quality = []
    taken = []
    for at in range(len(readings)):
        channel, index, dt, value, q = readings[at]
        if not (1 <= channel <= MAX_CHANNEL and 0 <= index <= MAX_INDEX and 0 <= q <= Q_MAX):
            raise ValueError("reading %d: channel 1..%d, index 0..%d, quality 0..%d"
                             % (at, MAX_CHANNEL, MAX_INDEX, Q_MAX))
        if time + dt > _INT64_MAX:
            raise ValueError("reading %d: time %d + dt %d is out of range" % (at, time, dt))
        if (channel, index, dt) in taken:
            raise ValueError("reading %d: channel %d index %d at dt %d twice" % (at, channel, index, dt))
        taken.append((channel, index, dt))
        if q != Q_OK:
            quality.append(at)
    _head(out, 4, 6 if quality else 5)
    _head(out, 0, VERSION_EPOCH if epoch else VERSION)
    for field in (epoch << EPOCH_SHIFT | seq, time, flags):
        _head(out, 0, field)
    _head(out, 4, 3 * len(readings))
    for channel, index, dt, value, q in readings:
        _head(out, 0, channel + KEY_STRIDE * index)
        _int(out, dt)
        _int(out, value)
    if quality:
        _head(out, 5, len(quality))
        for at in quality:
            _head(out, 0, at)
            _head(out, 0, readings[at][4])
    return bytes(out)


def _wrap(kid, key, payload, aad):
    if not 1 <= len(kid) <= MAX_KID:
        raise ValueError("a kid has 1..%d bytes, got %d" % (MAX_KID, len(kid)))
    protected = PROTECTED if key is not None else b""
    out = bytearray(b"\xd1\x84")  # tag 17, array of 4
    _bstr(out, protected)
    out.append(0xA1)  # unprotected {4: kid}
    out.append(HDR_KID)
    _bstr(out, kid)
    _bstr(out, payload)
    _bstr(out, key.tag(_mac_input(protected, aad, payload)) if key is not None else b"")
    if len(out) > MAX_BYTES:
        raise ValueError("a frame of %d bytes is over the %d-byte limit" % (len(out), MAX_BYTES))
    return bytes(out)


def encode_frame(kid, key, seq, time, flags, readings, epoch=0):
    """A signed frame (COSE_Mac0); key None makes an unsigned one; epoch 0 a
    version 1 one, else the acks name the seq epoch << EPOCH_SHIFT | seq."""
    return _wrap(kid, key, encode_payload(seq, time, flags, readings, epoch), b"")


_NULL = 0xF6  # CBOR null (RFC 8949 §3.3): the ack's time when the gateway's clock is not trusted


def encode_ack(kid, key, seq, time):
    """The gateway's ack of one frame, MACed so that a forged ack cannot drop
    frames; time None says the gateway has no time it trusts (SPEC.md 2)."""
    payload = bytearray(b"\x82")
    _head(payload, 0, seq)
    if time is None:
        payload.append(_NULL)
    else:
        _head(payload, 0, time)
    return _wrap(kid, key, bytes(payload), ACK_AAD)


def decode_ack(data, key):
    """(kid, seq, gateway time or None) from an ack MACed under this device's key."""
    s = _unwrap(data, lambda kid: key, ACK_AAD)
    if not s.signed:
        raise AuthError("unsigned", s.pos)
    if s.head(4) != 2:
        s.fail("structure", "ack is an array of 2")
    seq = s.head(0)
    if s.pos < s.end and s.buf[s.pos] == _NULL:
        s.pos += 1
        time = None
    else:
        time = s.head(0)
    if s.pos != s.end:
        s.fail("trailing")
    return s.kid, seq, time
