"""CBOR (RFC 8949) encoder and decoder that runs unchanged on MicroPython and CPython.

Boards encode frames with it and the gateway checks its decoder against cbor2,
so both sides share one small reference codec. The API follows cbor2's names:
`dumps`, `loads`, `Tag`, `Simple` (cbor2's CBORSimpleValue) and `undefined`.

Encoding is RFC 8949 §4.2.1 core deterministic: shortest heads, the shortest
float that keeps the value, map keys sorted bytewise by their encoding,
bignums (tags 2/3) only beyond 64 bits.

Decoding never trusts the input: every malformed, truncated or oversized input
raises CBORError and nothing else. Nesting, item count and declared lengths
are bounded, and a declared length is checked against the bytes that are left
before anything is allocated for it. The decoder keeps its own stack instead
of recursing, because a board's C stack is a few kilobytes.

Map keys follow RFC 8949 §5.6: two keys are duplicates when they are the
same value in the CBOR data model (§2: the integer 0, the float 0.0, -0.0
and false are four different keys; two NaNs with the same encoding are one
key), and a map with a duplicate key is refused. A map may be a map key
(it decodes as a FrozenMap). Keys that CBOR tells apart but a Python or
MicroPython dict cannot hold apart (false and 0, 1 and 1.0, 0.0 and -0.0)
are refused as unsupported, never merged and never called duplicates.

On boards built with single-precision floats (rp2, esp32) a decoded double
is rounded to the nearest float32; the unix port and CPython keep it exactly.
"""

import struct

from .errors import CBORError


class Tag:
    """A tagged data item that is not a bignum: tag number and its content."""

    def __init__(self, tag, value):
        self.tag = tag
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Tag) and self.tag == other.tag and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash((self.tag, self.value))

    def __repr__(self):
        return "Tag(%d, %r)" % (self.tag, self.value)


class Simple:
    """A simple value (major type 7) that has no Python meaning: 0..19, 32..255."""

    def __init__(self, value):
        # 20..23 are false/true/null/undefined; 24..31 are reserved and can
        # only be written in a form RFC 8949 §3.3 calls not well-formed.
        if not (0 <= value <= 19 or 32 <= value <= 255):
            raise ValueError("simple value %d is not 0..19 or 32..255" % value)
        self.value = value

    def __eq__(self, other):
        return isinstance(other, Simple) and self.value == other.value

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        return hash(self.value)

    def __repr__(self):
        return "Simple(%d)" % self.value


class FrozenMap:
    """A CBOR map used as a map key: immutable and hashable (cbor2's FrozenDict)."""

    def __init__(self, mapping):
        self._map = dict(mapping)
        self._hash = None

    def __getitem__(self, key):
        return self._map[key]

    def __iter__(self):
        return iter(self._map)

    def __len__(self):
        return len(self._map)

    def items(self):
        return self._map.items()

    def __eq__(self, other):
        return isinstance(other, FrozenMap) and self._map == other._map

    def __ne__(self, other):
        return not self.__eq__(other)

    def __hash__(self):
        if self._hash is None:
            self._hash = hash(dumps(self._map))
        return self._hash

    def __repr__(self):
        return "FrozenMap(%r)" % (self._map,)


class _Undefined:
    def __repr__(self):
        return "undefined"


undefined = _Undefined()

_UINT64_LIMIT = 1 << 64
_HALF_MAX = 65504.0
_SINGLE_MAX = 3.4028234663852886e38
_INF = float("inf")


# ---------------------------------------------------------------- encoding


def dumps(obj, max_depth=64):
    """Encode obj as deterministic CBOR bytes.

    Raises TypeError for a value CBOR cannot carry, and CBORError("depth")
    when arrays, maps and tags nest deeper than max_depth (which also stops
    a list that contains itself).
    """
    buf = bytearray()
    _encode(obj, buf, max_depth)
    return bytes(buf)


