"""Hostile input to protocol.cbor: only CBORError comes out, and work stays bounded.

Bounds are shown by where the decoder stops (the error's offset) and by
tracemalloc's peak, never by wall-clock time.
"""

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from huaico.protocol.cbor import _utf8_ok, dumps, loads
from huaico.protocol.errors import CBORError
from tests.test_cbor_properties import values

# Heads that declare the largest possible length or count, and heads that
# open containers, spliced into valid encodings.
_HOSTILE_HEADS = [
    bytes([ib]) + b"\xff" * 8 for ib in (0x5B, 0x7B, 0x9B, 0xBB, 0xDB)
] + [b"\x5a\x00\x00\xff\xff", b"\x9f", b"\xbf", b"\x5f", b"\x7f", b"\xff", b"\xf8\x18", b"\x1c"]


def _decode_or_cbor_error(data, **limits):
    """Decode data; anything decoded must encode again. Returns the error or None."""
    try:
        value = loads(data, **limits)
    except CBORError as e:
        assert isinstance(e.reason, str) and e.reason
        assert -1 <= e.offset <= len(data)
        return e
    again = dumps(value)
    assert dumps(loads(again, max_depth=64, max_items=10 ** 6, max_length=10 ** 6)) == again
    return None


@settings(max_examples=500)
@given(st.binary(max_size=300))
def test_random_bytes(data):
    _decode_or_cbor_error(data)
    _decode_or_cbor_error(memoryview(data), max_depth=3, max_items=20, max_length=8)


@settings(max_examples=300)
@given(values, st.data())
def test_truncations(value, data):
    encoded = dumps(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    error = _decode_or_cbor_error(encoded[:cut], max_depth=64)
    assert error is not None and error.reason == "truncated"


@settings(max_examples=400)
@given(values, st.data())
def test_bit_flips(value, data):
    encoded = bytearray(dumps(value))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(encoded) - 1))
        encoded[i] ^= 1 << data.draw(st.integers(0, 7))
    _decode_or_cbor_error(bytes(encoded), max_depth=64)


@settings(max_examples=400)
@given(values, st.sampled_from(_HOSTILE_HEADS), st.data())
def test_spliced_heads(value, head, data):
    encoded = dumps(value)
    i = data.draw(st.integers(0, len(encoded)))
    _decode_or_cbor_error(encoded[:i] + head + encoded[i:], max_depth=64)
    _decode_or_cbor_error(encoded[:i] + head + encoded[i + 1:])


def test_deep_nesting_stops_at_the_limit():
    for opener in (b"\x81", b"\x9f", b"\xa1\x00", b"\xc6", b"\xbf\x00"):
        error = _decode_or_cbor_error(opener * 100000)
        assert error.reason == "depth"
        assert error.offset == 16 * len(opener)


def test_deep_nesting_within_a_raised_limit_needs_no_recursion():
    # The decoder keeps its own stack: 100000 levels decode where a recursive
    # decoder would overflow CPython's stack.
    value = loads(b"\x81" * 100000 + b"\x00", max_depth=100000, max_items=200000)
    depth = 0
    while type(value) is list:
        value = value[0]
        depth += 1
    assert depth == 100000 and value == 0


def test_ten_megabytes_of_nesting_is_refused_early():
    data = b"\x81" * 10000000
    tracemalloc.start()
    try:
        error = _decode_or_cbor_error(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert error.reason == "depth" and error.offset == 16
    assert peak < 64 * 1024


def test_item_limit_bounds_work_on_a_long_flat_input():
    error = _decode_or_cbor_error(b"\x9f" + b"\x00" * 10000000)
    assert error.reason == "too_many" and error.offset == 4096


def _peak_while_refusing(data, **limits):
    tracemalloc.start()
    try:
        error = _decode_or_cbor_error(data, **limits)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return error, peak


def test_huge_declared_lengths_allocate_nothing_for_them():
    unlimited = {"max_length": 2 ** 64, "max_items": 2 ** 64}
    for ib in (0x5B, 0x7B, 0x9B, 0xBB):
        data = bytes([ib]) + b"\xff" * 8
        error, peak = _peak_while_refusing(data)
        assert error.reason == "too_long" and error.offset == 0
        assert peak < 16 * 1024
        error, peak = _peak_while_refusing(data + b"\x00" * 100, **unlimited)
        assert error.reason == "truncated" and error.offset == 0
        assert peak < 16 * 1024


def test_huge_length_deep_inside_is_refused_without_allocating():
    data = b"\x82\x00" * 10 + b"\x5b" + b"\xff" * 8
    error, peak = _peak_while_refusing(data, max_length=2 ** 64)
    assert error.reason == "truncated" and error.offset == 20
    assert peak < 16 * 1024


@settings(max_examples=500)
@given(st.one_of(st.binary(max_size=12), st.text(max_size=6).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_utf8_check_matches_cpython(raw):
    # _utf8_ok guards text on MicroPython, whose decoder lets ill-formed
    # UTF-8 through; CPython's strict decoder is the reference for it.
    try:
        raw.decode("utf-8")
        expected = True
    except UnicodeDecodeError:
        expected = False
    assert _utf8_ok(raw) == expected


def test_utf8_check_on_boundaries():
    for good in (b"\x7f", b"\xc2\x80", b"\xdf\xbf", b"\xe0\xa0\x80", b"\xed\x9f\xbf", b"\xee\x80\x80",
                 b"\xf0\x90\x80\x80", b"\xf4\x8f\xbf\xbf"):
        assert _utf8_ok(good), good
    for bad in (b"\x80", b"\xc1\xbf", b"\xe0\x9f\xbf", b"\xed\xa0\x80", b"\xf0\x8f\xbf\xbf",
                b"\xf4\x90\x80\x80", b"\xf5\x80\x80\x80", b"\xe1\x80", b"\xe1\x80\xc0"):
        assert not _utf8_ok(bad), bad
