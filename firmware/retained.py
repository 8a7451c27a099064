"""A few words that survive a reset (not a power cut): the rain tips not yet in flash.

Tips are counted in RAM by the gauge's IRQ; a watchdog or soft reset would
wipe them. ESP32s keep them in RTC slow memory (machine.RTC().memory());
RP2040/RP2350 have no RTC memory, but the watchdog's scratch registers
survive every reset except power-on, and MicroPython reaches them with
machine.mem32. Record: check word, pending tips, the seq of the frame being
committed with `taken` tips in it (NONE when no commit is under way), taken.
At boot, taken tips come back only if that frame did not reach flash, so a
tip is counted once whatever instant the reset hits.
"""
import struct

import machine

NONE = 0xFFFFFFFF
_MAGIC = 0x48554943  # "HUIC"
_FORMAT = "<IIII"
# RP2040 / RP2350 WATCHDOG_BASE + SCRATCH0 (datasheets: 0x40058000 / 0x400d8000 + 0x0c).
_SCRATCH = {"pico": 0x4005800C, "pico_w": 0x4005800C, "pico2_w": 0x400D800C}


class Retained:
    def __init__(self, board):
        self.kind = board.RETAINED
        self._scratch = _SCRATCH.get(board.NAME, 0)
        self._rtc = machine.RTC() if self.kind == "rtc" else None
        self._buf = bytearray(16)

    def _check(self, pending, seq, taken):
        return (_MAGIC ^ pending ^ (seq * 7) ^ (taken * 13)) & 0xFFFFFFFF

    def save(self, pending, seq=NONE, taken=0):
        words = (self._check(pending, seq, taken), pending, seq, taken)
        if self._rtc is not None:
            struct.pack_into(_FORMAT, self._buf, 0, *words)
            self._rtc.memory(self._buf)
            return
        for i in range(4):
            machine.mem32[self._scratch + 4 * i] = words[i]

    def load(self):
        """(pending, seq, taken) from before the reset, or (0, NONE, 0) after a power-on."""
        if self._rtc is not None:
            data = self._rtc.memory()
            if len(data) < 16:
                return 0, NONE, 0
            check, pending, seq, taken = struct.unpack_from(_FORMAT, data)
        else:
            base = self._scratch
            check = machine.mem32[base] & 0xFFFFFFFF
            pending = machine.mem32[base + 4] & 0xFFFFFFFF
            seq = machine.mem32[base + 8] & 0xFFFFFFFF
            taken = machine.mem32[base + 12] & 0xFFFFFFFF
        if check != self._check(pending, seq, taken):
            return 0, NONE, 0
        return pending, seq, taken
