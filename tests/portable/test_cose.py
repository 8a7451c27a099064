"""protocol.cose.MacKey against RFC 4231's HMAC-SHA256 test cases, and its tag checks.

Plain asserts and no pytest import: pytest runs this file on CPython (where
MacKey reuses copied hash states and compare_digest is hmac's) and
tests/portable/run.py runs it under MicroPython (no hashlib copy, no hmac:
the fallback paths), so both code paths meet the same vectors.
"""
import binascii
import sys

if sys.implementation.name == "micropython":  # a board's name for the package
    from protocol.cose import TAG_LEN, MacKey, compare_digest
    from protocol.errors import AuthError
else:  # CPython: the installed package, as the gateway imports it
    from huaico.protocol.cose import TAG_LEN, MacKey, compare_digest
    from huaico.protocol.errors import AuthError


def _h(text):
    return binascii.unhexlify(text.replace(" ", ""))


_LONG_KEY = b"\xaa" * 131

# RFC 4231 §4: (test case, key, data, HMAC-SHA-256). Case 5 is about
# truncation to 128 bits, which HMAC 256/64 does not use.
RFC4231 = (
    (1, b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (2, b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (3, b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (4, bytes(range(1, 26)), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (6, _LONG_KEY, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (7, _LONG_KEY, b"This is a test using a larger than block-size key and a larger t"
                   b"han block-size data. The key needs to be hashed before being use"
                   b"d by the HMAC algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
)


def _key(key):
    """A MacKey for an RFC key. MacKey refuses keys under 16 bytes, but HMAC
    zero-pads every key shorter than the block (RFC 2104 §2), so "Jefe" and
    "Jefe" + 12 zero bytes are the same HMAC key."""
    if len(key) < 16:
        key = key + bytes(16 - len(key))
    return MacKey(key)


def _auth_error(reason, func, *args):
    try:
        func(*args)
    except AuthError as exc:
        assert exc.reason == reason, (exc.reason, reason)
        return exc
    raise AssertionError("no AuthError(%r)" % reason)


def test_rfc4231_hmac_sha256():
    for case, key, data, mac in RFC4231:
        assert _key(key).hmac(data) == _h(mac), case


def test_rfc4231_tag_is_first_eight_bytes():
    assert TAG_LEN == 8
    for case, key, data, mac in RFC4231:
        assert _key(key).tag(data) == _h(mac)[:8], case


def test_hmac_repeats_and_takes_any_buffer():
    # The gateway reuses one MacKey for every frame: state must not leak between calls.
    key = _key(b"\x0b" * 20)
    want = _h(RFC4231[0][3])
    assert key.hmac(b"Hi There") == want
    assert key.hmac(b"something else") != want
    assert key.hmac(bytearray(b"Hi There")) == want
    assert key.hmac(memoryview(b"xHi Therex")[1:9]) == want
    assert MacKey(bytearray(b"\x0b" * 20)).hmac(b"Hi There") == want
    # The receiver hashes a constant head and a slice of the frame as two parts.
    for cut in range(9):
        assert key.hmac(b"Hi There"[:cut], b"Hi There"[cut:]) == want, cut
        assert key.tag(b"Hi There"[:cut], b"Hi There"[cut:]) == want[:8], cut


def test_short_keys_are_refused():
    for length in (0, 1, 4, 15):
        try:
            MacKey(b"k" * length)
        except ValueError:
            continue
        raise AssertionError("a %d-byte key was accepted" % length)
    MacKey(b"k" * 16)


def test_check_accepts_the_right_tag():
    for case, key, data, mac in RFC4231:
        mac_key = _key(key)
        mac_key.check(data, b"", _h(mac)[:8])
        mac_key.check(data, b"", bytearray(_h(mac)[:8]))
        mac_key.check(data, b"", memoryview(_h(mac))[:8])
        for cut in (0, 1, len(data) // 2, len(data)):
            mac_key.check(data[:cut], data[cut:], _h(mac)[:8])


def test_check_refuses_any_other_tag():
    key = _key(b"\x0b" * 20)
    tag = _h(RFC4231[0][3])[:8]
    for i in range(8):
        for bit in range(8):
            bad = bytearray(tag)
            bad[i] ^= 1 << bit
            _auth_error("bad_mac", key.check, b"Hi There", b"", bytes(bad))
    _auth_error("bad_mac", key.check, b"Hi There", b"", tag[:7])
    _auth_error("bad_mac", key.check, b"Hi There", b"", tag + b"\x00")
    _auth_error("bad_mac", key.check, b"Hi There", b"", b"")
    _auth_error("bad_mac", key.check, b"Hi There", b"", _h(RFC4231[0][3]))  # untruncated
    _auth_error("bad_mac", key.check, b"Hi there", b"", tag)
    _auth_error("bad_mac", key.check, b"Hi", b"There", tag)  # the tail is part of the message
    _auth_error("bad_mac", _key(b"\x0c" * 20).check, b"Hi There", b"", tag)


def test_allow_unsigned_defaults_off():
    assert MacKey(bytes(16)).allow_unsigned is False
    assert MacKey(bytes(16), allow_unsigned=True).allow_unsigned is True


def test_compare_digest():
    assert compare_digest(b"", b"")
    assert compare_digest(b"abcdefgh", b"abcdefgh")
    assert compare_digest(b"abcdefgh", bytearray(b"abcdefgh"))
    assert not compare_digest(b"abcdefgh", b"abcdefg")
    assert not compare_digest(b"abcdefg", b"abcdefgh")
    assert not compare_digest(b"", b"a")
    for i in range(8):
        other = bytearray(b"abcdefgh")
        other[i] ^= 0x80
        assert not compare_digest(b"abcdefgh", bytes(other)), i
