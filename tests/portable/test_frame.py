"""protocol.frame: round trips, SPEC.md's worked example, and every way a frame is refused.

Plain asserts and no pytest import: pytest runs this file on CPython and
tests/portable/run.py runs it under MicroPython at a board's heap, so the
board's encoder and the gateway's reference decoder are held to the same
bytes. Hostile frames are built with protocol.cbor and MACed here over the
MAC_structure of RFC 9052 §6.3, not with frame.py's own helpers, so a
mistake in how frame.py lays out that structure cannot hide itself.
"""
import binascii
import sys

if sys.implementation.name == "micropython":  # a board's name for the package
    from protocol import cbor
    from protocol import frame as wire
    from protocol.cose import HDR_KID, PROTECTED, MacKey
    from protocol.errors import AuthError, FrameError
else:  # CPython: the installed package, as the gateway imports it
    from huaico.protocol import cbor
    from huaico.protocol import frame as wire
    from huaico.protocol.cose import HDR_KID, PROTECTED, MacKey
    from huaico.protocol.errors import AuthError, FrameError

KEY = MacKey(bytes(range(32)))
KID = binascii.unhexlify("a1b2c3d4")
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)

# SPEC.md §4: the worked example, byte for byte.
EXAMPLE_READINGS = [(1, 0, 0, 4, 0), (4, 0, 0, 1234, 0), (5, 0, -60, 1850, 0), (19, 0, 0, 3900, 0)]
EXAMPLE_FRAME = ("d18443a10104a10444a1b2c3d4581f85011910011a6afd86c0018c01000404001904d205383b"
                 "19073a1300190f3c48839e2ac9921dbfdc")
EXAMPLE_QUALITY_PAYLOAD = "86011910021a6afd87ec0286184400001300190d48a10001"
EXAMPLE_ACK = "d18443a10104a10444a1b2c3d449821910011a6afd86c2484f4f0634459ef2bf"
EXAMPLE_UNSIGNED = "d18440a10444a1b2c3d44d8501071a6afd86c0008302000140"


def _hex(data):
    return binascii.hexlify(data).decode()


def _key_for(kid):
    return KEY if kid == KID else None


def _fields(frame):
    return (frame.kid, frame.seq, frame.time, frame.flags, frame.rows, frame.signed)


def _rows(time, readings):
    return [(c, i, time + dt, v, q) for c, i, dt, v, q in readings]


def _mac0(payload, key=KEY, kid=KID, aad=b"", protected=PROTECTED):
    """A COSE_Mac0 around any payload, MACed as RFC 9052 §6.3 says."""
    structure = cbor.dumps(["MAC0", protected, aad, payload])
    return cbor.dumps(cbor.Tag(17, [protected, {HDR_KID: kid}, payload, key.tag(structure)]))


def _refused(reason, func, *args):
    """Call func; it must raise FrameError (or AuthError) with this reason."""
    try:
        result = func(*args)
    except FrameError as exc:
        assert exc.reason == reason, (exc.reason, reason, str(exc))
        return exc
    raise AssertionError("accepted, wanted %r: %r" % (reason, result))


def _decode(data):
    return wire.decode_frame(data, _key_for)


def test_worked_example_frame():
    data = wire.encode_frame(KID, KEY, 4097, 1795000000, wire.FLAG_CLOCK_UNSYNCED,
                             EXAMPLE_READINGS)
    assert _hex(data) == EXAMPLE_FRAME
    assert len(data) == 55
    frame = _decode(data)
    assert _fields(frame) == (KID, 4097, 1795000000, 1, [
        (1, 0, 1795000000, 4, 0), (4, 0, 1795000000, 1234, 0),
        (5, 0, 1794999940, 1850, 0), (19, 0, 1795000000, 3900, 0)], True)


def test_worked_example_quality_payload():
    payload = wire.encode_payload(4098, 1795000300, wire.FLAG_LOW_BATTERY,
                                  [(4, 1, 0, 0, wire.Q_NO_RETURN), (19, 0, 0, 3400, 0)])
    assert _hex(payload) == EXAMPLE_QUALITY_PAYLOAD
    frame = _decode(_mac0(payload))
    assert frame.rows == [(4, 1, 1795000300, 0, wire.Q_NO_RETURN), (19, 0, 1795000300, 3400, 0)]


