"""Store-and-forward: frames kept in flash until the gateway acks them, and the sequence counter.

Why files and renames: a power cut can come at any instant, and rename is
the one step that both LittleFS and POSIX make atomic. A frame is written
to "tmp" then renamed to its own name ("f" + seq in hex), so every frame
file is either whole or absent; each still carries a CRC-32, checked at
boot, in case a flash page went bad.

What a frame costs is littlefs's to say, not its size: a file up to the
inline limit (the mount's cache size: 128 B on esp32's default mount, 512 B
on rp2's) lives in its directory's metadata, about 1 KB a frame once the
metadata pairs split and compact (measured on the boards' images, see
firmware/README.md); a larger one takes a whole 4 KB block. So the ring
learns its capacity from the filesystem: when littlefs answers ENOSPC, the
oldest tenth of the frames is dropped (again if the step still fails), and
from then on the ring holds no more than that, which leaves littlefs free
blocks to compact into. When even an empty ring has no room, put()
raises StoreError (or the OSError) and the caller decides (firmware/app.py
gives the round's tips back to the gauge for the next frame).

The sequence number must never repeat under one key (the gateway drops a
replay). It is reserved in blocks: "meta" records the first number not yet
reserved, written (tmp + rename) before any number of the block is used, so
after a reset the counter starts at the recorded mark and at worst skips a
few unused numbers.

When the store is full the new frame is committed first and the oldest is
dropped after ("oldest dropped last"): a cut between the two leaves one frame
too many, which the next boot trims. The drop is written to "meta" (count
and the seq being dropped) before the file goes, so that it is counted
exactly once whatever the cut.

Epochs (protocol/SPEC.md 1.3): the frame seq is epoch << 24 | counter. The
store draws its first epoch when it is made and keeps its epochs in "epoch",
one byte per generation of 2^24 numbers: the ring's own numbers run on past
2^24 (so files stay in order), and number n goes out as epochs[n >> 24] with
counter n & 0xFFFFFF. The next generation's epoch is written (tmp + rename)
before its first number is handed out, so a reset at any step of the roll
either finds it there or draws it again, and never hands out a number twice.
A gateway refuses frames of an epoch it has left, never acking them, so
oldest() gives no frame of a generation while an older one still waits: the
old epoch's frames are all acked before the gateway sees the new epoch.
"""
import gc
import random
import struct
from binascii import crc32

from micropython import const

_FRAME_MAGIC = b"HRF1"
_FRAME_HEAD = "<4sIHI"  # magic, seq, length, crc32 of the frame
_FRAME_HEAD_SIZE = struct.calcsize(_FRAME_HEAD)
_META_MAGIC = b"HRM1"
_META = "<4sIIiI"  # magic, next unreserved seq, dropped total, seq being dropped (-1: none), crc32
_META_BODY = struct.calcsize(_META) - 4
_SEQ_LIMIT = 0xFFFFFFFF
_EPOCH_SHIFT = const(24)
COUNTER_MASK = const(0xFFFFFF)
# littlefs's LFS_ERR_NOSPC comes out as OSError(28) (extmod/vfs_lfsx.c raises -err);
# MicroPython's errno module has no ENOSPC.
_ENOSPC = const(28)


class StoreError(Exception):
    pass


def _name(seq):
    return "f%08x" % seq


def _seq_of(name):
    if len(name) != 9 or name[0] != "f":
        return -1
    try:
        return int(name[1:], 16)
    except ValueError:
        return -1


