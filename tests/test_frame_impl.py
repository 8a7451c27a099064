"""The pure and the compiled frame decoder: same vectors, same properties, same answers.

Every test here runs against protocol.frame and huaico.protocol._frame_c (the
`impl` fixture), or feeds one input to both and compares. An oracle built
on cbor2 and hmac, which share no code with frame.py, says what a valid
frame means; hostile input lives in test_frame_fuzz.py.
"""
import hashlib
import hmac
import os
import subprocess
import sys
import types
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tests.portable.test_frame as portable
from huaico.protocol import frame as pure
from huaico.protocol import cbor
from huaico.protocol.cbor import Tag
from huaico.protocol.cose import MacKey
from tests.fixtures.frames import (INT64_MAX, ack_outcome, expected_rows, frame_inputs, keys, kids,
                                   loose_cbor, outcome, uint63)

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = settings(max_examples=200, deadline=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture])


def fields(frame):
    return (frame.kid, frame.seq, frame.time, frame.flags, frame.rows, frame.signed)


def oracle(data, raw_keys):
    """What a frame says, read with cbor2 and checked with hmac: (kid, seq, time, flags, rows, signed)."""
    item = cbor2.loads(data)
    if isinstance(item, cbor2.CBORTag):
        assert item.tag == 17
        item = item.value
    protected, unprotected, payload, tag = item
    header = dict(cbor2.loads(protected))
    kid = header.get(4, dict(unprotected).get(4))
    assert header[1] == 4, "alg must be HMAC 256/64"
    structure = cbor2.dumps(["MAC0", protected, b"", payload])
    mac = hmac.new(raw_keys[kid], structure, hashlib.sha256).digest()[:8]
    assert hmac.compare_digest(mac, tag), "oracle: bad MAC"
    items = cbor2.loads(payload)
    version, seq, time, flags, flat = items[:5]
    assert version == 1 and len(flat) % 3 == 0
    quality = dict(items[5]) if len(items) == 6 else {}
    rows = [(flat[i] % 64, flat[i] // 64, time + flat[i + 1], flat[i + 2], quality.get(i // 3, 0))
            for i in range(0, len(flat), 3)]
    return (kid, seq, time, flags, rows, True)


# -- the compiled decoder is the one in use -------------------------------------------


def test_selector_uses_the_compiled_decoder():
    from huaico.ingest import decoder

    if os.environ.get("HUAICO_PURE") == "1":
        assert not decoder.IS_COMPILED and decoder.decode_frame is pure.decode_frame
        return
    assert decoder.IS_COMPILED, (
        "huaico.protocol._frame_c did not load, so the gateway runs the pure decoder. Build it with "
        "`make build` or `HUAICO_BUILD_EXT=1 pip install -e .`; set HUAICO_PURE=1 to test pure only.")
    from huaico.protocol import _frame_c

    assert decoder.decode_frame is _frame_c.decode_frame
    assert decoder.decode_frame is not pure.decode_frame
    # Compiled, not a stray _frame_c.py copy of the reference.
    assert Path(_frame_c.__file__).suffix in (".so", ".pyd"), _frame_c.__file__
    assert not isinstance(_frame_c.decode_frame, types.FunctionType)


@pytest.mark.parametrize("pure_flag, want", [("1", "False True"), ("0", "True False")])
def test_selector_honours_huaico_pure(pure_flag, want, impls):
    env = dict(os.environ, HUAICO_PURE=pure_flag)
    code = ("from huaico.ingest import decoder; from huaico.protocol import frame; "
            "print(decoder.IS_COMPILED, decoder.decode_frame is frame.decode_frame)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == want.split()


def test_extension_is_not_older_than_its_source(impls):
    built = Path(impls[1].__file__)
    if built.parent != ROOT / "protocol":
        return  # installed from a wheel: built from the source shipped beside it
    for source in (ROOT / "protocol" / "frame.py", ROOT / "protocol" / "_frame_c.pxd"):
        assert built.stat().st_mtime >= source.stat().st_mtime, (
            "%s is older than %s: rebuild with `make build` or "
            "`.venv/bin/python setup.py -q build_ext --inplace`" % (built.name, source.name))


# -- the portable suite, once per implementation ----------------------------------------

PORTABLE_TESTS = sorted(name for name in dir(portable) if name.startswith("test_"))


def _as_wire(module):
    """protocol.frame's constants with module's functions: the compiled module keeps
    VERSION, MAX_* and Q_OK as C globals that Python cannot see."""
    wire = types.SimpleNamespace(**{k: v for k, v in vars(pure).items() if not k.startswith("__")})
    for name in ("decode_frame", "decode_ack", "encode_frame", "encode_payload", "encode_ack"):
        setattr(wire, name, getattr(module, name))
    return wire


@pytest.mark.parametrize("name", PORTABLE_TESTS)
def test_portable_suite(impl, name, monkeypatch):
    monkeypatch.setattr(portable, "wire", _as_wire(impl))
    getattr(portable, name)()


def test_worked_example_against_the_oracle(impl):
    data = bytes.fromhex(portable.EXAMPLE_FRAME)
    want = oracle(data, {portable.KID: bytes(range(32))})
    assert fields(impl.decode_frame(data, portable._key_for)) == want
    assert want[1:4] == (4097, 1795000000, 1)


# -- properties --------------------------------------------------------------------------


@SETTINGS
@given(frame_inputs())
def test_round_trip(impl, inputs):
    kid, raw, seq, time, flags, readings = inputs
    key = MacKey(raw)
    data = impl.encode_frame(kid, key, seq, time, flags, readings)
    assert data == pure.encode_frame(kid, key, seq, time, flags, readings)
    frame = impl.decode_frame(data, {kid: key}.get)
    assert fields(frame) == (kid, seq, time, flags, expected_rows(time, readings), True)


@SETTINGS
@given(kids, keys, uint63, uint63)
def test_ack_round_trip(impl, kid, raw, seq, time):
    key = MacKey(raw)
    data = impl.encode_ack(kid, key, seq, time)
    assert data == pure.encode_ack(kid, key, seq, time)
    assert impl.decode_ack(data, key) == (kid, seq, time)
    other = MacKey(bytes(b ^ 1 for b in raw))
    assert ack_outcome(impl, data, other)[:3] == ("error", "AuthError", "bad_mac")


@SETTINGS
@given(frame_inputs(), st.booleans())
def test_both_impls_and_the_oracle_agree(impls, inputs, signed):
    kid, raw, seq, time, flags, readings = inputs
    key = MacKey(raw, allow_unsigned=True)
    data = pure.encode_frame(kid, key if signed else None, seq, time, flags, readings)
    results = [outcome(module, data, {kid: key}.get) for module in impls]
    assert results[0] == results[1]
    want = (kid, seq, time, flags, expected_rows(time, readings), signed)
    assert results[0] == ("ok", want)
    if signed:
        assert oracle(data, {kid: raw}) == want


@SETTINGS
@given(frame_inputs(), st.booleans())
def test_encoder_writes_preferred_cbor(impl, inputs, signed):
    # SPEC.md: senders use preferred serialization; cbor2 writes the shortest heads.
    kid, raw, seq, time, flags, readings = inputs
    key = MacKey(raw) if signed else None
    data = impl.encode_frame(kid, key, seq, time, flags, readings)
    flat = [x for c, i, dt, v, q in readings for x in (c + 64 * i, dt, v)]
    quality = {at: r[4] for at, r in enumerate(readings) if r[4]}
    payload = cbor2.dumps([1, seq, time, flags, flat] + ([quality] if quality else []))
    protected = b"\xa1\x01\x04" if signed else b""
    tag = b""
    if signed:
        structure = cbor2.dumps(["MAC0", protected, b"", payload])
        tag = hmac.new(raw, structure, hashlib.sha256).digest()[:8]
    assert data == cbor2.dumps(cbor2.CBORTag(17, [protected, {4: kid}, payload, tag]))


@st.composite
def loose_frames(draw):
    """A valid frame whose every CBOR head has a drawn width, MACed over the
    MAC_structure in preferred form as RFC 9052 §6.3 asks; with what it says."""
    kid, raw, seq, time, flags, readings = draw(frame_inputs(max_readings=8))
    flat = []
    quality = {}
    for at, (channel, index, dt, value, q) in enumerate(readings):
        flat += [channel + 64 * index, dt, value]
        if q:
            quality[at] = q
    payload = loose_cbor([1, seq, time, flags, flat] + ([quality] if quality else []), draw)
    kid_protected = draw(st.booleans())
    protected = loose_cbor({1: 4, 4: kid} if kid_protected else {1: 4}, draw)
    structure = cbor2.dumps(["MAC0", protected, b"", payload])
    tag = hmac.new(raw, structure, hashlib.sha256).digest()[:8]
    message = [protected, {} if kid_protected else {4: kid}, payload, tag]
    data = loose_cbor(Tag(17, message) if draw(st.booleans()) else message, draw)
    return data, kid, raw, (kid, seq, time, flags, expected_rows(time, readings), True)


@SETTINGS
@given(loose_frames())
def test_non_preferred_encodings_are_read_alike(impls, loose):
    data, kid, raw, want = loose
    key_for = {kid: MacKey(raw)}.get
    assert len(data) <= pure.MAX_BYTES
    assert [outcome(module, data, key_for) for module in impls] == [("ok", want)] * 2
    assert oracle(data, {kid: raw}) == want


# -- inputs where 64-bit C arithmetic could part the two builds ------------------------


def test_time_past_int64_is_rejected_alike(impls):
    key = MacKey(bytes(32))
    payload = cbor.dumps([1, 1, INT64_MAX, 0, [1, 1, 5]])
    data = pure._wrap(b"k", key, payload, b"")
    results = [outcome(module, data, {b"k": key}.get) for module in impls]
    assert results[0][:3] == ("error", "FrameError", "int_range")
    assert results[0] == results[1]


def test_header_map_with_huge_count_is_read_alike(impls):
    key = MacKey(bytes(32))
    good = pure.encode_frame(b"k", key, 1, 2, 0, [])
    # Unprotected header {4: h'6b', 5: {<2**62 pairs, none present>}}; the MAC does not cover it.
    bad = good.replace(b"\xa1\x04\x41k", b"\xa2\x04\x41k\x05\xbb" + (1 << 62).to_bytes(8, "big"))
    results = [outcome(module, bad, {b"k": key}.get) for module in impls]
    assert results[0][:3] == ("error", "FrameError", "truncated")
    assert results[0] == results[1]
