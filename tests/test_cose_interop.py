"""pycose and huaico read each other's COSE_Mac0: frames, acks, and forgeries refused by both.

pycose 1.1 cannot decode beside cbor2 6, so it runs in its own environment
(`make test` builds .venv-cose) as tests/cose_peer.py, a subprocess that
speaks JSON lines; HUAICO_COSE_PYTHON names its interpreter.
"""
import json
import os
import subprocess
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol import cbor
from protocol import frame as pure
from protocol.cose import MacKey
from tests.fixtures.frames import expected_rows, frame_inputs, outcome
from tests.portable.test_frame import EXAMPLE_ACK, EXAMPLE_FRAME, EXAMPLE_READINGS, KID

ROOT = Path(__file__).resolve().parents[1]
RAW_KEY = bytes(range(32))
KEY = MacKey(RAW_KEY)
OTHER_KEY = bytes(range(1, 33))
# pycose's SymmetricKey takes 16, 24 or 32 bytes (AES key sizes) even for HMAC.
pycose_keys = st.sampled_from([16, 24, 32]).flatmap(lambda n: st.binary(min_size=n, max_size=n))


class Peer:
    """The pycose side: one subprocess, one JSON line each way per request."""

    def __init__(self, python):
        self.proc = subprocess.Popen([python, str(ROOT / "tests" / "cose_peer.py")], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ask(self, **request):
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, "cose_peer.py exited (status %r)" % self.proc.poll()
        answer = json.loads(line)
        assert "error" not in answer, answer["error"]
        return answer

    def verify(self, msg, keys, aad=b""):
        return self.ask(op="verify", msg=msg.hex(), aad=aad.hex(),
                        keys={kid.hex(): key.hex() for kid, key in keys.items()})

    def mac(self, key, kid, payload, aad=b"", kid_protected=False):
        answer = self.ask(op="mac", key=key.hex(), kid=kid.hex(), payload=payload.hex(),
                          aad=aad.hex(), kid_protected=kid_protected)
        return bytes.fromhex(answer["msg"])

    def close(self):
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture(scope="module")
def peer():
    python = os.environ.get("HUAICO_COSE_PYTHON") or str(ROOT / ".venv-cose" / "bin" / "python")
    if not Path(python).exists():
        pytest.fail("no pycose environment at %s: run `make test` (it builds .venv-cose) or set "
                    "HUAICO_COSE_PYTHON to a python with pycose 1.1 and cbor2 5" % python,
                    pytrace=False)
    side = Peer(python)
    try:
        versions = side.ask(op="version")
        assert versions["pycose"].startswith("1.1."), versions
        yield side
    finally:
        side.close()


def _flips(data):
    for i in range(len(data)):
        for bit in range(8):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            yield i, bit, bytes(bad)


def test_pycose_verifies_our_worked_example(peer):
    answer = peer.verify(bytes.fromhex(EXAMPLE_FRAME), {KID: RAW_KEY})
    assert answer["ok"], answer
    assert answer["kid"] == KID.hex()
    assert answer["payload"] == pure.encode_payload(4097, 1795000000, 1, EXAMPLE_READINGS).hex()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame_inputs(max_readings=10), pycose_keys)
def test_pycose_verifies_our_frames(peer, impl, inputs, raw):
    kid, _, seq, time, flags, readings = inputs
    data = impl.encode_frame(kid, MacKey(raw), seq, time, flags, readings)
    answer = peer.verify(data, {kid: raw})
    assert answer["ok"], answer
    assert answer["payload"] == pure.encode_payload(seq, time, flags, readings).hex()
    assert not peer.verify(data, {kid: raw}, aad=pure.ACK_AAD)["ok"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=32), pycose_keys,
       st.integers(0, 2 ** 63 - 1), st.integers(0, 2 ** 63 - 1))
def test_pycose_verifies_our_acks(peer, impl, kid, raw, seq, time):
    data = impl.encode_ack(kid, MacKey(raw), seq, time)
    answer = peer.verify(data, {kid: raw}, aad=pure.ACK_AAD)
    assert answer["ok"], answer
    assert answer["payload"] == "82" + cbor.dumps(seq).hex() + cbor.dumps(time).hex()
    # Without the ack's external_aad the same bytes are no valid MAC: domain separation.
    assert not peer.verify(data, {kid: raw})["ok"]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(frame_inputs(max_readings=10), pycose_keys, st.booleans())
def test_we_accept_frames_made_by_pycose(peer, impls, inputs, raw, kid_protected):
    kid, _, seq, time, flags, readings = inputs
    payload = pure.encode_payload(seq, time, flags, readings)
    data = peer.mac(raw, kid, payload, kid_protected=kid_protected)
    want = ("ok", (kid, seq, time, flags, expected_rows(time, readings), True))
    for module in impls:
        assert outcome(module, data, {kid: MacKey(raw)}.get) == want, module.__name__
    if not kid_protected:
        # pycose lays out the usual frame exactly as we do.
        assert data == pure.encode_frame(kid, MacKey(raw), seq, time, flags, readings)


