"""pycose and huaico read each other's COSE_Mac0: frames, acks, and forgeries refused by both.

pycose 1.1 cannot decode beside cbor2 6, so it runs in its own environment
(`make test` builds .venv-cose) as tests/cose_peer.py, a subprocess that
speaks JSON lines; HUAICO_COSE_PYTHON names its interpreter.

A refusal counts only for the reason it should have: a forgery fails on
the tag (pycose's verify_tag says False, our decoders say bad_mac), garbage
fails to decode (pycose raised a CBOR decode error, named in the answer),
an unknown kid fails on the kid. A peer that raises for another reason
(a broken adapter, a pycose that moved on) fails the test instead of
passing it as "refused".
"""
import json
import os
import subprocess
from pathlib import Path

import cbor2
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from huaico.protocol import cbor
from huaico.protocol import frame as pure
from huaico.protocol.cose import MacKey
from tests.fixtures.frames import ack_outcome, expected_rows, frame_inputs, outcome
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


def refused(answer, why):
    """The peer's answer is a refusal for this reason."""
    assert not answer["ok"] and answer["refused"] == why, answer
    return answer


def _flip_reasons(data):
    """{byte offset: (pycose's refusal, our decoders' reason)} for the bytes
    of data whose flips have one reason only: the kid's, the payload's and
    the tag's (the structure's bytes may make anything of the message)."""
    _, _, payload, tag = cbor2.loads(data).value
    assert data.count(KID) == 1 and data.count(payload) == 1
    at_kid, at_payload = data.index(KID), data.index(payload)
    reasons = {i: ("unknown_kid", "unknown_device") for i in range(at_kid, at_kid + len(KID))}
    for i in list(range(at_payload, at_payload + len(payload))) + list(
            range(len(data) - len(tag), len(data))):
        reasons[i] = ("bad_tag", "bad_mac")
    return reasons


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
    refused(peer.verify(data, {kid: raw}, aad=pure.ACK_AAD), "bad_tag")


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=32), pycose_keys,
       st.integers(0, 2 ** 63 - 1), st.integers(0, 2 ** 63 - 1))
def test_pycose_verifies_our_acks(peer, impl, kid, raw, seq, time):
    data = impl.encode_ack(kid, MacKey(raw), seq, time)
    answer = peer.verify(data, {kid: raw}, aad=pure.ACK_AAD)
    assert answer["ok"], answer
    assert answer["payload"] == "82" + cbor.dumps(seq).hex() + cbor.dumps(time).hex()
    # Without the ack's external_aad the same bytes are no valid MAC: domain separation.
    refused(peer.verify(data, {kid: raw}), "bad_tag")


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
        reasons = _flip_reasons(data)
        for i, bit, bad in _flips(data):
            answer = peer.verify(bad, {KID: RAW_KEY})
            assert not answer["ok"] and answer["refused"] != "verify_error", (i, bit, answer)
            theirs, ours = reasons.get(i, (answer["refused"], None))
            assert answer["refused"] == theirs, (i, bit, answer)
            for module in impls:
                result = outcome(module, bad, {KID: KEY}.get)
                assert result[0] == "error", (i, bit, module.__name__, result)
                assert ours in (None, result[2]), (i, bit, module.__name__, result)


def test_cut_messages_are_malformed_to_both_sides(peer, impls):
    # Garbage is refused as garbage: pycose's CBOR decoder ran out of bytes,
    # ours says truncated; neither gets as far as a tag to check.
    for data, aad in ((bytes.fromhex(EXAMPLE_FRAME), b""), (bytes.fromhex(EXAMPLE_ACK),
                                                            pure.ACK_AAD)):
        for cut in range(len(data)):
            answer = refused(peer.verify(data[:cut], {KID: RAW_KEY}, aad=aad), "malformed")
            assert answer["exception"].startswith("CBORDecodeEOF: premature end of stream"), (
                cut, answer)
            for module in impls:
                result = (outcome(module, data[:cut], {KID: KEY}.get) if not aad
                          else ack_outcome(module, data[:cut], KEY))
                assert result[1:3] == ("FrameError", "truncated"), (cut, module.__name__, result)


def test_flipped_ack_bits_are_refused_by_both_sides(peer, impls):
    data = bytes.fromhex(EXAMPLE_ACK)
    reasons = _flip_reasons(data)
    for i, bit, bad in _flips(data):
        answer = peer.verify(bad, {KID: RAW_KEY}, aad=pure.ACK_AAD)
        assert not answer["ok"] and answer["refused"] != "verify_error", (i, bit, answer)
        theirs, ours = reasons.get(i, (answer["refused"], None))
        assert answer["refused"] == theirs, (i, bit, answer)
        refused_by_us = []
        for module in impls:
            try:
                kid, seq, time = module.decode_ack(bad, KEY)
            except pure.FrameError as exc:
                refused_by_us.append(True)
                assert ours in (None, exc.reason), (i, bit, module.__name__, exc)
                continue
            refused_by_us.append(False)
            # decode_ack takes the board's one key, so only the unMACed kid may change.
            assert (seq, time) == (4097, 1795000002) and kid != KID, (i, bit)
            assert theirs == "unknown_kid", (i, bit)
        assert refused_by_us in ([True, True], [False, False]), (i, bit)


def test_wrong_key_is_refused_by_both_sides(peer, impls):
    data = bytes.fromhex(EXAMPLE_FRAME)
    refused(peer.verify(data, {KID: OTHER_KEY}), "bad_tag")
    forged = peer.mac(OTHER_KEY, KID, pure.encode_payload(1, 2, 0, []))
    refused(peer.verify(forged, {KID: RAW_KEY}), "bad_tag")
    ack = bytes.fromhex(EXAMPLE_ACK)
    refused(peer.verify(ack, {KID: OTHER_KEY}, aad=pure.ACK_AAD), "bad_tag")
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
    refused(peer.verify(renamed, {KID: RAW_KEY}), "unknown_kid")
    # A frame that names a known device under another device's key fails the MAC there.
    keys = {KID: RAW_KEY, other_kid: OTHER_KEY}
    refused(peer.verify(renamed, {other_kid: OTHER_KEY}), "bad_tag")
    for module in impls:
        assert outcome(module, renamed, {KID: KEY}.get)[:3] == ("error", "AuthError",
                                                                "unknown_device")
        key_for = {kid: MacKey(raw) for kid, raw in keys.items()}.get
        assert outcome(module, renamed, key_for)[:3] == ("error", "AuthError", "bad_mac")
    # The kid in the protected header is MACed: swapping it breaks the tag on both sides.
    signed_kid = peer.mac(RAW_KEY, KID, payload, kid_protected=True)
    swapped = signed_kid.replace(KID, other_kid)
    refused(peer.verify(swapped, {other_kid: RAW_KEY}), "bad_tag")
    for module in impls:
        result = outcome(module, swapped, {other_kid: KEY}.get)
        assert result[:3] == ("error", "AuthError", "bad_mac"), result
