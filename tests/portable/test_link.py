"""COBS + CRC-16 link framing: vectors, resynchronisation, bounds.

Plain asserts and no pytest import: tests/portable/run.py runs this file under
the MicroPython unix port at a board's heap size, and pytest runs it as is.
"""
import gc
import sys

if sys.implementation.name == "micropython":  # a board's name for the package
    from protocol.errors import LinkError
    from protocol.link import MAX_FRAME, Decoder, cobs_decode, cobs_encode, crc16, encode
else:  # CPython: the installed package, as the gateway imports it
    from huaico.protocol.errors import LinkError
    from huaico.protocol.link import MAX_FRAME, Decoder, cobs_decode, cobs_encode, crc16, encode


def _seq(first, last):
    return bytes(range(first, last + 1))


# (decoded, encoded without the delimiter): the examples in Cheshire & Baker's
# COBS paper as listed on Wikipedia's "Consistent Overhead Byte Stuffing".
COBS_VECTORS = [
    (b"", b"\x01"),
    (b"\x00", b"\x01\x01"),
    (b"\x00\x00", b"\x01\x01\x01"),
    (b"\x00\x11\x00", b"\x01\x02\x11\x01"),
    (b"\x11\x22\x00\x33", b"\x03\x11\x22\x02\x33"),
    (b"\x11\x22\x33\x44", b"\x05\x11\x22\x33\x44"),
    (b"\x11\x00\x00\x00", b"\x02\x11\x01\x01\x01"),
    (_seq(0x01, 0xFE), b"\xff" + _seq(0x01, 0xFE)),
    (b"\x00" + _seq(0x01, 0xFE), b"\x01\xff" + _seq(0x01, 0xFE)),
    (_seq(0x01, 0xFF), b"\xff" + _seq(0x01, 0xFE) + b"\x02\xff"),
    (_seq(0x02, 0xFF) + b"\x00", b"\xff" + _seq(0x02, 0xFF) + b"\x01\x01"),
    (_seq(0x03, 0xFF) + b"\x00\x01", b"\xfe" + _seq(0x03, 0xFF) + b"\x02\x01"),
]


