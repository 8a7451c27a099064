"""protocol.cbor agrees with cbor2 on generated values, and round-trips them.

cbor2's canonical=True sorts map keys length-first (RFC 7049 §3.9) while we
sort bytewise (RFC 8949 §4.2.1), so byte-for-byte equality is asserted only
for values whose every map orders its keys the same both ways; for the rest
each decoder must still read the other's output back to the same value.
"""

import math
from collections.abc import Mapping
import struct

import cbor2
from hypothesis import given, settings
from hypothesis import strategies as st

from huaico.protocol.cbor import Simple, Tag, dumps, loads, undefined

_PROBES = (7, [1], {1: 2}, b"a", "x", 1.5, None)


def _left_as_tags(number):
    """Whether cbor2 gives this tag back as a plain CBORTag whatever it holds."""
    for probe in _PROBES:
        try:
            decoded = cbor2.loads(dumps(Tag(number, probe)))
        except cbor2.CBORDecodeError:
            return False
        if type(decoded) is not cbor2.CBORTag:
            return False
    return True


# cbor2 turns tags it knows (dates, bigfloats, sets, ...) into Python objects;
# the comparison uses only tags both libraries keep as tags.
_FREE_TAGS = [n for n in range(300) if _left_as_tags(n)]

tag_numbers = st.one_of(st.sampled_from(_FREE_TAGS), st.integers(2 ** 16, 2 ** 64 - 1))
keys = st.one_of(
    st.integers(-(2 ** 70), 2 ** 70),
    st.text(max_size=8),
    st.tuples(st.integers(-30, 30), st.text(max_size=3)),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2 ** 64) - 2, 2 ** 64 + 1),
    st.integers(-(2 ** 130), 2 ** 130),
    st.floats(),
    st.floats(width=16),
    st.floats(width=32),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.builds(Simple, st.one_of(st.integers(0, 19), st.integers(32, 255))),
    st.just(undefined),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.dictionaries(keys, children, max_size=5),
        st.builds(Tag, tag_numbers, children),
    ),
    max_leaves=20,
)

_LIMITS = {"max_depth": 64}


def _to_cbor2(value):
    if isinstance(value, Tag):
        return cbor2.CBORTag(value.tag, _to_cbor2(value.value))
    if isinstance(value, Simple):
        return cbor2.CBORSimpleValue(value.value)
    if value is undefined:
        return cbor2.undefined
    if isinstance(value, list):
        return [_to_cbor2(item) for item in value]
    if isinstance(value, dict):
        return {_to_cbor2(k): _to_cbor2(v) for k, v in value.items()}
    return value


def _from_cbor2(value, in_key=False):
    """cbor2's decoded form in ours: arrays are tuples only inside map keys."""
    if isinstance(value, cbor2.CBORTag):
        return Tag(value.tag, _from_cbor2(value.value, in_key))
    if isinstance(value, cbor2.CBORSimpleValue):
        return Simple(value.value)
    if value is cbor2.undefined:
        return undefined
    if isinstance(value, (list, tuple)):
        items = [_from_cbor2(item, in_key) for item in value]
        return tuple(items) if in_key else items
    if isinstance(value, Mapping):  # cbor2 gives a frozendict inside tags
        return {_from_cbor2(k, True): _from_cbor2(v) for k, v in value.items()}
    return value


def _same(a, b):
    """Equality that tells -0.0 from 0.0, holds for NaN and tells bool from int."""
    if type(a) is not type(b):
        return False
    if type(a) is float:
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(k in b and _same(v, b[k]) for k, v in a.items())
    if type(a) is Tag:
        return a.tag == b.tag and _same(a.value, b.value)
    return a == b


def _orders_agree(value):
    """Whether bytewise and length-first key order agree in every map of value."""
    if isinstance(value, Tag):
        return _orders_agree(value.value)
    if isinstance(value, list):
        return all(_orders_agree(item) for item in value)
    if isinstance(value, dict):
        encoded = [dumps(k) for k in value]
        if sorted(encoded) != sorted(encoded, key=lambda e: (len(e), e)):
            return False
        return all(_orders_agree(v) for v in value.values())
    return True


def _without_nan_payloads(value):
    # A NaN with a payload or sign has no exact half-float form; RFC 8949
    # §4.2.2 lets a deterministic encoder write every NaN as f97e00, and we do.
    if isinstance(value, float) and math.isnan(value):
        return float("nan")
    if isinstance(value, Tag):
        return Tag(value.tag, _without_nan_payloads(value.value))
    if isinstance(value, list):
        return [_without_nan_payloads(item) for item in value]
    if isinstance(value, dict):
        return {k: _without_nan_payloads(v) for k, v in value.items()}
    return value


@settings(max_examples=400)
@given(values)
def test_roundtrip(value):
    value = _without_nan_payloads(value)
    data = dumps(value)
    assert _same(loads(data, **_LIMITS), value)
    assert dumps(loads(data, **_LIMITS)) == data


@settings(max_examples=400)
@given(values)
def test_same_bytes_as_cbor2_canonical(value):
    value = _without_nan_payloads(value)
    ours = dumps(value)
    theirs = cbor2.dumps(_to_cbor2(value), canonical=True)
    if _orders_agree(value):
        assert ours == theirs
    else:
        assert sorted(ours) == sorted(theirs)  # same bytes, maps in another order


@settings(max_examples=400)
@given(values)
def test_decoders_agree(value):
    value = _without_nan_payloads(value)
    ours = dumps(value)
    theirs = cbor2.dumps(_to_cbor2(value), canonical=True)
    assert _same(_from_cbor2(cbor2.loads(ours)), value)
    assert _same(loads(theirs, **_LIMITS), value)


@settings(max_examples=300)
@given(st.floats())
def test_float_width_is_shortest_exact(value):
    data = dumps(value)
    if math.isnan(value):
        assert data == b"\xf9\x7e\x00"
        return
    formats = {3: ">e", 5: ">f", 9: ">d"}
    assert struct.unpack(formats[len(data)], data[1:])[0] == value
    # No narrower width would have kept the value.
    for size, fmt in formats.items():
        if size < len(data):
            try:
                packed = struct.pack(fmt, value)
            except OverflowError:
                continue
            assert struct.unpack(fmt, packed)[0] != value


@settings(max_examples=300)
@given(st.integers())
def test_integer_encoding_matches_cbor2(value):
    assert dumps(value) == cbor2.dumps(value, canonical=True)
    assert loads(dumps(value)) == value