def test_worked_example_ack_and_unsigned():
    assert _hex(wire.encode_ack(KID, KEY, 4097, 1795000002)) == EXAMPLE_ACK
    assert wire.decode_ack(binascii.unhexlify(EXAMPLE_ACK), KEY) == (KID, 4097, 1795000002)
    unsigned = wire.encode_frame(KID, None, 7, 1795000000, 0, [(2, 0, 0, 1, 0)])
    assert _hex(unsigned) == EXAMPLE_UNSIGNED


def test_round_trip():
    cases = [
        (0, 0, 0, []),
        (1, 1795000000, 0, [(1, 0, 0, 4, 0)]),
        (65536, 1795000000, wire.FLAG_CLOCK_UNSYNCED | wire.FLAG_REBOOTED, [
            (4, 0, 0, 1234, 0), (4, 1, -300, -250, 0), (4, 7, 300, 0, wire.Q_NO_RETURN),
            (6, 2, -1, -5000, wire.Q_OUT_OF_RANGE), (12, 3, 86400, 9000, wire.Q_STUCK),
            (63, 7, -86400, 200000, wire.Q_NOISY), (20, 0, 0, -87, 0)]),
        (2 ** 32 - 1, 2 ** 32, wire.FLAG_DROPPED | wire.FLAG_LOW_BATTERY,
         [(21, 0, 0, 4294967295, 0), (21, 1, 0, 0, 0), (21, 0, 1, 1, 0)]),
        (INT64_MAX, INT64_MAX, INT64_MAX, [(1, 0, 0, INT64_MAX, 0), (2, 0, 0, INT64_MIN, 0),
                                           (3, 0, INT64_MIN, -1, 0)]),
        (5, 0, 0, [(1, 0, INT64_MAX, 0, 0), (2, 5, -1, -24, 0), (3, 6, -25, 23, 0),
                   (5, 0, 24, -256, 0), (5, 1, 255, -257, 0)]),
        (9, 1795000000, 0, [(c, c % 8, c - 32, c * 1000 - 31000, c % 5) for c in range(1, 64)]),
    ]
    for seq, time, flags, readings in cases:
        data = wire.encode_frame(KID, KEY, seq, time, flags, readings)
        assert _fields(_decode(data)) == (KID, seq, time, flags, _rows(time, readings), True), seq
        # memoryview and bytearray input decode the same.
        assert _fields(_decode(memoryview(data))) == _fields(_decode(bytearray(data)))


def test_round_trip_most_readings():
    readings = [(1 + at % 63, at % 8, at - 128, -at, 0 if at % 50 else 1 + at % 4)
                for at in range(wire.MAX_READINGS)]
    data = wire.encode_frame(KID, KEY, 3, 1795000000, 0, readings)
    assert len(data) <= wire.MAX_BYTES
    rows = _decode(data).rows
    assert len(rows) == len(readings)
    # Row by row: a second list of 255 tuples does not fit a 128 KB heap beside the rest.
    for at in range(len(readings)):
        c, i, dt, v, q = readings[at]
        assert rows[at] == (c, i, 1795000000 + dt, v, q), at
    try:
        wire.encode_frame(KID, KEY, 3, 1795000000, 0, readings + [(1, 0, 0, 0, 0)])
    except ValueError:
        return
    raise AssertionError("encode_frame took more than MAX_READINGS")


def test_ack_round_trip():
    for seq, time in ((0, 0), (1, 1795000002), (2 ** 32 - 1, 2 ** 32), (INT64_MAX, INT64_MAX)):
        assert wire.decode_ack(wire.encode_ack(KID, KEY, seq, time), KEY) == (KID, seq, time)


# SPEC.md §4: version 2, the same readings under epoch 0x5a, and an ack that
# carries no time.
EXAMPLE_EPOCH_FRAME = ("d18443a10104a10444a1b2c3d4582185021a5a0010011a6afd86c0008c01000404001904d205383b"
                       "19073a1300190f3c48dc9eb96ecaaacc32")
EXAMPLE_UNTIMED_ACK = "d18443a10104a10444a1b2c3d447821a5a001001f648bc22aecefdadd087"