class Ring:
    """Frames awaiting the gateway's ack, oldest first, at most `capacity` of them.

    Counters: `dropped` (frames pushed out when full, ever), `corrupt` (bad
    files found at boot). The stored sequence numbers are kept as runs, a flat
    list [first, end, first, end, ...] of half-open ranges, oldest first: a
    backlog is a few runs (one more per boot's reserved block), where a list
    of every number needed 8 bytes a frame in one piece of heap, 4 KB for 512
    frames on the unix port, which a board at 100 KB did not find after a while.
    """

    def __init__(self, flash, capacity, block=64):
        if capacity < 1:
            raise ValueError("a ring holds at least one frame")
        self.flash = flash
        self.capacity = capacity
        self.block = block
        self.corrupt = 0
        self.dropped = 0
        self._reserved = 0
        self._drop_flag = False
        self._runs = []
        self._count = 0
        self.epochs = self._read_epochs(flash.read("meta") is None)
        self._recover()

    # Boot: make the directory consistent with what was committed.
    def _recover(self):
        flash = self.flash
        flash.remove("tmp")
        flash.remove("meta.tmp")
        flash.remove("epoch.tmp")
        drop_seq = self._read_meta()
        highest = -1
        stale = []
        for name in flash.names():
            seq = _seq_of(name)
            if seq < 0:
                continue
            if seq == drop_seq or self._load(seq) is None:
                stale.append(name)
                if seq != drop_seq:
                    self.corrupt += 1
                continue
            self._insert(seq)  # littlefs lists a directory by name: in seq order, each an append
            if seq > highest:
                highest = seq
        for name in stale:
            flash.remove(name)
        if highest + 1 > self._reserved:
            self._reserved = highest + 1
        self._next = self._reserved
        while self._count > self.capacity:
            self._drop_oldest()
        # Reading every frame left a heap of garbage: gone before the boot goes on, or
        # what it makes next lands in the holes between and splits the free heap.
        gc.collect()

    def _read_meta(self):
        data = self.flash.read("meta")
        if data is None:
            return -1
        if len(data) != struct.calcsize(_META):
            raise StoreError("meta has %d bytes" % len(data))
        magic, reserved, dropped, drop_seq, crc = struct.unpack(_META, data)
        if magic != _META_MAGIC or crc32(data[:_META_BODY]) != crc:
            raise StoreError("meta fails its check")
        self._reserved = reserved
        self.dropped = dropped
        return drop_seq

    def _write_meta(self, reserved, dropped, drop_seq):
        body = struct.pack(_META, _META_MAGIC, reserved, dropped, drop_seq, 0)[:_META_BODY]
        self._replace("meta", body + struct.pack("<I", crc32(body)))

    def _replace(self, name, data):
        self.flash.write(name + ".tmp", data)
        self.flash.rename(name + ".tmp", name)

    # Epochs.
    def _read_epochs(self, fresh):
        """The store's epochs, one per generation; a new store draws its first
        (random is seeded from the hardware at boot: MICROPY_PY_RANDOM_SEED_INIT_FUNC,
        esp_random() in ports/esp32, rosc_random_u32() in ports/rp2, mpconfigport.h).
        A store made before epochs has none: its generation 0 is epoch 0 (version 1
        frames), so the frames waiting in it stay acceptable."""
        data = self.flash.read("epoch")
        if data:
            return bytes(data)
        if not fresh:
            return b"\x00"
        return self._draw(b"")

    def _draw(self, epochs):
        """epochs and a new one after them, written before it is used: one the
        store never had, since the gateway refuses an epoch it has left."""
        if len(epochs) > 255 or (len(epochs) == 255 and 0 not in epochs):
            raise StoreError("epochs exhausted: provision a new key")
        epoch = 0
        while epoch == 0 or epoch in epochs:
            epoch = random.getrandbits(8)
        epochs += bytes((epoch,))
        self._roomy(self._replace, "epoch", epochs)
        return epochs

    def epoch_of(self, seq):
        """The epoch that the ring's number seq goes out under (its counter is seq & COUNTER_MASK)."""
        return self.epochs[seq >> _EPOCH_SHIFT]

    def from_wire(self, wire):
        """The ring's number for a seq on the wire (an ack's), or -1 for an epoch not this store's."""
        epoch = wire >> _EPOCH_SHIFT
        for gen in range(len(self.epochs)):
            if self.epochs[gen] == epoch:
                return gen << _EPOCH_SHIFT | (wire & COUNTER_MASK)
        return -1

    def _roomy(self, step, a, b, c=None):
        """step(a, b[, c]), dropping the oldest frames while littlefs has no room for it."""
        while True:
            try:
                return step(a, b) if c is None else step(a, b, c)
            except OSError as exc:
                if exc.args[0] != _ENOSPC:
                    raise
                self.flash.remove("tmp")  # a temporary left by the failed step holds blocks too
                self.flash.remove("meta.tmp")
                self.flash.remove("epoch.tmp")
                if not self._count:
                    raise StoreError("flash full with no frame to drop")
                # A tenth of the frames go: littlefs needs free blocks to compact its
                # metadata, and a filesystem kept at its last block fails in other ways.
                self.capacity = max(1, self._count * 9 // 10)
                while self._count > self.capacity:
                    self._drop_oldest()

    # Sequence numbers.
    def next_seq(self):
        """A sequence number never handed out before under this store."""
        seq = self._next
        if seq >= _SEQ_LIMIT:
            raise StoreError("sequence numbers exhausted: provision a new key")
        if seq >= self._reserved:
            reserved = seq + self.block
            self._roomy(self._write_meta, reserved, self.dropped, -1)
            self._reserved = reserved
        if seq >> _EPOCH_SHIFT >= len(self.epochs):  # the counter reached 2^24: a new epoch
            self.epochs = self._draw(self.epochs)
        self._next = seq + 1
        return seq

    # Frames.
    def put(self, seq, frame):
        """Commit a frame; returns only once it would survive a power cut."""
        head = struct.pack(_FRAME_HEAD, _FRAME_MAGIC, seq, len(frame), crc32(frame))
        self._roomy(self._commit, seq, head + frame)
        self._insert(seq)
        while self._count > self.capacity:
            self._drop_oldest()

    def _commit(self, seq, data):
        self.flash.write("tmp", data)
        self.flash.rename("tmp", _name(seq))

    def _insert(self, seq):
        runs = self._runs
        i = len(runs)
        while i and runs[i - 2] > seq:  # back to the last run that starts at or before seq
            i -= 2
        if i and seq < runs[i - 1]:
            return  # held already
        if i and runs[i - 1] == seq:  # the usual: just after the newest run
            runs[i - 1] = seq + 1
            if i < len(runs) and runs[i] == seq + 1:  # it closes a gap: one run
                runs[i - 1] = runs[i + 1]
                runs.pop(i)
                runs.pop(i)
        elif i < len(runs) and runs[i] == seq + 1:
            runs[i] = seq
        else:
            runs.insert(i, seq + 1)
            runs.insert(i, seq)
        self._count += 1

    def _drop_oldest(self):
        seq = self._runs[0]
        try:
            self._write_meta(self._reserved, self.dropped + 1, seq)
        except OSError:
            # No room even for "meta": the frame goes first (a cut between the two
            # leaves this one drop uncounted); should that not do, the OSError
            # reaches the caller.
            self.flash.remove(_name(seq))
            self._write_meta(self._reserved, self.dropped + 1, -1)
        self.dropped += 1
        self.flash.remove(_name(seq))
        self._remove(seq)
        self._drop_flag = True

    def _remove(self, seq):
        runs = self._runs
        for i in range(0, len(runs), 2):
            first = runs[i]
            end = runs[i + 1]
            if seq < first:
                break
            if seq < end:
                if first + 1 == end:
                    runs.pop(i)
                    runs.pop(i)
                elif seq == first:
                    runs[i] = seq + 1
                elif seq == end - 1:
                    runs[i + 1] = seq
                else:  # from the middle: two runs
                    runs.insert(i + 1, seq + 1)
                    runs.insert(i + 1, seq)
                self._count -= 1
                return True
        return False

    def __contains__(self, seq):
        runs = self._runs
        for i in range(0, len(runs), 2):
            if runs[i] <= seq < runs[i + 1]:
                return True
        return False

    def oldest(self, count, one_epoch=True):
        """The first `count` stored sequence numbers (fewer when fewer are held), all of
        the oldest generation's epoch unless one_epoch is False: what may be sent now."""
        out = []
        runs = self._runs
        gen = runs[0] >> _EPOCH_SHIFT if runs else 0
        for i in range(0, len(runs), 2):
            for seq in range(runs[i], runs[i + 1]):
                if len(out) == count or (one_epoch and seq >> _EPOCH_SHIFT != gen):
                    return out
                out.append(seq)
        return out

    @property
    def seqs(self):
        """Every stored sequence number, oldest first (a new list: for checks, not the main loop)."""
        return self.oldest(self._count, False)

    def ack(self, seq):
        """The gateway has this frame: forget it and remove its file. False when it was not held."""
        if not self._remove(seq):
            return False
        self.flash.remove(_name(seq))
        return True

    def forget(self, seq):
        """ack() without the flash write: the caller removes the file later (remove_file).
        Until then a reset finds the file and the frame is sent again."""
        return self._remove(seq)

    def remove_file(self, seq):
        self.flash.remove(_name(seq))

    def get(self, seq):
        """The frame's bytes, or None when absent or failing its check."""
        return self._load(seq)

    def _load(self, seq):
        data = self.flash.read(_name(seq))
        if data is None or len(data) < _FRAME_HEAD_SIZE:
            return None
        magic, stored, length, crc = struct.unpack_from(_FRAME_HEAD, data)
        frame = data[_FRAME_HEAD_SIZE:]
        if magic != _FRAME_MAGIC or stored != seq or len(frame) != length or crc32(frame) != crc:
            return None
        return frame

    def __len__(self):
        return self._count

    def take_drop_flag(self):
        """True once after frames were dropped: the next frame carries FLAG_DROPPED."""
        flag = self._drop_flag
        self._drop_flag = False
        return flag
