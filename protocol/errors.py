"""The one family of errors every decoder in protocol/ raises.

A gateway counts rejects by `reason` and logs `offset`, so each error names
what was wrong (a short fixed word) and where (byte offset, or -1).
"""


class ProtocolError(ValueError):
    def __init__(self, reason, offset=-1, detail=""):
        super().__init__(reason, offset, detail)
        self.reason = reason
        self.offset = offset
        self.detail = detail

    def __str__(self):
        text = self.reason
        if self.detail:
            text += ": " + self.detail
        if self.offset >= 0:
            text += " at byte %d" % self.offset
        return text


class CBORError(ProtocolError):
    """Malformed, truncated or oversized CBOR."""


class FrameError(ProtocolError):
    """A frame or ack that is not what SPEC.md allows."""


class AuthError(FrameError):
    """A frame whose MAC, key or signing policy does not hold."""


class LinkError(ProtocolError):
    """Line noise on a serial or radio link: bad COBS, bad CRC, too long."""
