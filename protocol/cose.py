"""COSE_Mac0 (RFC 9052 §6.2, tag 17) with alg 4, HMAC 256/64, for frames and acks.

HMAC-SHA256 (RFC 2104) is written on `hashlib.sha256` because MicroPython
has no `hmac` module. A MacKey keeps the padded key so a board does not
rebuild it for every frame; on CPython it also keeps the hash states after
the pads, which halves the work per frame on the gateway.
"""
import hashlib

from .errors import AuthError

try:
    from hmac import compare_digest
except ImportError:  # MicroPython
    def compare_digest(a, b):
        """Constant-time equality: the time does not depend on where a byte differs."""
        if len(a) != len(b):
            return False
        diff = 0
        for i in range(len(a)):
            diff |= a[i] ^ b[i]
        return diff == 0

TAG_MAC0 = 17
ALG_HMAC_256_64 = 4
HDR_ALG = 1
HDR_KID = 4
TAG_LEN = 8
_BLOCK = 64

# bstr(<< {1: 4} >>): the protected header of every signed frame, byte for byte.
PROTECTED = b"\xa1\x01\x04"


def _xor_pad(key, pad):
    out = bytearray(_BLOCK)
    for i in range(_BLOCK):
        out[i] = (key[i] if i < len(key) else 0) ^ pad
    return bytes(out)


class MacKey:
    """A device key ready to make and check HMAC 256/64 tags.

    `allow_unsigned` is the operator's per-device permission to accept frames
    without a MAC (a bench set-up); it travels with the key so that the
    decoder cannot forget to ask.
    """

    def __init__(self, key, allow_unsigned=False):
        key = bytes(key)
        if len(key) < 16:
            raise ValueError("a device key needs at least 16 bytes, got %d" % len(key))
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        self.allow_unsigned = allow_unsigned
        self._ipad = _xor_pad(key, 0x36)
        self._opad = _xor_pad(key, 0x5C)
        inner = hashlib.sha256(self._ipad)
        self._inner = inner if hasattr(inner, "copy") else None
        self._outer = hashlib.sha256(self._opad) if self._inner is not None else None

    def hmac(self, msg, tail=b""):
        """The full 32-byte HMAC-SHA256 of msg followed by tail.

        Two parts so that a receiver can hash a constant head and a slice of
        the frame without first joining them into a new buffer.
        """
        if self._inner is None:
            inner = hashlib.sha256(self._ipad)
            inner.update(msg)
            inner.update(tail)
            outer = hashlib.sha256(self._opad)
            outer.update(inner.digest())
            return outer.digest()
        inner = self._inner.copy()
        inner.update(msg)
        inner.update(tail)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()

    def tag(self, msg, tail=b""):
        """The HMAC 256/64 tag: the first 8 bytes (RFC 9053 §3.1)."""
        return self.hmac(msg, tail)[:TAG_LEN]

    def check(self, msg, tail, tag):
        """Raise AuthError("bad_mac") unless tag is the tag of msg + tail, in constant time."""
        if not compare_digest(self.tag(msg, tail), bytes(tag)):
            raise AuthError("bad_mac")
