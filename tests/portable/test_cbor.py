"""protocol.cbor against RFC 8949 Appendix A and its malformed-input rules.

Plain asserts and no pytest import: pytest runs this file on CPython and the
MicroPython runner imports it and calls each test_ function, so the codec is
checked on both interpreters by the same code. No pathlib or os.path, which
MicroPython lacks: the vectors are found from __file__ by string operations.
"""

import binascii
import json
import struct
import sys

if sys.implementation.name == "micropython":  # a board's name for the package
    from protocol.cbor import FrozenMap, Simple, Tag, dumps, loads, undefined
    from protocol.errors import CBORError
else:  # CPython: the installed package, as the gateway imports it
    from huaico.protocol.cbor import FrozenMap, Simple, Tag, dumps, loads, undefined
    from huaico.protocol.errors import CBORError

_INF = float("inf")

# Appendix A items given only in diagnostic notation, as Python values.
_DIAGNOSTIC = {
    "Infinity": _INF,
    "-Infinity": -_INF,
    "NaN": float("nan"),
    "undefined": undefined,
    "simple(16)": Simple(16),
    "simple(255)": Simple(255),
    '0("2013-03-21T20:04:00Z")': Tag(0, "2013-03-21T20:04:00Z"),
    "1(1363896240)": Tag(1, 1363896240),
    "1(1363896240.5)": Tag(1, 1363896240.5),
    "23(h'01020304')": Tag(23, b"\x01\x02\x03\x04"),
    "24(h'6449455446')": Tag(24, b"dIETF"),
    '32("http://www.example.com")': Tag(32, "http://www.example.com"),
    "h''": b"",
    "h'01020304'": b"\x01\x02\x03\x04",
    "{1: 2, 3: 4}": {1: 2, 3: 4},
    "(_ h'0102', h'030405')": b"\x01\x02\x03\x04\x05",
}

# The vector file predates RFC 8949, whose §3.3 made 0xf8 followed by a byte
# below 0x20 not well-formed: simple(24) must now be refused.
_NOT_WELL_FORMED = {"f818": "bad_simple"}

_vectors = []


def _load_vectors():
    if not _vectors:
        here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
        path = here.rsplit("/", 1)[0] + "/vectors/cbor-rfc8949-appendix-a.json"
        with open(path) as f:
            _vectors.extend(json.load(f))
    return _vectors


def _unhex(text):
    return binascii.unhexlify(text.replace(" ", ""))


def _same(a, b):
    """Equality that tells -0.0 from 0.0 and holds for NaN, through containers."""
    if type(a) is float and type(b) is float:
        if a != a:
            return b != b
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) in (list, tuple) and type(b) is type(a):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is dict and type(b) is dict:
        return len(a) == len(b) and all(k in b and _same(a[k], b[k]) for k in a)
    if type(a) is Tag and type(b) is Tag:
        return a.tag == b.tag and _same(a.value, b.value)
    return type(a) is type(b) and a == b


def _fails(data, reason, offset=None, **limits):
    try:
        loads(data, **limits)
    except CBORError as e:
        assert e.reason == reason, (data, reason, e.reason)
        if offset is not None:
            assert e.offset == offset, (data, offset, e.offset)
        return
    assert False, "no CBORError for %r" % (data,)


def test_decoded_vectors():
    checked = 0
    for v in _load_vectors():
        if "decoded" in v:
            got = loads(_unhex(v["hex"]))
            assert _same(got, v["decoded"]), (v["hex"], got)
            checked += 1
    assert checked == 59


def test_diagnostic_vectors():
    for v in _load_vectors():
        if "diagnostic" not in v or v["hex"] in _NOT_WELL_FORMED:
            continue
        assert v["diagnostic"] in _DIAGNOSTIC, "no expected value for " + v["diagnostic"]
        got = loads(_unhex(v["hex"]))
        assert _same(got, _DIAGNOSTIC[v["diagnostic"]]), (v["hex"], got)


def test_roundtrip_vectors_reencode_byte_for_byte():
    for v in _load_vectors():
        if v["roundtrip"] and v["hex"] not in _NOT_WELL_FORMED:
            data = _unhex(v["hex"])
            assert dumps(loads(data)) == data, v["hex"]


def test_non_preferred_vectors_reencode_shorter():
    # Floats written wider than needed and indefinite lengths come back in
    # preferred serialization: different bytes, never longer.
    for v in _load_vectors():
        if not v["roundtrip"]:
            data = _unhex(v["hex"])
            again = dumps(loads(data))
            assert again != data and len(again) <= len(data), v["hex"]
            assert _same(loads(again), loads(data)), v["hex"]


