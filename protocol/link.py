"""COBS framing with CRC-16 for serial and radio links.

A UART cable, an RS-485 bus or a transparent LoRa UART module hands over a
byte stream with noise, lost bytes and no frame boundaries. COBS removes every
0x00 from a packet so that 0x00 can mark where one ends: after any damage the
receiver is back in step at the next 0x00. CRC-16/CCITT-FALSE catches the
line noise that COBS alone would let through.

Wire: COBS(frame + crc16_be(frame)) + b"\\x00"

The same file runs on the boards (MicroPython) and on the gateway (CPython),
so the decoder keeps one preallocated buffer, decodes in place and makes no
object per byte.
"""
import struct
from array import array

from .errors import LinkError

try:
    from micropython import const
except ImportError:
    def const(value):
        return value


MAX_FRAME = const(255)  # payload bytes: the boards' UART/LoRa MTU
_CRC_SIZE = const(2)
_FULL_BLOCK = const(0xFF)  # COBS code of 254 data bytes with no zero after them
_POLY = const(0x1021)


def _crc_entry(byte):
    crc = byte << 8
    for _ in range(8):
        if crc & 0x8000:
            crc = ((crc << 1) ^ _POLY) & 0xFFFF
        else:
            crc = (crc << 1) & 0xFFFF
    return crc


try:
    # CPython has this very CRC in C (CRC-CCITT, poly 0x1021; init 0xFFFF makes
    # it CCITT-FALSE): the gateway checks every frame with it.
    from binascii import crc_hqx as _crc_in_c
except ImportError:  # MicroPython
    _crc_in_c = None
    # 512 bytes built once at import; an array keeps it off the heap as 256 objects,
    # filled in place: a list of 256 first would need 2 KB more of contiguous heap at boot.
    _CRC_TABLE = array("H", bytes(512))
    for _i in range(256):
        _CRC_TABLE[_i] = _crc_entry(_i)
    del _i


def crc16(data, start=0, end=-1):
    """CRC-16/CCITT-FALSE of data[start:end] (poly 0x1021, init 0xFFFF).

    Indexes instead of slicing so a board can check a frame inside its
    receive buffer without copying it.
    """
    if end < 0:
        end = len(data)
    if _crc_in_c is not None:
        return _crc_in_c(memoryview(data)[start:end], 0xFFFF)
    table = _CRC_TABLE
    crc = 0xFFFF
    for i in range(start, end):
        crc = ((crc << 8) & 0xFF00) ^ table[(crc >> 8) ^ data[i]]
    return crc


def encoded_bound(size):
    """Most bytes COBS can make of `size` bytes, without the delimiter:
    one code byte, plus one for each full block of 254 non-zero bytes."""
    return size + 1 + size // 254


def _stuff(out, data, tail):
    """COBS-encode data followed by tail into out; returns the length written.

    out must hold encoded_bound(len(data) + len(tail)) bytes. A zero in the
    input becomes the length of the block before it; a full block of 254
    non-zero bytes is closed with 0xFF, which stands for no zero, and only
    when more input follows (the COBS paper's and Wikipedia's vectors).
    """
    n = len(data)
    total = n + len(tail)
    code_at = 0
    w = 1
    for i in range(total):
        byte = data[i] if i < n else tail[i - n]
        if byte:
            out[w] = byte
            w += 1
            if w - code_at == _FULL_BLOCK and i + 1 < total:
                out[code_at] = _FULL_BLOCK
                code_at = w
                w += 1
        else:
            out[code_at] = w - code_at
            code_at = w
            w += 1
    out[code_at] = w - code_at
    return w


def _unstuff(buf, n):
    """Decode the COBS packet in buf[0:n] in place (n > 0, no zero in it).

    The decoded bytes land at buf[1:1 + length]; returns length, or -1 when a
    code byte points past the end of the packet. Each code byte after a short
    block becomes the zero it stands for, where it lies, so nothing moves;
    only blocks after a full 0xFF block, whose code byte stands for nothing,
    shift down by one per such block.
    """
    r = 0
    w = 1
    code = buf[0]
    while True:
        end = r + code
        if code == 0 or end > n:
            return -1
        if w == r + 1:
            w = end
        else:
            for i in range(r + 1, end):
                buf[w] = buf[i]
                w += 1
        if end == n:
            return w - 1
        following = buf[end]
        if code != _FULL_BLOCK:
            buf[w] = 0
            w += 1
        r = end
        code = following


