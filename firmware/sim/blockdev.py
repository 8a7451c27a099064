"""The board's flash chip as littlefs sees it: 4 KB erase blocks in an image file.

A board mounts littlefs2 over its port's flash block device (rp2.Flash,
esp32.Partition): 4096-byte erase blocks, programmed in place through the
extended interface (writeblocks with an offset programs, ioctl 6 erases;
extmod/vfs_lfsx.c, ports/rp2/rp2_flash.c, ports/esp32/esp32_partition.c,
v1.22-v1.28). The simulated board's firmware process mounts the unix port's
own vfs.VfsLfs2 over this class with the board's options (boards/*.py
FS_MOUNT), so littlefs itself, its caches on the heap, its inline limit and
its ENOSPC are the real ones; the bytes live in an image file that outlives
the firmware process (a reset) and a power cut.

Every erase and program first asks `gate(op, block, offset, length)` (the
hardware process, over rpc, on the simulated board: firmware/sim/flashchip.py):
it answers how many bytes the step may write. Fewer than asked means the
power goes off in the middle of this step: the part written stays (torn),
the device writes nothing more, and PowerCut is raised. Reads go on working,
as littlefs's own cleanup after the cut may read before the process ends.
"""
BLOCK = 4096
IOCTL_BLOCK_COUNT = 4  # extmod/vfs.h MP_BLOCKDEV_IOCTL_*
IOCTL_BLOCK_SIZE = 5
IOCTL_BLOCK_ERASE = 6
_ERASED = b"\xff" * 256  # NOR flash reads all ones after an erase


class PowerCut(BaseException):
    """The power went off at a flash step (BaseException: no `except Exception` stops it)."""


class Flash:
    def __init__(self, path, size, gate=None):
        self.file = open(path, "r+b")
        self.blocks = size // BLOCK
        self.gate = gate
        self.off = False

    def readblocks(self, block, buf, offset=0):
        if self.file is None:  # closed: only a collected file's late flush gets here
            for i in range(len(buf)):
                buf[i] = 0xFF
            return
        if self.off:
            raise PowerCut()
        self.file.seek(block * BLOCK + offset)
        self.file.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the basic interface: a whole block, erased first
            self.ioctl(IOCTL_BLOCK_ERASE, block)
            offset = 0
        n = self._allow("prog", block, offset, len(buf))
        if n > 0:
            self.file.seek(block * BLOCK + offset)
            self.file.write(buf if n == len(buf) else memoryview(buf)[:n])
        if n < len(buf):
            self._cut(n)

    def _erase(self, block):
        n = self._allow("erase", block, 0, BLOCK)
        if n > 0:
            self.file.seek(block * BLOCK)
            for _ in range(n // len(_ERASED)):
                self.file.write(_ERASED)
        if n < BLOCK:
            self._cut(n)

    def _allow(self, op, block, offset, length):
        if block < 0 or block >= self.blocks or offset + length > BLOCK:
            raise OSError(22)  # EINVAL: outside the partition, as the ports refuse it
        if self.file is None:
            return -1
        if self.off:
            raise PowerCut()
        if self.gate is None:
            return length
        return self.gate(op, block, offset, length)

    def _cut(self, n):
        if n < 0:
            return  # closed: nothing happens
        self.off = True
        raise PowerCut()

    def ioctl(self, op, arg):
        if op == IOCTL_BLOCK_COUNT:
            return self.blocks
        if op == IOCTL_BLOCK_SIZE:
            return BLOCK
        if op == IOCTL_BLOCK_ERASE:
            self._erase(arg)
            return 0
        return None

    def close(self):
        self.file.close()
        self.file = None