def test_vectors_refused_by_rfc8949():
    for v in _load_vectors():
        if v["hex"] in _NOT_WELL_FORMED:
            _fails(_unhex(v["hex"]), _NOT_WELL_FORMED[v["hex"]], 0)


def test_takes_bytearray_and_memoryview():
    data = _unhex("a26161016162820203")
    want = {"a": 1, "b": [2, 3]}
    assert loads(bytearray(data)) == want
    assert loads(memoryview(b"xx" + data)[2:]) == want
    assert dumps(bytearray(b"ab")) == dumps(memoryview(b"ab")) == b"\x42ab"


def test_encodes_shortest_float():
    assert dumps(0.5) == _unhex("f93800")
    assert dumps(0.1) == _unhex("fb3fb999999999999a")
    assert dumps(1.0e-7) == _unhex("fb3e7ad7f29abcaf48")
    assert dumps(5.877471754111438e-39) == _unhex("fa00400000")  # single subnormal
    assert dumps(65536.0) == _unhex("fa47800000")  # beyond half's range
    assert dumps(float("nan")) == _unhex("f97e00")
    assert dumps(-_INF) == _unhex("f9fc00")


def test_encodes_bignums_minimally():
    assert dumps(2 ** 64) == _unhex("c249010000000000000000")
    assert dumps(-(2 ** 64) - 1) == _unhex("c349010000000000000000")
    assert dumps(2 ** 64 - 1) == _unhex("1bffffffffffffffff")
    assert dumps(2 ** 72) == _unhex("c2 4a 01 00000000 00000000 00")
    assert loads(dumps(-(2 ** 200))) == -(2 ** 200)


def test_map_keys_in_bytewise_order():
    # RFC 8949 §4.2.1 sorts by encoded bytes: 100 (18 64) before -1 (20)
    # before "b" (61 62) before "aa" (62 61 61).
    assert dumps({"aa": 1, "b": 2, -1: 3, 100: 4}) == _unhex("a4 1864 04 20 03 6162 02 626161 01")


def test_bool_is_not_an_int():
    assert dumps([True, False, None, 1, 0]) == _unhex("85 f5 f4 f6 01 00")


def test_tags_and_simple_values_roundtrip():
    for value in (Tag(1234567, [1, "x"]), Tag(2 ** 64 - 1, Tag(6, b"")), Simple(0), Simple(19), Simple(32), undefined):
        data = dumps(value)
        assert loads(data) == value
        assert dumps(loads(data)) == data


def test_simple_refuses_reserved_numbers():
    for n in (20, 23, 24, 31, 256, -1):
        try:
            Simple(n)
        except ValueError:
            continue
        assert False, n


def test_unencodable_object_is_a_type_error():
    try:
        dumps({"a": object()})
    except TypeError:
        return
    assert False


def test_self_containing_list_is_refused():
    a = []
    a.append(a)
    try:
        dumps(a)
    except CBORError as e:
        assert e.reason == "depth"
        return
    assert False


def test_array_map_key_becomes_tuple():
    assert loads(_unhex("a1 82 01 9f 02 ff 03")) == {(1, (2,)): 3}
    assert loads(_unhex("a1 c6 82 01 02 03")) == {Tag(6, (1, 2)): 3}


def test_map_as_map_key_is_a_frozen_map():
    got = loads(_unhex("a1 a0 01"))
    assert got == {FrozenMap({}): 1}
    assert loads(_unhex("a1 81 a1 01 02 03")) == {(FrozenMap({1: 2}),): 3}
    assert dumps(got) == _unhex("a1 a0 01")


def test_duplicate_map_key():
    # RFC 8949 §5.6: equal in the data model, whatever the encoding.
    _fails(_unhex("a2 01 02 01 03"), "duplicate_key", 3)
    _fails(_unhex("bf 6161 01 6161 02 ff"), "duplicate_key", 4)
    _fails(_unhex("a2 01 02 1801 03"), "duplicate_key", 3)
    _fails(_unhex("a2 f97e00 01 f97e00 02"), "duplicate_key", 5)
    _fails(_unhex("a2 a0 01 a0 02"), "duplicate_key", 3)


def test_keys_distinct_in_cbor_but_equal_in_a_dict_are_unsupported_not_duplicates():
    for text in ("a2 f4 00 00 f5", "a2 f5 01 01 f5", "a2 f90000 00 00 f5",
                 "a2 f90000 00 f98000 f5", "a2 01 00 f93c00 01"):
        _fails(_unhex(text), "unsupported_key")