def test_we_accept_acks_made_by_pycose(peer, impls):
    payload = cbor.dumps([4097, 1795000002])
    data = peer.mac(RAW_KEY, KID, payload, aad=pure.ACK_AAD)
    assert data.hex() == EXAMPLE_ACK
    for module in impls:
        assert module.decode_ack(data, KEY) == (KID, 4097, 1795000002)
    frame_mac = peer.mac(RAW_KEY, KID, payload)
    for module in impls:
        with pytest.raises(pure.AuthError) as info:
            module.decode_ack(frame_mac, KEY)
        assert info.value.reason == "bad_mac"


def test_flipped_bits_are_refused_by_both_sides(peer, impls):
    payload = pure.encode_payload(4097, 1795000000, 1, EXAMPLE_READINGS)
    for data in (bytes.fromhex(EXAMPLE_FRAME), peer.mac(RAW_KEY, KID, payload, kid_protected=True)):
        for i, bit, bad in _flips(data):
            answer = peer.verify(bad, {KID: RAW_KEY})
            assert not answer["ok"], (i, bit, answer)
            for module in impls:
                result = outcome(module, bad, {KID: KEY}.get)
                assert result[0] == "error", (i, bit, module.__name__, result)


def test_flipped_ack_bits_are_refused_by_both_sides(peer, impls):
    data = bytes.fromhex(EXAMPLE_ACK)
    for i, bit, bad in _flips(data):
        answer = peer.verify(bad, {KID: RAW_KEY}, aad=pure.ACK_AAD)
        refused_by_us = []
        for module in impls:
            try:
                kid, seq, time = module.decode_ack(bad, KEY)
            except pure.FrameError:
                refused_by_us.append(True)
                continue
            refused_by_us.append(False)
            # decode_ack takes the board's one key, so only the unMACed kid may change.
            assert (seq, time) == (4097, 1795000002) and kid != KID, (i, bit)
        assert not answer["ok"], (i, bit, answer)
        assert refused_by_us in ([True, True], [False, False]), (i, bit)


def test_wrong_key_is_refused_by_both_sides(peer, impls):
    data = bytes.fromhex(EXAMPLE_FRAME)
    assert not peer.verify(data, {KID: OTHER_KEY})["ok"]
    forged = peer.mac(OTHER_KEY, KID, pure.encode_payload(1, 2, 0, []))
    assert not peer.verify(forged, {KID: RAW_KEY})["ok"]
    ack = bytes.fromhex(EXAMPLE_ACK)
    assert not peer.verify(ack, {KID: OTHER_KEY}, aad=pure.ACK_AAD)["ok"]
    for module in impls:
        for message in (data, forged):
            key_for = {KID: MacKey(OTHER_KEY if message is data else RAW_KEY)}.get
            assert outcome(module, message, key_for)[:3] == ("error", "AuthError", "bad_mac")
        with pytest.raises(pure.AuthError):
            module.decode_ack(ack, MacKey(OTHER_KEY))


def test_wrong_kid_is_refused_by_both_sides(peer, impls):
    other_kid = b"\xa1\xb2\xc3\xd5"
    payload = pure.encode_payload(1, 2, 0, [(1, 0, 0, 4, 0)])
    # A frame naming another device: neither side knows that device.
    renamed = peer.mac(RAW_KEY, other_kid, payload)
    assert not peer.verify(renamed, {KID: RAW_KEY})["ok"]
    # A frame that names a known device under another device's key fails the MAC there.
    keys = {KID: RAW_KEY, other_kid: OTHER_KEY}
    assert not peer.verify(renamed, {other_kid: OTHER_KEY})["ok"]
    for module in impls:
        assert outcome(module, renamed, {KID: KEY}.get)[:3] == ("error", "AuthError",
                                                                "unknown_device")
        key_for = {kid: MacKey(raw) for kid, raw in keys.items()}.get
        assert outcome(module, renamed, key_for)[:3] == ("error", "AuthError", "bad_mac")
    # The kid in the protected header is MACed: swapping it breaks the tag on both sides.
    signed_kid = peer.mac(RAW_KEY, KID, payload, kid_protected=True)
    swapped = signed_kid.replace(KID, other_kid)
    assert not peer.verify(swapped, {other_kid: RAW_KEY})["ok"]
    for module in impls:
        result = outcome(module, swapped, {other_kid: KEY}.get)
        assert result[:3] == ("error", "AuthError", "bad_mac"), result
