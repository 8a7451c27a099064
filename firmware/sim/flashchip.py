"""The simulated board's flash chip, kept by the hardware process: the littlefs image and its power cuts.

The image file (`--flash DIR`/littlefs.img) is the board's filesystem
partition: FS_SIZE bytes of 4 KB blocks (boards/*.py), formatted by the
unix port's vfs.VfsLfs2 with the board's mount options, holding what
`mpremote` would copy (firmware/ without sim/ and scenarios/, protocol/,
boards/, main.py: they take their real room) and site.json. The firmware's
process mounts it at MOUNT over firmware/sim/blockdev.py and asks gate()
before every erase and program; a reset ends that process and the image
stays, as flash does.

gate() counts the steps, does the erases, refuses a program over flash
that is not erased (NOR flash only clears bits: littlefs never does it, so
the model would be wrong), and cuts the power at the step a scenario's
{"at_s": T, "cut_at_write": K} names: the K-th erase or program after T,
torn half way (firmware/sim/scenario.py arms it). The ring's power-cut test
(tests/test_firmware_ring.py) uses the same chip in one process.
"""
import os

import vfs

from firmware.sim import board
from firmware.sim.blockdev import BLOCK, Flash
from firmware.sim.scenario import emit

MOUNT = "/flash"  # the firmware process's mount point ("/" on a board)
IMAGE = "littlefs.img"
_SHIP = ("main.py", "firmware", "protocol", "boards")
_PC_ONLY = ("firmware/sim", "firmware/scenarios", "firmware/main.py")


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _copy(src, dest):
    with open(src, "rb") as f:
        data = f.read()
    with open(dest, "wb") as f:
        f.write(data)


class Chip:
    def __init__(self, path, size, options):
        self.path = path
        self.size = size
        self.options = options  # vfs.VfsLfs2 keyword arguments: the port's mount
        self.steps = 0  # erases and programs since the first power-on
        self.erases = 0
        self.cut_in = 0  # the power goes off at this many more steps (0: none planned)
        self.image = None
        self.clock = lambda: 0.0  # scenario seconds, for the events (hardware.py sets it)

    @classmethod
    def for_board(cls, flash_dir, board_module):
        return cls(flash_dir + "/" + IMAGE, board_module.FS_SIZE, board_module.FS_MOUNT)

    def blank(self):
        """A chip as it leaves the factory: every byte erased, no filesystem."""
        with open(self.path, "wb") as f:
            erased = b"\xff" * BLOCK
            for _ in range(self.size // BLOCK):
                f.write(erased)
        self.open()

    def open(self):
        if self.image is None:
            self.image = open(self.path, "r+b")

    def mkfs(self):
        dev = Flash(self.path, self.size, self.gate)
        vfs.VfsLfs2.mkfs(dev, **self.options)
        dev.close()

    def mount(self, where):
        """Mounted at `where` over a new block device (a new boot's); the device is returned."""
        dev = Flash(self.path, self.size, self.gate)
        vfs.mount(vfs.VfsLfs2(dev, **self.options), where)
        return dev

    def provision(self, root, site_text):
        """What `huaico flash` does: format a blank chip, copy the code; write site.json every time."""
        new = not _exists(self.path)
        if new:
            self.blank()
            self.mkfs()
        self.open()
        dev = self.mount(MOUNT)
        try:
            if new:
                for name in _SHIP:
                    self._ship(root, name)
            with open(MOUNT + "/site.json", "w") as f:
                f.write(site_text)
        finally:
            vfs.umount(MOUNT)
            dev.close()

    def _ship(self, root, rel):
        src = root + "/" + rel
        if rel in _PC_ONLY:
            return
        if rel == "main.py":  # a compiled tree has firmware/main.mpy: about the room main.py takes
            main = root + "/firmware/main.py"
            _copy(main if _exists(main) else main[:-2] + "mpy", MOUNT + "/main.py")
            return
        if os.stat(src)[0] & 0x4000:  # a directory
            os.mkdir(MOUNT + "/" + rel)
            for entry in os.ilistdir(src):
                if entry[0] != "__pycache__":
                    self._ship(root, rel + "/" + entry[0])
        elif rel.endswith(".py") or rel.endswith(".mpy"):
            _copy(src, MOUNT + "/" + rel)

    def used_blocks(self):
        """Blocks littlefs holds now (mounted read-only here, between boots or at the end)."""
        dev = Flash(self.path, self.size, self.gate)
        fs = vfs.VfsLfs2(dev, **self.options)
        try:
            st = fs.statvfs("/")
            return st[2] - st[3]
        finally:
            dev.close()

    def arm(self, steps):
        self.cut_in = steps

    def gate(self, op, block, offset, length):
        """How many bytes this step may write: all of them, or half when the power goes off now.
        An erase is done here, torn the same way."""
        self.steps += 1
        n = length
        if self.cut_in:
            self.cut_in -= 1
            if not self.cut_in:
                emit("reset", self.clock(), "kind", "power_cut", "at_step", self.steps, "op", op, "block", block)
                board.power_cut()
                n = length // 2
        self.image.seek(block * BLOCK + offset)
        if op == "erase":
            self.erases += 1
            self.image.write(b"\xff" * n)
        elif self.image.read(length) != b"\xff" * length:
            raise ValueError("program over flash not erased: block %d offset %d" % (block, offset))
        return n