def _encode(obj, buf, max_depth):
    # Work list of (object, nesting levels still allowed). A depth of None
    # marks bytes that are already encoded (a sorted map key).
    todo = [(obj, max_depth)]
    while todo:
        obj, left = todo.pop()
        if left is None:
            buf += obj
            continue
        t = type(obj)
        if obj is None:
            buf.append(0xF6)
        elif obj is False:
            buf.append(0xF4)
        elif obj is True:
            buf.append(0xF5)
        elif t is int:
            _encode_int(buf, obj)
        elif t is str:
            raw = obj.encode("utf-8")
            _head(buf, 3, len(raw))
            buf += raw
        elif t is bytes or t is bytearray or t is memoryview:
            raw = bytes(obj)
            _head(buf, 2, len(raw))
            buf += raw
        elif t is float:
            _encode_float(buf, obj)
        elif t is list or t is tuple:
            _check_depth(left)
            _head(buf, 4, len(obj))
            for item in reversed(obj):
                todo.append((item, left - 1))
        elif t is dict or t is FrozenMap:
            _check_depth(left)
            _encode_map(obj, buf, left - 1, todo)
        elif t is Tag:
            _check_depth(left)
            if not 0 <= obj.tag < _UINT64_LIMIT:
                raise ValueError("tag number %r is not 0..2**64-1" % (obj.tag,))
            _head(buf, 6, obj.tag)
            todo.append((obj.value, left - 1))
        elif t is Simple:
            if obj.value < 24:
                buf.append(0xE0 | obj.value)
            else:
                buf += struct.pack(">BB", 0xF8, obj.value)
        elif obj is undefined:
            buf.append(0xF7)
        else:
            # Subclasses (IntEnum, OrderedDict, ...) take their base's form.
            todo.append((_base_value(obj), left))


def _base_value(obj):
    for base in (int, float, str, bytes, list, tuple, dict, Tag, Simple):
        if isinstance(obj, base):
            if base is Tag:
                return Tag(obj.tag, obj.value)
            if base is Simple:
                return Simple(obj.value)
            return base(obj)
    raise TypeError("cannot encode %s as CBOR" % type(obj).__name__)


def _check_depth(left):
    if left <= 0:
        raise CBORError("depth", -1, "nesting deeper than max_depth")


def _head(buf, major, n):
    # The shortest head that holds n (RFC 8949 §4.2.1).
    mt = major << 5
    if n < 24:
        buf.append(mt | n)
    elif n < 0x100:
        buf += struct.pack(">BB", mt | 24, n)
    elif n < 0x10000:
        buf += struct.pack(">BH", mt | 25, n)
    elif n < 0x100000000:
        buf += struct.pack(">BI", mt | 26, n)
    else:
        buf += struct.pack(">BQ", mt | 27, n)