def test_worked_example_epoch_frame_and_untimed_ack():
    data = wire.encode_frame(KID, KEY, 4097, 1795000000, 0, EXAMPLE_READINGS, 0x5a)
    assert _hex(data) == EXAMPLE_EPOCH_FRAME
    frame = _decode(data)
    assert (frame.epoch, frame.seq) == (0x5a, 0x5a001001)
    assert _decode(binascii.unhexlify(EXAMPLE_FRAME)).epoch == 0
    assert _hex(wire.encode_ack(KID, KEY, 0x5a001001, None)) == EXAMPLE_UNTIMED_ACK
    assert wire.decode_ack(binascii.unhexlify(EXAMPLE_UNTIMED_ACK), KEY) == (KID, 0x5a001001, None)


def test_epoch_limits():
    at_base = [(c, i, 0, v, q) for c, i, dt, v, q in EXAMPLE_READINGS]
    # The epoch costs no byte: the worst case is version 1's with a seq of 2**32 - 1.
    for epoch, counter in ((1, 0), (255, wire.MAX_COUNTER)):
        data = wire.encode_frame(KID, KEY, counter, 1795000000, wire.FLAG_CLOCK_UNSYNCED, at_base, epoch)
        assert len(data) <= 56
        assert _decode(data).epoch == epoch
    for epoch, counter in ((256, 0), (1, wire.MAX_COUNTER + 1), (-1, 0)):
        try:
            wire.encode_frame(KID, KEY, counter, 0, 0, [], epoch)
        except ValueError:
            continue
        raise AssertionError("encoded epoch %d counter %d" % (epoch, counter))
    # A version 2 seq must hold an epoch of 1..255.
    for seq in (0, 1, wire.MAX_COUNTER, 256 << wire.EPOCH_SHIFT):
        _refused("structure", _decode, _mac0(cbor.dumps([2, seq, 0, 0, []])))


def test_one_reading_per_channel_index_and_time():
    level = wire.KEY_STRIDE + 4  # water_level index 1
    for flat in ([4, 0, 1, 4, 0, 2], [1, 5, 1, 3, 0, 0, 1, 5, 2], [level, -3, 1, 4, 0, 0, level, -3, 9]):
        exc = _refused("repeated", _decode, _mac0(cbor.dumps([1, 5, 100, 0, flat])))
        assert "repeats channel" in str(exc), str(exc)
    # Another index, another time, or a channel 32 codes apart (one bit of
    # the decoder's mask) are other readings.
    fine = [4, 0, 1, level, 0, 2, 4, 1, 3, 36, 0, 4, 36, 1, 5, level, 1, 6]
    assert len(_decode(_mac0(cbor.dumps([1, 5, 100, 0, fine]))).rows) == 6
    try:
        wire.encode_frame(KID, KEY, 1, 100, 0, [(4, 0, 0, 1, 0), (4, 0, 0, 2, 0)])
    except ValueError:
        return
    raise AssertionError("encoded two readings of one channel, index and time")


def test_frame_size():
    # Four readings sampled at the base time, values as the worked example's,
    # stay within 56 bytes for any seq below 2**32 (SF10 LoRa, issue #3).
    at_base = [(c, i, 0, v, q) for c, i, dt, v, q in EXAMPLE_READINGS]
    for seq in (0, 23, 255, 65535, 65536, 2 ** 32 - 1):
        data = wire.encode_frame(KID, KEY, seq, 1795000000, wire.FLAG_CLOCK_UNSYNCED, at_base)
        assert len(data) <= 56, (seq, len(data))
    for seq in (0, 4097, 65535):
        assert len(wire.encode_frame(KID, KEY, seq, 1795000000, 1, EXAMPLE_READINGS)) <= 56


def test_truncated_at_every_cut():
    data = binascii.unhexlify(EXAMPLE_FRAME)
    for cut in range(len(data)):
        _refused("truncated", _decode, data[:cut])
    ack = binascii.unhexlify(EXAMPLE_ACK)
    for cut in range(len(ack)):
        _refused("truncated", wire.decode_ack, ack[:cut], KEY)


def test_trailing_bytes():
    data = binascii.unhexlify(EXAMPLE_FRAME)
    _refused("trailing", _decode, data + b"\x00")
    _refused("trailing", _decode, data + data)
    _refused("trailing", wire.decode_ack, binascii.unhexlify(EXAMPLE_ACK) + b"\x40", KEY)
    # Inside the MACed payload too.
    payload = wire.encode_payload(1, 2, 0, [(1, 0, 0, 4, 0)])
    _refused("trailing", _decode, _mac0(payload + b"\x00"))


