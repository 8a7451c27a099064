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
torn half way (firmware/sim/scenario.py arms it). A list [K1, K2, ...]
chains them: after the K1-th step's reset, the K2-th step after it, and so
on, which sweeps every step of the boots that follow. With "cut": "watchdog"
(or "soft", "hard") the board resets there instead, keeping its retained
memory: the step is torn the same way (an RP2040's flash program is one
ROM call that a reset aborts). The ring's power-cut test
(tests/test_firmware_ring.py) uses the same chip in one process.

Each step takes the flash's typical datasheet time (`port` set; a scenario's
"flash_time": false turns it off, "max" takes the maxima: STEP_US), the CPU
held meanwhile; on rp2 with
interrupts off, so that UART bytes arriving beyond the RX FIFO are lost
(firmware/sim/uart.py flash_busy), and a pin edge meanwhile has its IRQ
handler run as the step ends (firmware/sim/hardware.py flash_step).
"""
import os
import struct
from binascii import crc32

import vfs

from firmware.sim import board
from firmware.sim.blockdev import BLOCK, Flash
from firmware.sim.scenario import emit

MOUNT = "/flash"  # the firmware process's mount point ("/" on a board)
IMAGE = "littlefs.img"
_SHIP = ("main.py", "firmware", "protocol", "boards")
_PC_ONLY = ("firmware/sim", "firmware/scenarios", "firmware/main.py")
# Winbond W25Q16JV datasheet (the Pico's 2 MB flash; the Pico 2 W's W25Q32 and the ESP32
# modules' 4-8 MB parts are specified alike), AC electrical characteristics: sector erase
# (4 KB) tSE 45 ms typical, 400 ms max; page program (256 B) tPP 0.4 ms typical, 3 ms max.
# A scenario's "flash_time": "max" takes the maxima (a worn or hot chip; the datasheet's
# maximum tPP reflects wear), true (the default) the typical times. [erase, page] in us.
STEP_US = {True: (45000, 400), "max": (400000, 3000)}
_PAGE = 256


def _exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _copy(src, dest, buf):
    """Through `buf`, the chip's block buffer: a whole source file read at once (app.py and
    config.py are over 20 KB) may find no run that long in this process's board-sized heap."""
    with open(src, "rb") as f, open(dest, "wb") as out:
        while True:
            n = f.readinto(buf)
            if not n:
                return
            out.write(buf[:n])