def cobs_encode(data):
    """COBS encoding of data, without the 0x00 delimiter."""
    out = bytearray(encoded_bound(len(data)))
    w = _stuff(out, data, b"")
    return bytes(memoryview(out)[:w])


def cobs_decode(packet):
    """Inverse of cobs_encode (no delimiter); LinkError("bad_cobs") if invalid."""
    buf = bytearray(packet)
    if not buf or b"\x00" in buf:
        raise LinkError("bad_cobs", -1, "empty packet or 0x00 inside it")
    length = _unstuff(buf, len(buf))
    if length < 0:
        raise LinkError("bad_cobs", -1, "code byte runs past the end")
    return bytes(memoryview(buf)[1:1 + length])


def encode(frame, max_frame=MAX_FRAME):
    """Wire bytes for one frame: COBS(frame + CRC-16 big-endian) + 0x00."""
    n = len(frame)
    if n > max_frame:
        raise LinkError("too_long", -1, "%d > %d bytes" % (n, max_frame))
    crc = struct.pack(">H", crc16(frame))
    # The bytearray starts zeroed, so the byte after the packet is the delimiter.
    out = bytearray(encoded_bound(n + _CRC_SIZE) + 1)
    w = _stuff(out, frame, crc)
    return bytes(memoryview(out)[:w + 1])


class Decoder:
    """Incremental receiver: feed it bytes as they come, get frames back.

    feed() returns a list of items, each a frame (bytes, CRC checked and
    stripped) or a LinkError (returned, not raised) whose reason is
    "bad_crc", "bad_cobs", "too_long" or "short" and whose offset is the
    count of bytes this decoder had consumed when the bad packet ended.
    Empty packets (0x00 0x00, used as wake-up or flush bytes) are ignored.
    """

    def __init__(self, max_frame=MAX_FRAME):
        self.max_frame = max_frame
        self.capacity = encoded_bound(max_frame + _CRC_SIZE)
        # One buffer for the decoder's life: a board must never grow it.
        self._buf = bytearray(self.capacity)
        self._view = memoryview(self._buf)
        self._n = 0  # bytes of the current packet; -1 while skipping an overlong one
        self._consumed = 0
        self.counts = {"ok": 0, "bad_crc": 0, "bad_cobs": 0, "too_long": 0, "short": 0}

    @property
    def buffered(self):
        """Bytes of the unfinished packet held now (never above capacity)."""
        return self._n if self._n > 0 else 0

    def reset(self):
        """Drop any unfinished packet, e.g. after the port was reopened."""
        self._n = 0

    def feed(self, chunk):
        if isinstance(chunk, memoryview):
            chunk = bytes(chunk)  # find() is missing on memoryview
        items = []
        base = self._consumed
        size = len(chunk)
        view = None
        start = 0
        while start < size:
            stop = chunk.find(b"\x00", start)
            end = size if stop < 0 else stop
            n = self._n
            if end > start and n >= 0:
                if n + end - start > self.capacity:
                    self._n = -1
                else:
                    if view is None:
                        view = memoryview(chunk)
                    self._view[n:n + end - start] = view[start:end]
                    self._n = n + end - start
            if stop < 0:
                break
            item = self._finish(base + stop + 1)
            if item is not None:
                items.append(item)
            start = stop + 1
        self._consumed = base + size
        return items

    def _finish(self, offset):
        """Check the packet just ended by a 0x00 at stream position offset."""
        n = self._n
        self._n = 0
        if n == 0:
            return None
        if n < 0:
            return self._reject("too_long", offset, "more than %d bytes before 0x00" % self.capacity)
        buf = self._buf
        length = _unstuff(buf, n)
        if length < 0:
            return self._reject("bad_cobs", offset, "code byte runs past the end")
        if length < _CRC_SIZE:
            return self._reject("short", offset, "%d bytes, no room for a CRC" % length)
        body = length - _CRC_SIZE
        if body > self.max_frame:
            return self._reject("too_long", offset, "%d > %d bytes" % (body, self.max_frame))
        if crc16(buf, 1, 1 + body) != struct.unpack_from(">H", buf, 1 + body)[0]:
            return self._reject("bad_crc", offset, "%d bytes" % body)
        self.counts["ok"] += 1
        return bytes(self._view[1:1 + body])

    def _reject(self, reason, offset, detail):
        self.counts[reason] += 1
        return LinkError(reason, offset, detail)