def test_wrong_version():
    for version in (0, 3, 255):
        payload = cbor.dumps([version, 1, 2, 0, [1, 0, 4]])
        _refused("version", _decode, _mac0(payload))


def test_unknown_device():
    data = wire.encode_frame(b"\x01\x02\x03\x04", KEY, 1, 2, 0, [(1, 0, 0, 4, 0)])
    exc = _refused("unknown_device", _decode, data)
    assert isinstance(exc, AuthError)


def test_kid_rules():
    payload = wire.encode_payload(1, 2, 0, [])
    _refused("no_kid", _decode, _mac0(payload, kid=b""))
    _refused("no_kid", _decode, _mac0(payload, kid=b"k" * (wire.MAX_KID + 1)))
    long_kid = b"k" * wire.MAX_KID
    assert wire.decode_frame(_mac0(payload, kid=long_kid), lambda kid: KEY).kid == long_kid
    # No kid at all: a COSE_Mac0 whose unprotected header is empty.
    tag = KEY.tag(cbor.dumps(["MAC0", PROTECTED, b"", payload]))
    _refused("no_kid", _decode, cbor.dumps(cbor.Tag(17, [PROTECTED, {}, payload, tag])))
    # kid in the protected header is MACed and accepted.
    protected = cbor.dumps({1: 4, 4: KID})
    structure = cbor.dumps(["MAC0", protected, b"", payload])
    data = cbor.dumps(cbor.Tag(17, [protected, {}, payload, KEY.tag(structure)]))
    assert _decode(data).kid == KID


def test_every_bit_flip_is_refused():
    data = binascii.unhexlify(EXAMPLE_FRAME)
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            try:
                frame = _decode(bytes(bad))
            except FrameError:
                continue
            raise AssertionError("byte %d bit %d flipped was accepted: %r" % (i, bit, frame))


def test_ack_bit_flips_are_refused():
    data = binascii.unhexlify(EXAMPLE_ACK)
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            try:
                ack = wire.decode_ack(bytes(bad), KEY)
            except FrameError:
                continue
            # The kid is not MACed, so only a flip there may pass, with the rest intact.
            assert 9 <= i < 13 and ack[1:] == (4097, 1795000002), (i, bit, ack)


def test_bad_mac():
    data = wire.encode_frame(KID, MacKey(bytes(32)), 1, 2, 0, [(1, 0, 0, 4, 0)])
    _refused("bad_mac", _decode, data)
    payload = wire.encode_payload(1, 2, 0, [])
    good = _mac0(payload)
    _refused("bad_mac", _decode, good[:-9] + b"\x47" + good[-7:])  # a 7-byte tag
    _refused("bad_mac", _decode, good[:-9] + b"\x49" + good[-8:] + b"\x00")  # 9 bytes
    _refused("bad_alg", _decode, _mac0(payload, protected=cbor.dumps({1: 5})))
    _refused("bad_alg", _decode, _mac0(payload, protected=cbor.dumps({1: -7})))


def test_unsigned_frames_need_permission():
    data = binascii.unhexlify(EXAMPLE_UNSIGNED)
    exc = _refused("unsigned", _decode, data)
    assert isinstance(exc, AuthError)
    lenient = MacKey(bytes(range(32)), allow_unsigned=True)
    frame = wire.decode_frame(data, lambda kid: lenient)
    assert _fields(frame) == (KID, 7, 1795000000, 0, [(2, 0, 1795000000, 1, 0)], False)
    # Permission to send unsigned frames is no permission to send badly signed ones.
    signed = binascii.unhexlify(EXAMPLE_FRAME)
    assert wire.decode_frame(signed, lambda kid: lenient).signed is True
    forged = wire.encode_frame(KID, MacKey(bytes(32)), 1, 2, 0, [])
    _refused("bad_mac", wire.decode_frame, forged, lambda kid: lenient)
    # A MAC without its alg, or an alg without its MAC, is not unsigned.
    payload = wire.encode_payload(1, 2, 0, [])
    no_tag = cbor.dumps(cbor.Tag(17, [PROTECTED, {HDR_KID: KID}, payload, b""]))
    _refused("bad_mac", wire.decode_frame, no_tag, lambda kid: lenient)
    no_alg = cbor.dumps(cbor.Tag(17, [b"", {HDR_KID: KID}, payload, b"\x00" * 8]))
    _refused("bad_alg", wire.decode_frame, no_alg, lambda kid: lenient)