def _encode_int(buf, value):
    major = 0
    if value < 0:
        major = 1
        value = -1 - value
    if value < _UINT64_LIMIT:
        _head(buf, major, value)
        return
    # Bignum: tag 2 (or 3 for negative) over the minimal big-endian bytes.
    # "%x" rather than int.bit_length, which MicroPython lacks.
    raw = value.to_bytes((len("%x" % value) + 1) // 2, "big")
    buf.append(0xC2 + major)
    _head(buf, 2, len(raw))
    buf += raw


def _encode_float(buf, value):
    if value != value:
        buf += b"\xf9\x7e\x00"  # the one NaN of RFC 8949 §4.2.2
        return
    if value == _INF or value == -_INF:
        buf += struct.pack(">Be", 0xF9, value)
        return
    # Range checks first: CPython raises OverflowError beyond a format's range
    # and MicroPython silently packs garbage. Then keep a width only if it
    # gives the value back exactly.
    magnitude = abs(value)
    if magnitude <= _HALF_MAX:
        packed = struct.pack(">e", value)
        if struct.unpack(">e", packed)[0] == value:
            buf.append(0xF9)
            buf += packed
            return
    if magnitude <= _SINGLE_MAX:
        packed = struct.pack(">f", value)
        if struct.unpack(">f", packed)[0] == value:
            buf.append(0xFA)
            buf += packed
            return
    buf += struct.pack(">Bd", 0xFB, value)


def _first(pair):
    return pair[0]


def _encode_map(obj, buf, left, todo):
    pairs = []
    for key, value in obj.items():
        encoded = bytearray()
        _encode(key, encoded, left)
        pairs.append((bytes(encoded), value))
    # RFC 8949 §4.2.1: keys in bytewise lexicographic order of their encoding.
    pairs.sort(key=_first)
    for i in range(1, len(pairs)):
        if pairs[i][0] == pairs[i - 1][0]:
            raise ValueError("two map keys have the same CBOR encoding")
    _head(buf, 5, len(pairs))
    for key, value in reversed(pairs):
        todo.append((value, left))
        todo.append((key, None))


# ---------------------------------------------------------------- decoding

# A frame on the decoder's stack is a list, one per open container:
#   [kind, container, remaining, key, in_key, start, keys]
# kind       _ARRAY, _MAP, _TAG or _CHUNKS (an indefinite-length string)
# container  list (array, or chunks), dict (map), or the tag number
# remaining  data items still expected, -1 for indefinite length
# key        map: the key waiting for its value, or _NO_KEY;
#            chunks: the major type (2 or 3) every chunk must have
# in_key     array/map/tag: decoding part of a map key (arrays become tuples);
#            chunks: bytes or characters gathered so far
# start      byte offset of the container's head, for error offsets
# keys       map: the encodings of its keys so far (§5.6 duplicates)
_ARRAY = 0
_MAP = 1
_TAG = 2
_CHUNKS = 3
_NO_KEY = object()
_ARG_FORMATS = (None, ">H", ">I", ">Q")
_FLOAT_FORMATS = (">e", ">f", ">d")
_SIMPLE_NAMED = (False, True, None, undefined)


def loads(data, max_depth=16, max_items=4096, max_length=65536):
    """Decode one CBOR data item that fills all of data.

    max_depth bounds nested arrays, maps, tags and indefinite strings;
    max_items the number of data items; max_length any declared length
    (string bytes, array items, map pairs).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("loads needs bytes, bytearray or memoryview")
    if type(data) is not bytes:
        data = bytes(data)
    end = len(data)
    pos = 0
    items = 0
    stack = []
    while True:
        start = pos
        if pos >= end:
            raise CBORError("truncated", pos)
        ib = data[pos]
        major = ib >> 5
        ai = ib & 31
        pos += 1
        top = stack[-1] if stack else None
        if top is not None and top[0] == _CHUNKS and ib != 0xFF and (major != top[3] or ai == 31):
            raise CBORError("bad_chunk", start, "chunk of an indefinite string is not a definite string of its type")

        # The head's argument: the value, length, tag number or float bits.
        if ai < 24:
            arg = ai
        elif ai < 28:
            size = 1 << (ai - 24)
            if size > end - pos:
                raise CBORError("truncated", start)
            if ai == 24:
                arg = data[pos]
            else:
                arg = struct.unpack_from(_ARG_FORMATS[ai - 24], data, pos)[0]
            pos += size
        elif ai == 31 and major >= 2 and major != 6:
            arg = -1
        else:
            raise CBORError("bad_head", start, "additional information %d" % ai)

        if ib != 0xFF:
            items += 1
            if items > max_items:
                raise CBORError("too_many", start, "more than %d data items" % max_items)

        if major == 0:
            value = arg
        elif major == 1:
            value = -1 - arg
        elif major <= 3:
            if arg < 0:
                _check_room(stack, max_depth, start)
                stack.append([_CHUNKS, [], -1, major, 0, start])
                continue
            if arg > max_length:
                raise CBORError("too_long", start, "string of %d bytes" % arg)
            if arg > end - pos:
                raise CBORError("truncated", start)
            value = data[pos:pos + arg]
            pos += arg
            if major == 3:
                value = _text(value, start)
        elif major <= 5:
            _check_room(stack, max_depth, start)
            in_key = _in_key(top)
            if arg < 0:
                remaining = -1
            else:
                if arg > max_length:
                    raise CBORError("too_long", start, "%d items" % arg)
                # Each item takes at least one byte, a map pair two.
                remaining = arg if major == 4 else 2 * arg
                if remaining > end - pos:
                    raise CBORError("truncated", start)
            if remaining == 0:
                value = (FrozenMap({}) if in_key else {}) if major == 5 else (() if in_key else [])
            else:
                if major == 4:
                    stack.append([_ARRAY, [], remaining, None, in_key, start])
                else:
                    stack.append([_MAP, {}, remaining, _NO_KEY, in_key, start, set()])
                continue
        elif major == 6:
            _check_room(stack, max_depth, start)
            stack.append([_TAG, arg, 1, None, _in_key(top), start])
            continue
        elif ai < 20:
            value = Simple(ai)
        elif ai < 24:
            value = _SIMPLE_NAMED[ai - 20]
        elif ai == 24:
            if arg < 32:
                raise CBORError("bad_simple", start, "simple value %d in two bytes" % arg)
            value = Simple(arg)
        elif ai < 28:
            value = struct.unpack_from(_FLOAT_FORMATS[ai - 25], data, start + 1)[0]
        else:
            # A break (0xff) ends the innermost indefinite-length container.
            if top is None or top[2] != -1 or (top[0] == _MAP and top[3] is not _NO_KEY):
                raise CBORError("break", start, "break outside an indefinite-length item")
            stack.pop()
            value = _finish(top)
            start = top[5]

        # Hand the value to its container; a container that is now complete
        # becomes the value for the one around it.
        while stack:
            top = stack[-1]
            kind = top[0]
            if kind == _ARRAY:
                top[1].append(value)
            elif kind == _MAP:
                if top[3] is _NO_KEY:
                    # Every decoded key is hashable: arrays in a key are
                    # tuples and maps FrozenMaps (_in_key). The deterministic encoding is the key's value in the
                    # data model: equal encodings are one key (§5.6).
                    model = dumps(value)
                    if model in top[6]:
                        raise CBORError("duplicate_key", start)
                    if value in top[1]:
                        raise CBORError("unsupported_key", start,
                                        "key %r is distinct in CBOR but equal to another in a dict" % (value,))
                    top[6].add(model)
                    top[3] = value
                else:
                    top[1][top[3]] = value
                    top[3] = _NO_KEY
            elif kind == _TAG:
                value = _tagged(top[1], value, top[5])
            else:
                top[1].append(value)
                top[4] += len(value)
                if top[4] > max_length:
                    raise CBORError("too_long", top[5], "indefinite string longer than %d" % max_length)
            if top[2] < 0:
                break
            top[2] -= 1
            if top[2]:
                break
            stack.pop()
            if kind != _TAG:
                value = _finish(top)
            start = top[5]
        else:
            if pos != end:
                raise CBORError("trailing", pos, "%d bytes after the data item" % (end - pos))
            return value


def _check_room(stack, max_depth, start):
    if len(stack) >= max_depth:
        raise CBORError("depth", start, "nested deeper than %d" % max_depth)


def _in_key(top):
    # Containers inside a map key must be hashable, so arrays there become
    # tuples (as cbor2 does).
    return top is not None and (top[4] or (top[0] == _MAP and top[3] is _NO_KEY))


def _finish(frame):
    kind = frame[0]
    if kind == _ARRAY:
        return tuple(frame[1]) if frame[4] else frame[1]
    if kind == _MAP:
        return FrozenMap(frame[1]) if frame[4] else frame[1]
    if frame[3] == 3:
        return "".join(frame[1])
    return b"".join(frame[1])


def _tagged(tag, value, start):
    if tag == 2 or tag == 3:
        if type(value) is not bytes:
            raise CBORError("bad_tag", start, "bignum tag %d needs a byte string" % tag)
        n = int.from_bytes(value, "big")
        return n if tag == 2 else -1 - n
    return Tag(tag, value)


def _text(raw, start):
    try:
        text = raw.decode("utf-8")
    except UnicodeError:
        raise CBORError("bad_utf8", start) from None
    # MicroPython's decoder lets surrogates, overlong forms and code points
    # above U+10FFFF through; an all-ASCII string needs no second look.
    if not _STRICT_UTF8 and len(text) != len(raw) and not _utf8_ok(raw):
        raise CBORError("bad_utf8", start)
    return text


def _utf8_ok(raw):
    """Whether raw is well-formed UTF-8 (RFC 3629 §4)."""
    i = 0
    n = len(raw)
    while i < n:
        c = raw[i]
        if c < 0x80:
            i += 1
            continue
        if 0xC2 <= c <= 0xDF:
            follow, lo, hi = 1, 0x80, 0xBF
        elif c == 0xE0:
            follow, lo, hi = 2, 0xA0, 0xBF
        elif c == 0xED:
            follow, lo, hi = 2, 0x80, 0x9F
        elif 0xE1 <= c <= 0xEF:
            follow, lo, hi = 2, 0x80, 0xBF
        elif c == 0xF0:
            follow, lo, hi = 3, 0x90, 0xBF
        elif 0xF1 <= c <= 0xF3:
            follow, lo, hi = 3, 0x80, 0xBF
        elif c == 0xF4:
            follow, lo, hi = 3, 0x80, 0x8F
        else:
            return False
        if i + follow >= n or not lo <= raw[i + 1] <= hi:
            return False
        for j in range(i + 2, i + follow + 1):
            if not 0x80 <= raw[j] <= 0xBF:
                return False
        i += follow + 1
    return True


def _strict_utf8():
    for bad in (b"\xed\xa0\x80", b"\xc0\x80", b"\xf4\x90\x80\x80"):
        try:
            bad.decode("utf-8")
        except UnicodeError:
            continue
        return False
    return True


_STRICT_UTF8 = _strict_utf8()