class Chip:
    def __init__(self, path, size, options):
        self.path = path
        self.size = size
        self.options = options  # vfs.VfsLfs2 keyword arguments: the port's mount
        self.steps = 0  # erases and programs since the first power-on
        self.erases = 0
        self.cut_in = 0  # the board resets at this many more steps (0: none planned)
        self.plan = []  # the steps of the cuts chained after that one
        self.cut_as = [board.PWRON_RESET, True]  # that reset's cause, and whether the power went
        self.cut = None  # [cause, power] of the reset a step caused, until the runner takes it
        self.image = None
        # Made once: the hardware process runs at the board's heap size too, and a 4 KB
        # allocation per step would not find room there after a while.
        self._erased = memoryview(b"\xff" * BLOCK)
        self._buf = memoryview(bytearray(BLOCK))
        self.clock = lambda: 0.0  # scenario seconds, for the events (hardware.py sets it)
        self.port = None  # the board's port rules module (runner.py sets it): steps take time
        self.step_us = STEP_US[True]  # an erase's and a page program's time (hardware.py sets it)
        self.uarts = lambda: ()  # the running boot's UARTs (hardware.py sets it)

    @classmethod
    def for_board(cls, flash_dir, board_module):
        return cls(flash_dir + "/" + IMAGE, board_module.FS_SIZE, board_module.FS_MOUNT)

    def blank(self):
        """A chip as it leaves the factory: every byte erased, no filesystem."""
        with open(self.path, "wb") as f:
            for _ in range(self.size // BLOCK):
                f.write(self._erased)
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

    def provision(self, root, site_text, ballast_kb=0, ring_seq=None):
        """What `huaico flash` does: format a blank chip, copy the code; write site.json every time.
        `ballast_kb` of other files on a new chip leave the ring less room (a scenario's
        flash_ballast_kb), so that a test fills the filesystem in minutes, not hours;
        `ring_seq` [next, epochs] seeds a new chip's store as a board's after years (seed_ring)."""
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
                with open(MOUNT + "/ballast", "wb") as f:
                    for _ in range(ballast_kb):
                        f.write(self._erased[:1024])
                if ring_seq:
                    seed_ring(MOUNT + "/data/ring", ring_seq[0], ring_seq[1])
            with open(MOUNT + "/site.json", "w") as f:
                f.write(site_text)
        finally:
            vfs.umount(MOUNT)
            dev.close()

    def _ship(self, root, rel):
        src = root + "/" + rel
        if rel in _PC_ONLY:
            return
        if rel == "main.py":  # a bundle has it at its top; a checkout (or its .mpy) in firmware/
            for main in (src, root + "/firmware/main.py", root + "/firmware/main.mpy"):
                if _exists(main):
                    _copy(main, MOUNT + "/main.py", self._buf)
                    return
            return
        if os.stat(src)[0] & 0x4000:  # a directory
            os.mkdir(MOUNT + "/" + rel)
            for entry in os.ilistdir(src):
                if entry[0] != "__pycache__":
                    self._ship(root, rel + "/" + entry[0])
        elif rel.endswith(".py") or rel.endswith(".mpy"):
            _copy(src, MOUNT + "/" + rel, self._buf)

    def used_blocks(self):
        """Blocks littlefs holds now (mounted read-only here, between boots or at the end)."""
        dev = Flash(self.path, self.size, self.gate)
        fs = vfs.VfsLfs2(dev, **self.options)
        try:
            st = fs.statvfs("/")
            return st[2] - st[3]
        finally:
            dev.close()

    def arm(self, steps, cause=board.PWRON_RESET, power=True):
        """Reset at the steps-th erase or program from now; a list chains several."""
        self.plan = list(steps) if isinstance(steps, list) else [steps]
        self.cut_in = self.plan.pop(0)
        self.cut_as = [cause, power]

    def gate(self, op, block, offset, length):
        """How many bytes this step may write: all of them, or half when the power goes off now.
        An erase is done here, torn the same way."""
        self.steps += 1
        n = length
        if self.cut_in:
            self.cut_in -= 1
            if not self.cut_in:
                emit("reset", self.clock(), "cause", self.cut_as[0], "power", self.cut_as[1], "at_step", self.steps,
                     "op", op, "block", block)
                if self.cut_as[1]:
                    board.power_cut()
                self.cut = self.cut_as
                self.cut_in = self.plan.pop(0) if self.plan else 0
                n = length // 2
        self.image.seek(block * BLOCK + offset)
        if op == "erase":
            self.erases += 1
            self.image.write(self._erased[:n])
        else:
            self.image.readinto(self._buf[:length])
            if crc32(self._buf[:length]) != crc32(self._erased[:length]):
                raise ValueError("program over flash not erased: block %d offset %d" % (block, offset))
        if self.port is not None and n == length:
            from firmware.sim.uart import flash_busy

            pages = (offset + length - 1) // _PAGE - offset // _PAGE + 1
            erase_us, page_us = self.step_us
            flash_busy(erase_us if op == "erase" else pages * page_us, self.uarts(), self.port.FLASH_RX_FIFO)
        return n


def seed_ring(where, next_seq, epochs):
    """A store as a board's ring leaves it after handing out next_seq numbers under
    `epochs` (one byte per generation of 2^24, firmware/ring.py): its "meta" and
    "epoch" files, written in the ring's own format, so that a test reaches the
    2^24 roll in minutes rather than decades, with no hook in the firmware."""
    from firmware.flash import Flash
    from firmware.ring import _META, _META_BODY, _META_MAGIC

    store = Flash(where)
    body = struct.pack(_META, _META_MAGIC, next_seq, 0, -1, 0)[:_META_BODY]
    store.write("meta", body + struct.pack("<I", crc32(body)))
    store.write("epoch", bytes(epochs))
