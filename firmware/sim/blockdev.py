"""The board's flash chip as littlefs sees it, in the firmware's process: 4 KB blocks of an image file.

A board mounts littlefs2 over its port's flash block device (rp2.Flash,
esp32.Partition): 4096-byte erase blocks, programmed in place through the
extended interface (writeblocks with an offset programs, ioctl 6 erases;
extmod/vfs_lfsx.c, ports/rp2/rp2_flash.c, ports/esp32/esp32_partition.c,
v1.22-v1.28). The simulated board's firmware process mounts the unix port's
own vfs.VfsLfs2 over this class with the board's options (boards/*.py
FS_MOUNT), so littlefs itself, its caches on the heap, its inline limit and
its ENOSPC are the real ones; the bytes live in an image file that outlives
the firmware process (a reset) and a power cut.

A board's block device is C; this one is Python on the firmware's heap, so
it is kept to the least: every erase and program first asks
`gate(op, block, offset, length)` (the flash chip in the hardware process,
firmware/sim/flashchip.py, which does the erase itself) how many bytes the
step may write. Fewer than asked: the power goes off in this step, the part
written stays (torn), and the board's power-cut Reset is raised, again at
every later read or write, so that no `finally` or `except OSError` in the
firmware goes on using littlefs as if the board still ran. close() ends
that: file objects the collector finalizes later read erased flash and
write nothing.
"""
from firmware.sim.board import PWRON_RESET, Reset

BLOCK = 4096


class Flash:
    def __init__(self, path, size, gate):
        self.file = open(path, "r+b")
        self.blocks = size // BLOCK
        self.gate = gate
        self.off = False

    def readblocks(self, block, buf, offset=0):
        if self.file is None:  # the collector may finalize a file here, with the heap locked
            for i in range(len(buf)):
                buf[i] = 0xFF
        elif self.off:
            raise Reset(PWRON_RESET, True)
        else:
            self.file.seek(block * BLOCK + offset)
            self.file.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        if offset is None:  # the basic interface: a whole block, erased first
            self.ioctl(6, block)
            offset = 0
        n = self._step("prog", block, offset, len(buf))
        if n > 0:
            self.file.seek(block * BLOCK + offset)
            self.file.write(memoryview(buf)[:n])
        if 0 <= n < len(buf):
            self.off = True
            raise Reset(PWRON_RESET, True)

    def _step(self, op, block, offset, length):
        if block >= self.blocks or offset + length > BLOCK:
            raise OSError(22)  # EINVAL: outside the partition, as the ports refuse it
        if self.file is None:
            return -1
        if self.off:
            raise Reset(PWRON_RESET, True)
        return self.gate(op, block, offset, length)

    def ioctl(self, op, arg):  # extmod/vfs.h MP_BLOCKDEV_IOCTL_*
        if op == 4:
            return self.blocks
        if op == 5:
            return BLOCK
        if op == 6:  # erase: done by the chip, which may cut the power half way
            if 0 <= self._step("erase", arg, 0, BLOCK) < BLOCK:
                self.off = True
                raise Reset(PWRON_RESET, True)
            return 0
        return None

    def close(self):
        self.file.close()
        self.file = None
