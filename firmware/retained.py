"""A few words that survive a reset (not a power cut): tips not yet in flash, and the time.

Tips are counted in RAM by the gauge's IRQ; a watchdog or soft reset would
wipe them. ESP32s keep them in RTC slow memory (machine.RTC().memory());
RP2040/RP2350 have no RTC memory, but the watchdog's scratch registers
SCRATCH0-3 survive every reset except power-on, and MicroPython reaches
them with machine.mem32 (the pico-sdk keeps SCRATCH4-7 for its reboots).
Record: check word; pending and taken tips (15 bits each) and whether a
time is kept; the seq of the frame being committed with `taken` tips in it
(NONE when no commit is under way); the clock word. At boot, taken tips
come back only if that frame did not reach flash, so a tip is counted once
whatever instant the reset hits.

The clock word keeps the gateway's time across a reset. The esp32 RTC goes
on counting through every reset but power-on, so the offset from it to the
gateway's time stays right and is kept; rp2 restarts its RTC at 2021-01-01
at every boot (ports/rp2/main.c), so the gateway time of the last save is
kept instead, and time resumes from there (late by at most one loop).
"""
import struct

import machine

NONE = 0xFFFFFFFF
_MAGIC = 0x48554943  # "HUIC"
_FORMAT = "<IIII"
_TIPS_MASK = 0x7FFF
_HAS_TIME = 1 << 30
# RP2040 / RP2350 WATCHDOG_BASE + SCRATCH0 (datasheets: 0x40058000 / 0x400d8000 + 0x0c).
_SCRATCH = {"pico": 0x4005800C, "pico_w": 0x4005800C, "pico2_w": 0x400D800C}


class Retained:
    def __init__(self, board):
        self.kind = board.RETAINED
        # True where the board's RTC runs on through a reset: keep the offset, not a time.
        self.rtc_runs = self.kind == "rtc"
        self.clock = None  # the clock word to keep (App sets it once it knows the time)
        self._scratch = _SCRATCH.get(board.NAME, 0)
        self._rtc = machine.RTC() if self.kind == "rtc" else None
        self._buf = bytearray(16)

    def _check(self, tips, seq, clock):
        return (_MAGIC ^ tips ^ (seq * 7) ^ (clock * 13)) & 0xFFFFFFFF

    def save(self, pending, seq=NONE, taken=0):
        tips = min(pending, _TIPS_MASK) | (min(taken, _TIPS_MASK) << 15)
        clock = 0
        if self.clock is not None:
            tips |= _HAS_TIME
            clock = self.clock & 0xFFFFFFFF
        words = (self._check(tips, seq, clock), tips, seq, clock)
        if self._rtc is not None:
            struct.pack_into(_FORMAT, self._buf, 0, *words)
            self._rtc.memory(self._buf)
            return
        for i in range(4):
            machine.mem32[self._scratch + 4 * i] = words[i]

    def load(self):
        """(pending, seq, taken, clock) from before the reset, or (0, NONE, 0, None)
        after a power-on; clock is None when no time was kept."""
        if self._rtc is not None:
            data = self._rtc.memory()
            if len(data) < 16:
                return 0, NONE, 0, None
            check, tips, seq, clock = struct.unpack_from(_FORMAT, data)
        else:
            base = self._scratch
            check = machine.mem32[base] & 0xFFFFFFFF
            tips = machine.mem32[base + 4] & 0xFFFFFFFF
            seq = machine.mem32[base + 8] & 0xFFFFFFFF
            clock = machine.mem32[base + 12] & 0xFFFFFFFF
        if check != self._check(tips, seq, clock):
            return 0, NONE, 0, None
        if not tips & _HAS_TIME:
            clock = None
        elif self.rtc_runs and clock & 0x80000000:
            clock -= 0x100000000  # the esp32 offset is signed
        return tips & _TIPS_MASK, seq, (tips >> 15) & _TIPS_MASK, clock
