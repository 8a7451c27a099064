"""The per-device replay window: which recent sequence numbers were already stored.

A board numbers its frames; a MAC proves who made a frame, not that it is
new. The gateway keeps the highest number seen (last_seq) and a bitmap of the
`size` numbers at and below it (bit i set = last_seq - i was stored), the
sliding window of IPsec (RFC 4303 §3.4.3). The bitmap is stored in
devices.seq_window, in the same transaction as the readings, so that a
restart neither forgets what it stored nor refuses what it did not.

Verdicts:
- NEW: store it, run the rules, ack.
- SEEN: inside the window and already stored, i.e. a resend after a lost
  ack (or a replay of one, which is the same bytes): ack again, store
  nothing, no rules.
- OLD: older than the window: the caller decides by looking in the
  readings (gateway/store/writer.py: stored -> "replayed", else a late frame).

SQLite integers are signed 64-bit, so windows are at most 64 wide and the
bitmap is kept as a signed value in the database (to_db / from_db).
"""
NEW = "new"
SEEN = "seen"
OLD = "old"

MAX_SIZE = 64
_MASK64 = (1 << 64) - 1


def to_db(bits):
    """Unsigned 64-bit bitmap -> signed SQLite INTEGER."""
    return bits - (1 << 64) if bits >= 1 << 63 else bits


def from_db(value):
    return (value or 0) & _MASK64


def epochs_from_db(text):
    """The epochs a device has left (SPEC.md 1.3), from devices.old_epochs."""
    return {int(word) for word in (text or "").split()}


def epochs_to_db(epochs):
    return " ".join(str(epoch) for epoch in sorted(epochs))


class Window:
    """last_seq (None before the first frame) and its bitmap of `size` bits."""

    __slots__ = ("size", "last", "bits")

    def __init__(self, size, last=None, bits=0):
        if not 1 <= size <= MAX_SIZE:
            raise ValueError("replay window must be 1..%d, not %r" % (MAX_SIZE, size))
        self.size = size
        self.last = last
        self.bits = bits & ((1 << size) - 1)

    def check(self, seq):
        """NEW, SEEN or OLD for seq, without changing the window."""
        if self.last is None or seq > self.last:
            return NEW
        back = self.last - seq
        if back >= self.size:
            return OLD
        return SEEN if self.bits >> back & 1 else NEW

    def mark(self, seq):
        """Record seq as stored (after check() said NEW)."""
        mask = (1 << self.size) - 1
        if self.last is None:
            self.last, self.bits = seq, 1
        elif seq > self.last:
            shift = seq - self.last
            self.bits = ((self.bits << shift) | 1) & mask if shift < self.size else 1
            self.last = seq
        else:
            self.bits |= 1 << (self.last - seq)