def test_ack_and_frame_are_not_interchangeable():
    ack = binascii.unhexlify(EXAMPLE_ACK)
    frame = binascii.unhexlify(EXAMPLE_FRAME)
    _refused("bad_mac", _decode, ack)
    _refused("bad_mac", wire.decode_ack, frame, KEY)
    # Same shapes, wrong external_aad: only the domain separation stops them.
    payload = cbor.dumps([wire.VERSION, 4097, 1795000000, 0, [1, 0, 4]])
    _refused("bad_mac", _decode, _mac0(payload, aad=wire.ACK_AAD))
    assert _decode(_mac0(payload)).seq == 4097
    ack_payload = cbor.dumps([4097, 1795000002])
    _refused("bad_mac", wire.decode_ack, _mac0(ack_payload), KEY)
    assert wire.decode_ack(_mac0(ack_payload, aad=wire.ACK_AAD), KEY)[1:] == (4097, 1795000002)
    # Acks are never unsigned, whatever the device may send.
    lenient = MacKey(bytes(range(32)), allow_unsigned=True)
    unsigned_ack = cbor.dumps(cbor.Tag(17, [b"", {HDR_KID: KID}, ack_payload, b""]))
    _refused("unsigned", wire.decode_ack, unsigned_ack, lenient)
    _refused("bad_mac", wire.decode_ack, binascii.unhexlify(EXAMPLE_ACK), MacKey(bytes(32)))


def test_shape_errors():
    bad_payloads = [
        ("structure", [1, 1, 2, 0]),
        ("structure", [1, 1, 2, 0, [1, 0, 4], {}, 0]),
        ("structure", [1, 1, 2, 0, [1, 0]]),
        ("structure", [1, 1, 2, 0, [64, 0, 4]]),  # channel 0, index 1
        ("structure", [1, 1, 2, 0, [0, 0, 4]]),
        ("structure", [1, -1, 2, 0, []]),
        ("structure", [1, 1, -2, 0, []]),
        ("structure", [1, 1, 2, 0, [1, 0, b"\x04"]]),
        ("structure", [1, 1, 2, 0, [1, 0, 4], {1: 1}]),  # no reading 1
        ("structure", [1, 1, 2, 0, [1, 0, 4], {0: 0}]),  # ok is never sent
        ("structure", {1: 1}),
    ]
    for reason, payload in bad_payloads:
        _refused(reason, _decode, _mac0(cbor.dumps(payload)))
    # 256 readings, written by hand: a 768-item list through cbor.dumps is too big a heap
    # for the MicroPython runner.
    count = 3 * (wire.MAX_READINGS + 1)
    payload = b"\x85\x01\x01\x02\x00\x99" + bytes((count >> 8, count & 0xFF)) + b"\x01\x00\x04" * 256
    _refused("too_many", _decode, _mac0(payload))
    # A quality entry named twice (map keys repeated: not CBOR's preferred form, built by hand).
    payload = cbor.dumps([1, 1, 2, 0, [1, 0, 4]])
    payload = b"\x86" + payload[1:] + b"\xa2\x00\x01\x00\x02"
    _refused("structure", _decode, _mac0(payload))


def test_cbor_level_errors():
    payload = wire.encode_payload(1, 2, 0, [])
    good = _mac0(payload)
    _refused("malformed", _decode, b"\xd1\x9f" + good[2:])  # indefinite outer array
    _refused("malformed", _decode, _mac0(b"\x9f" + payload[1:] + b"\xff"))
    _refused("structure", _decode, b"\xd2" + good[1:])  # COSE_Sign1's tag
    _refused("structure", _decode, b"\x83" + good[2:])
    _refused("int_range", _decode, _mac0(b"\x85\x01\x1b" + b"\xff" * 8 + payload[3:]))
    _refused("truncated", _decode, b"")
    _refused("too_long", _decode, bytes(wire.MAX_BYTES + 1))
