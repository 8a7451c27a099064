"""Hostile frames against both decoders: only ProtocolError comes out, both say the same, work stays bounded.

Inputs are random bytes, valid frames and acks cut, flipped, spliced and
stretched, and payloads mutated then MACed again (or sent unsigned to a
device allowed to) so that the hostility reaches the payload scanner
behind the MAC check. Bounds are shown by tracemalloc's peak and by
counting the pure decoder's function calls, never by wall-clock time.
Runs are derandomized so that a failure is the same on every run.

The MAC itself is held to a property: a signed frame or ack changed
anywhere the MAC covers (protected header, payload, any byte of the tag)
and not MACed again is refused by both builds, whatever the change.
"""
import hashlib
import hmac
import sys
import tracemalloc

import cbor2
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from huaico.protocol import frame as pure
from huaico.protocol.cose import PROTECTED, MacKey
from tests.fixtures.frames import ack_outcome, outcome
from tests.portable.test_frame import EXAMPLE_ACK, EXAMPLE_FRAME, EXAMPLE_UNSIGNED, KID

RAW_KEY = bytes(range(32))
KEY = MacKey(RAW_KEY, allow_unsigned=True)
KEY_FOR = {KID: KEY}.get
STRICT = MacKey(RAW_KEY)  # a device that must sign: nothing passes without a MAC
FRAME = bytes.fromhex(EXAMPLE_FRAME)
ACK = bytes.fromhex(EXAMPLE_ACK)
UNSIGNED = bytes.fromhex(EXAMPLE_UNSIGNED)
PAYLOAD = cbor2.loads(FRAME).value[2]
SETTINGS = settings(max_examples=300, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])
# SPEC.md §5: every reason a decoder may give.
REASONS = {"truncated", "malformed", "structure", "trailing", "version", "too_many", "too_long",
           "int_range", "no_kid", "unknown_device", "unsigned", "bad_alg", "bad_mac", "repeated"}

# Heads declaring the largest lengths and counts, opening indefinite items, tags,
# simple values, floats and reserved codes.
HOSTILE = [bytes([ib]) + b"\xff" * 8 for ib in (0x1B, 0x3B, 0x5B, 0x7B, 0x9B, 0xBB, 0xDB)] + [
    bytes([ib]) + b"\x7f" + b"\xff" * 7 for ib in (0x5B, 0x7B, 0x9B, 0xBB)] + [
    b"\xbb\x3f" + b"\xff" * 7, b"\x5a\xff\xff\xff\xff", b"\x9a\xff\xff\xff\xff", b"\x9f", b"\x5f",
    b"\x7f", b"\xbf", b"\xff", b"\xd8\x11", b"\xd1", b"\xc2\x41\x01", b"\xf9\x7e\x00",
    b"\xfb" + b"\x7f\xf0" + bytes(6), b"\xf8\x18", b"\xf4", b"\xf7", b"\x1c", b"\x3d", b"\x5e",
    b"\xfc", b"\x84" * 16, b"\xa1\x05" * 12]


def _both(impls, data):
    """Decode data as a frame and as an ack in both builds; both must agree and
    give nothing but a named ProtocolError. Returns the frame outcome."""
    frames = [outcome(module, data, KEY_FOR) for module in impls]
    assert frames[0] == frames[1], data.hex()
    acks = [ack_outcome(module, data, KEY) for module in impls]
    assert acks[0] == acks[1], data.hex()
    for result in (frames[0], acks[0]):
        if result[0] == "error":
            assert result[2] in REASONS, result
            assert -1 <= result[3] <= max(len(data), pure.MAX_BYTES), result
    return frames[0]


def _mac0(payload, protected=PROTECTED, unprotected=None):
    """payload MACed under RAW_KEY with hmac and cbor2, not with frame.py."""
    structure = cbor2.dumps(["MAC0", protected, b"", payload])
    tag = hmac.new(RAW_KEY, structure, hashlib.sha256).digest()[:8]
    header = {4: KID} if unprotected is None else unprotected
    return cbor2.dumps(cbor2.CBORTag(17, [protected, header, payload, tag]))


def _unsigned(payload, unprotected=None):
    header = {4: KID} if unprotected is None else unprotected
    return cbor2.dumps(cbor2.CBORTag(17, [b"", header, payload, b""]))