def _crc_bitwise(data):
    """CRC-16/CCITT-FALSE one bit at a time: the definition the table must match."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def _raises(reason, func, *args):
    try:
        func(*args)
    except LinkError as exc:
        assert exc.reason == reason, (exc.reason, reason)
        return exc
    raise AssertionError("no LinkError(%r)" % reason)


def _feed_bytewise(decoder, data):
    items = []
    for i in range(len(data)):
        items.extend(decoder.feed(data[i:i + 1]))
    return items


def _reasons(items):
    return [item.reason if isinstance(item, LinkError) else item for item in items]


def test_cobs_vectors_encode():
    for decoded, encoded in COBS_VECTORS:
        assert cobs_encode(decoded) == encoded, decoded


def test_cobs_vectors_decode():
    for decoded, encoded in COBS_VECTORS:
        assert cobs_decode(encoded) == decoded, encoded


def test_cobs_decode_also_takes_a_closing_empty_block():
    # Some encoders close 254 non-zero bytes with a needless 0x01 block.
    assert cobs_decode(b"\xff" + _seq(0x01, 0xFE) + b"\x01") == _seq(0x01, 0xFE)


def test_cobs_decode_rejects_invalid_packets():
    _raises("bad_cobs", cobs_decode, b"\x05\x11\x22")
    _raises("bad_cobs", cobs_decode, b"")
    _raises("bad_cobs", cobs_decode, b"\x02\x11\x00\x01")


def test_crc_check_value():
    assert crc16(b"123456789") == 0x29B1
    assert crc16(b"") == 0xFFFF
    assert crc16(b"xx123456789yy", 2, 11) == 0x29B1


def test_crc_table_matches_bitwise_definition():
    for data in (b"\x00", b"\xff", b"\x80\x01", _seq(0, 255), b"huaico"):
        assert crc16(data) == _crc_bitwise(data), data


def test_encode_wire_layout():
    wire = encode(b"123456789")
    assert wire == cobs_encode(b"123456789\x29\xb1") + b"\x00"
    assert wire.index(b"\x00") == len(wire) - 1
    assert encode(bytearray(b"ab")) == encode(memoryview(b"xaby")[1:3]) == encode(b"ab")


def test_round_trip():
    frames = [b"", b"\x00", b"a", bytes(MAX_FRAME), b"\xff" * MAX_FRAME, _seq(1, 255),
              _seq(0, 254), b"\x00\x01" * 100, b"\x29\xb1\x00"]
    decoder = Decoder()
    for frame in frames:
        assert decoder.feed(encode(frame)) == [frame], frame
    assert decoder.counts["ok"] == len(frames)


def test_encode_too_long():
    exc = _raises("too_long", encode, bytes(MAX_FRAME + 1))
    assert exc.offset == -1
    _raises("too_long", encode, b"abcde", 4)
    frame = bytes(600)
    assert Decoder(max_frame=600).feed(encode(frame, 600)) == [frame]


def test_many_frames_in_one_chunk():
    frames = [b"one", b"", b"three\x00", b"\x00" * 9]
    stream = b"".join([encode(frame) for frame in frames])
    assert Decoder().feed(stream) == frames


def test_one_byte_at_a_time():
    frames = [b"alpha", _seq(0, 255)[:MAX_FRAME], b"\x00"]
    stream = b"".join([encode(frame) for frame in frames])
    assert _feed_bytewise(Decoder(), stream) == frames
    assert _feed_bytewise(Decoder(), bytearray(stream)) == frames
    assert _feed_bytewise(Decoder(), memoryview(stream)) == frames


def test_noise_between_frames():
    stream = encode(b"first") + b"\x13\x37\x00" + encode(b"second") + b"\x00\x00" + encode(b"third")
    items = Decoder().feed(stream)
    assert _reasons(items) == [b"first", "bad_cobs", b"second", b"third"]


def test_error_offset_is_stream_position_after_the_bad_packet():
    good = encode(b"ok")
    decoder = Decoder()
    decoder.feed(good)
    items = decoder.feed(b"\x01\x00" + good + b"\x07\x41\x00")
    assert _reasons(items) == ["short", b"ok", "bad_cobs"]
    assert items[0].offset == len(good) + 2
    assert items[2].offset == 2 * len(good) + 5


def test_bit_flips_are_bad_crc():
    frame = b"river level 1234 mm"
    wire = encode(frame)
    # No zero in the frame or its CRC: every byte after the first is data.
    assert wire.index(b"\x00") == len(wire) - 1 and wire[0] == len(wire) - 1
    decoder = Decoder()
    flips = 0
    for pos in range(1, len(wire) - 1):
        for bit in range(8):
            damaged = bytearray(wire)
            damaged[pos] ^= 1 << bit
            if damaged[pos] == 0:
                continue
            items = decoder.feed(damaged)
            assert len(items) == 1 and items[0].reason == "bad_crc", (pos, bit, items)
            flips += 1
    assert decoder.counts["bad_crc"] == flips and decoder.counts["ok"] == 0
    assert decoder.feed(wire) == [frame]


def test_damaged_code_byte_never_yields_a_frame():
    wire = encode(b"\x00rain\x00\x00tilt\x00")
    for pos in range(len(wire) - 1):
        for bit in range(8):
            damaged = bytearray(wire)
            damaged[pos] ^= 1 << bit
            items = Decoder().feed(damaged)
            for item in items:
                assert isinstance(item, LinkError), (pos, bit, items)


def test_short_packets():
    items = Decoder().feed(b"\x01\x00\x02\x41\x00\x01\x01\x00")
    assert _reasons(items) == ["short", "short", "short"]


def test_empty_packets_are_ignored():
    decoder = Decoder()
    assert decoder.feed(b"\x00" * 8) == []
    assert decoder.feed(b"\x00\x00" + encode(b"x") + b"\x00") == [b"x"]
    assert decoder.counts == {"ok": 1, "bad_crc": 0, "bad_cobs": 0, "too_long": 0, "short": 0}


def test_overlong_input_is_bounded_and_recovers():
    decoder = Decoder()
    buffer = decoder._buf
    noise = b"\x55" * 7
    for _ in range(700):
        assert decoder.feed(noise) == []
        assert decoder.buffered <= decoder.capacity
    assert decoder._buf is buffer and len(buffer) == decoder.capacity
    items = decoder.feed(b"\x00" + encode(b"after"))
    assert _reasons(items) == ["too_long", b"after"]
    assert items[0].offset == 4901
    assert decoder.counts["too_long"] == 1


def test_frame_over_decoder_limit_is_too_long():
    decoder = Decoder(max_frame=8)
    items = decoder.feed(encode(b"123456789", 9) + encode(b"12345678"))
    assert _reasons(items) == ["too_long", b"12345678"]
    # The buffer's bound leaves room for a code byte per 254 bytes, so a
    # zero-rich frame one byte over the limit fits in it and is refused after
    # decoding instead.
    decoder = Decoder()
    wire = encode(bytes(MAX_FRAME + 1), MAX_FRAME + 1)
    assert len(wire) - 1 <= decoder.capacity
    assert _reasons(decoder.feed(wire)) == ["too_long"]


def test_garbage_then_valid_frame_recovers():
    decoder = Decoder()
    garbage = b"\xde\xad\xbe\xef" * 20
    # Garbage without a 0x00 spoils the packet it runs into, and only that one.
    items = decoder.feed(garbage + encode(b"lost") + encode(b"kept"))
    assert len(items) == 2 and isinstance(items[0], LinkError) and items[1] == b"kept"
    items = decoder.feed(garbage + b"\x00" + encode(b"kept too"))
    assert len(items) == 2 and isinstance(items[0], LinkError) and items[1] == b"kept too"


def test_reset_drops_unfinished_packet():
    decoder = Decoder()
    decoder.feed(encode(b"half")[:3])
    assert decoder.buffered == 3
    decoder.reset()
    assert decoder.buffered == 0
    assert decoder.feed(encode(b"whole")) == [b"whole"]


def test_crc_does_not_allocate_on_the_board():
    try:
        import micropython
    except ImportError:
        return  # only the MicroPython heap can be locked
    data = bytearray(b"123456789")
    value = 0
    micropython.heap_lock()
    try:
        value = crc16(data)
    finally:
        micropython.heap_unlock()
    assert value == 0x29B1


def test_decoder_allocation_does_not_grow_with_chunk_length():
    if not hasattr(gc, "mem_alloc"):
        return  # CPython: no comparable heap counter
    decoder = Decoder()
    small = b"\x41" * 2
    large = b"\x41" * 200
    decoder.feed(small)  # first call: one-time allocations out of the way
    used = []
    for chunk in (small, large):
        decoder.reset()
        gc.collect()
        gc.disable()
        try:
            before = gc.mem_alloc()
            decoder.feed(chunk)
            used.append(gc.mem_alloc() - before)
        finally:
            gc.enable()
    assert used[1] <= used[0], used