def test_every_truncation_is_refused():
    for text in ("1b000000e8d4a51000", "c249010000000000000000", "fb3ff199999999999a",
                 "64f0908591", "a26161016162820203", "9f018202039f0405ffff",
                 "5f42010243030405ff", "d82076687474703a2f2f7777772e6578616d706c652e636f6d"):
        data = _unhex(text)
        for cut in range(len(data)):
            try:
                loads(data[:cut])
            except CBORError as e:
                assert e.reason == "truncated", (text, cut, e.reason)
                assert 0 <= e.offset <= cut, (text, cut, e.offset)
                continue
            assert False, (text, cut)


def test_reserved_additional_information():
    for major in range(8):
        for ai in (28, 29, 30):
            _fails(bytes([major << 5 | ai]), "bad_head", 0)
    for ib in (0x1F, 0x3F, 0xDF):  # indefinite length for int and tag
        _fails(bytes([0x81, ib]), "bad_head", 1)


def test_huge_declared_lengths():
    for ib in (0x5B, 0x7B, 0x9B, 0xBB):
        _fails(bytes([ib]) + b"\xff" * 8, "too_long", 0)
    # max_length is checked before the bytes left, whatever follows.
    _fails(_unhex("5a00010001"), "too_long", 0)
    _fails(_unhex("590101") + b"x" * 257, "too_long", 0, max_length=256)
    assert loads(_unhex("590100") + b"x" * 256, max_length=256) == b"x" * 256
    # Within max_length, yet longer than what is left of the input.
    _fails(_unhex("5a0000ffff") + b"x" * 100, "truncated", 0)
    _fails(_unhex("9b") + b"\xff" * 8, "truncated", 0, max_length=2 ** 64)
    _fails(_unhex("a3 01 02"), "truncated", 0)


def test_indefinite_string_length_limit():
    _fails(_unhex("5f 43 010203 43 040506 ff"), "too_long", 0, max_length=5)


def test_nesting_limit():
    assert loads(b"\x81" * 16 + b"\x00") is not None
    _fails(b"\x81" * 17 + b"\x00", "depth", 16)
    _fails(b"\x9f" * 17 + b"\xff" * 17, "depth", 16)
    _fails(b"\xc6" * 17 + b"\x00", "depth", 16)
    _fails(b"\x81" * 17 + b"\x80", "depth", 16)
    _fails(b"\x81\x81\x81\x00", "depth", 2, max_depth=2)
    assert loads(b"\x81" * 40 + b"\x00", max_depth=40) is not None


def test_item_limit():
    assert loads(_unhex("83010203"), max_items=4) == [1, 2, 3]
    _fails(_unhex("83010203"), "too_many", 3, max_items=3)


def test_bad_utf8():
    _fails(_unhex("62c328"), "bad_utf8", 0)
    _fails(_unhex("63eda080"), "bad_utf8", 0)  # surrogate
    _fails(_unhex("62c080"), "bad_utf8", 0)  # overlong
    _fails(_unhex("64f4908080"), "bad_utf8", 0)  # beyond U+10FFFF
    _fails(_unhex("82 00 61ff"), "bad_utf8", 2)
    # A chunk may not split a character.
    _fails(_unhex("7f 61c3 61bc ff"), "bad_utf8", 1)


def test_break_outside_indefinite():
    _fails(b"\xff", "break", 0)
    _fails(_unhex("81ff"), "break", 1)
    _fails(_unhex("9f 81 ff ff"), "break", 2)
    _fails(_unhex("bf 01 ff"), "break", 2)  # key without a value


def test_chunk_types_must_match():
    _fails(_unhex("5f 6161 ff"), "bad_chunk", 1)
    _fails(_unhex("7f 4161 ff"), "bad_chunk", 1)
    _fails(_unhex("5f 5f ff ff"), "bad_chunk", 1)
    _fails(_unhex("5f 01 ff"), "bad_chunk", 1)


def test_two_byte_simple_below_32():
    for n in range(32):
        _fails(bytes([0xF8, n]), "bad_simple", 0)
    assert loads(b"\xf8\x20") == Simple(32)


def test_trailing_bytes():
    _fails(b"\x00\x00", "trailing", 1)
    _fails(_unhex("81 01 02"), "trailing", 2)


def test_bignum_tag_needs_bytes():
    _fails(_unhex("c2 01"), "bad_tag", 0)
    assert loads(_unhex("c3 5f 41 01 ff")) == -2