@st.composite
def mutated(draw, data):
    """data after one to four cuts, flips, insertions, deletions or hostile splices."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(out)))
        op = draw(st.sampled_from(["cut", "flip", "insert", "delete", "splice", "replace"]))
        if op == "cut":
            del out[at:]
        elif op == "flip" and at < len(out):
            out[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "insert":
            out[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete":
            del out[at:at + draw(st.integers(1, 4))]
        elif op == "splice":
            out[at:at] = draw(st.sampled_from(HOSTILE))
        elif op == "replace" and at < len(out):
            out[at] = draw(st.integers(0, 255))
    return bytes(out)


@SETTINGS
@given(st.binary(max_size=300))
def test_random_bytes(impls, data):
    _both(impls, data)


@SETTINGS
@given(st.sampled_from([b"\xd1", b"\xd1\x84", b"\x84\x43\xa1\x01\x04", b"\xd1\x84\x43\xa1\x01\x04\xa1",
                        b"\xd1\x84\x43\xa1\x01\x04\xa1\x04\x44" + KID,
                        b"\xd1\x84\x40\xa1\x04\x44" + KID]),
       st.binary(max_size=200))
def test_random_bytes_after_a_plausible_start(impls, start, rest):
    _both(impls, start + rest)


@SETTINGS
@given(st.sampled_from([FRAME, ACK, UNSIGNED]).flatmap(mutated))
def test_mutated_messages(impls, data):
    _both(impls, data)


@SETTINGS
@given(mutated(PAYLOAD), st.booleans())
def test_mutated_payloads_behind_a_good_mac(impls, payload, signed):
    result = _both(impls, _mac0(payload) if signed else _unsigned(payload))
    if result[0] == "ok":
        # Whatever a mangled payload decodes to, cbor2 reads the same payload.
        items = cbor2.loads(payload)
        assert result[1][1:4] == tuple(items[1:4])


@SETTINGS
@given(st.lists(st.sampled_from(HOSTILE) | st.binary(max_size=3), max_size=6), st.booleans())
def test_hostile_items_in_the_headers(impls, items, protected):
    # The unprotected header is not MACed: anything may sit there on a radio link.
    junk = b"".join(items)
    unprotected = b"\xa2\x04\x44" + KID + b"\x05" + junk
    data = b"\xd1\x84\x43\xa1\x01\x04" + unprotected + FRAME[13:]
    _both(impls, data)
    if protected:
        header = b"\xa2\x01\x04\x05" + junk
        _both(impls, _mac0(PAYLOAD, protected=header))


@SETTINGS
@given(mutated(PAYLOAD))
def test_mutated_ack_payloads_behind_a_good_mac(impls, payload):
    structure = cbor2.dumps(["MAC0", PROTECTED, pure.ACK_AAD, payload])
    tag = hmac.new(RAW_KEY, structure, hashlib.sha256).digest()[:8]
    _both(impls, cbor2.dumps(cbor2.CBORTag(17, [PROTECTED, {4: KID}, payload, tag])))


def _maced_parts(data):
    """(protected, payload, tag) of a COSE_Mac0, tagged or not, as cbor2 reads
    data; None when it is no such thing."""
    try:
        item = cbor2.loads(data)
    except cbor2.CBORDecodeError:
        return None
    if isinstance(item, cbor2.CBORTag):
        if item.tag != 17:
            return None
        item = item.value
    if not isinstance(item, (list, tuple)) or len(item) != 4:
        return None
    return item[0], item[2], item[3]


def _strict_outcome(impls, kind, data):
    """data decoded as a frame or an ack for a device that must sign, in both
    builds; they must agree."""
    if kind == "frame":
        results = [outcome(module, data, {KID: STRICT}.get) for module in impls]
    else:
        results = [ack_outcome(module, data, STRICT) for module in impls]
    assert results[0] == results[1], data.hex()
    return results[0]


def _regions(data):
    """Where the MAC's inputs sit in data: the protected header's bytes, the
    payload's, the tag's (start, end)."""
    protected, payload, tag = _maced_parts(data)
    at = data.index(payload)
    return {"protected": (3, 3 + len(protected)), "payload": (at, at + len(payload)),
            "tag": (len(data) - len(tag), len(data))}


@st.composite
def covered_changes(draw):
    """(kind, region, message): FRAME or ACK with one to three bytes of one
    MACed region changed, and no new MAC."""
    kind, data = draw(st.sampled_from([("frame", FRAME), ("ack", ACK)]))
    region = draw(st.sampled_from(["protected", "payload", "tag"]))
    start, end = _regions(data)[region]
    out = bytearray(data)
    for at, mask in draw(st.lists(st.tuples(st.integers(start, end - 1), st.integers(1, 255)),
                                  min_size=1, max_size=3, unique_by=lambda change: change[0])):
        out[at] ^= mask
    return kind, region, bytes(out)


def _last_tag_bit(data):
    return data[:-1] + bytes([data[-1] ^ 1])


@SETTINGS
@given(covered_changes())
@example(("frame", "tag", _last_tag_bit(FRAME)))
@example(("ack", "tag", _last_tag_bit(ACK)))
def test_a_change_the_mac_covers_is_refused_without_a_new_mac(impls, change):
    kind, region, data = change
    result = _strict_outcome(impls, kind, data)
    assert result[0] == "error", (region, data.hex(), result)
    if region != "protected":
        # The structure is intact: only the tag can tell, and it must.
        assert result[1:3] == ("AuthError", "bad_mac"), (region, data.hex(), result)


@SETTINGS
@given(st.sampled_from([("frame", FRAME), ("ack", ACK)]).flatmap(
    lambda pair: st.tuples(st.just(pair[0]), mutated(pair[1]))))
def test_mutated_signed_messages_are_refused_unless_the_maced_parts_stand(impls, case):
    # Cuts, splices and flips anywhere: accepted only when cbor2 still reads
    # the very protected header, payload and tag that were MACed (a change in
    # the unprotected header or in how a head is written, which the MAC does
    # not cover, or the outer tag left off).
    kind, data = case
    result = _strict_outcome(impls, kind, data)
    original = FRAME if kind == "frame" else ACK
    if result[0] == "ok":
        assert _maced_parts(data) == _maced_parts(original), (data.hex(), result)


def _hostile_2k():
    """Frames of about 2 KB built to make a decoder work or allocate."""
    n = pure.MAX_BYTES
    header = b"\xd1\x84\x43\xa1\x01\x04"
    # 255 readings declared; each 18 3f 00 00 is channel 63, dt 0, value 0.
    readings = b"\x99\x02\xfd" + b"\x18\x3f\x00\x00" * 255
    quality = b"\xb9\xff\xff" + b"".join(bytes((0x18, at, 1)) for at in range(24, 255))
    return {
        "nested arrays": b"\x84" * n,
        "nested maps": b"\xd1\x84\x43\xa1\x01\x04" + b"\xa1\x05" * ((n - 6) // 2),
        "deep header item": header + b"\xa1\x05" + b"\x81" * (n - 8),
        "header of many items": header + b"\xb9\x03\x00" + b"\x05\x00" * ((n - 9) // 2),
        "header bstrs": header + b"\xb9\x01\x00" + b"\x05\x59\x00\x04abcd" * ((n - 9) // 8),
        "nested tags": header + b"\xa1\x05" + b"\xd8\x20" * ((n - 8) // 2),
        "huge declared length": header + b"\xa1\x05\x5b\x7f" + b"\xff" * (n - 10),
        "readings cut short": _unsigned(b"\x85\x01\x01\x02\x00" + readings[:800]),
        "255 readings then junk": _unsigned(b"\x85\x01\x01\x02\x00" + readings + b"\x00" * 900),
        "quality entries past the readings": _unsigned(
            b"\x86\x01\x01\x02\x00" + readings + quality + b"\x00\x01" * 100),
    }


def test_memory_stays_small_for_hostile_frames(impls):
    for name, data in _hostile_2k().items():
        assert len(data) <= pure.MAX_BYTES + 64, name
        for module in impls:
            tracemalloc.start()
            try:
                result = outcome(module, data, KEY_FOR)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert peak < 64 * 1024, (name, module.__name__, peak, result)


def _calls(data):
    """How many Python functions the pure decoder calls for data."""
    count = [0]

    def profile(frame, event, arg):
        if event == "call":
            count[0] += 1

    sys.setprofile(profile)
    try:
        outcome(pure, data, KEY_FOR)
    finally:
        sys.setprofile(None)
    return count[0]


def test_work_is_linear_in_the_input():
    # The compiled decoder runs the same source, so the pure one's calls count for both.
    for name, data in _hostile_2k().items():
        assert _calls(data) <= 2 * len(data) + 64, name
    # One channel and index at 255 times: every key after the first takes the exact check.
    valid = pure.encode_frame(KID, KEY, 1, 2, 0, [(1, 0, dt, 4, 0) for dt in range(pure.MAX_READINGS)])
    assert _calls(valid) <= 2 * len(valid) + 64


def test_inputs_above_max_bytes_are_too_long(impls):
    big = FRAME + bytes(pure.MAX_BYTES + 1 - len(FRAME))
    for module in impls:
        for data in (big, bytearray(big), memoryview(big), bytes(10 ** 6)):
            result = outcome(module, data, KEY_FOR)
            assert result[:3] == ("error", "FrameError", "too_long"), (module.__name__, result)
            assert ack_outcome(module, data, KEY)[2] == "too_long"
        at_limit = outcome(module, big[:pure.MAX_BYTES], KEY_FOR)
        assert at_limit[:3] == ("error", "FrameError", "trailing")
