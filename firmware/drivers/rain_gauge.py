"""Tipping-bucket rain gauge: tips counted in a pin IRQ, taken atomically by read().

The handler only reads the tick counter and adds to small ints held on the
instance, so it never touches the heap (a tip during a garbage collection is
still counted). How the IRQ is set up is the port's: rp2 runs it as a hard
IRQ, and a pin IRQ wakes its timed lightsleep (micropython #7035); esp32
pin IRQs are always scheduled (Pin.irq takes no `hard`,
ports/esp32/machine_pin.c) and a sleeping esp32 runs none, so the pin is
also its ext0 wake source and the tip that woke it is counted on waking
(woke()). Deep sleep is refused with a rain gauge (firmware/config.py).

A reed switch stays closed 50-150 ms and bounces on release: every edge
restarts a hold of the longest closure plus debounce_ms, and only an edge
after a quiet hold is a tip, so the release bounce is never a second tip.
The hold is timed when the handler runs, which is late on both ports: an
esp32 runs it when the scheduler gets to it, after a flash commit in C
(littlefs) has ended, and an rp2 runs its hard IRQ only when a flash erase
or program ends (interrupts are off meanwhile, ports/rp2/rp2_flash.c, a
sector erase 45 ms typical, 400 ms at most). A release bounce handled more
than a hold after its closure looked quiet and was counted again (a tip
twice in the outage test on the esp32s3's 6 MB image; on pico in the storm,
a bounce held through an erase). So an edge whose handler finds the reed
open counts only if the reed was seen open since the last tip (by a handler,
by settle_ms() before every sleep, or by the loop's pass a hold after the last
edge, took_fresh()): a bounce of a counted tip never is.
With the reed's pull-up on a power group (firmware/power.py) the gauge holds
the rail up for good, and an edge while the rail is off or settling is the
supply switching, not the reed: it is no tip (hold()).
Tips stay counted across sleep and sending until read() takes them;
pending()/restore() let the firmware keep untaken tips across a reset.

Each tip's tick is also written into a ring made at start-up (an array of
_TIMES ints: a store into it allocates nothing), and a flag tells the main
loop a tip came: the loop then evaluates its rolling-rate rules at once
(rolling()), at the tip and not at the next sample, so a burst is reported
within seconds whatever the sampling interval (firmware/app.py). Tips put
back by restore() (from before a reset) have no time and count in no rate.
"""
import array
import machine
import sys
import time
from micropython import const

from firmware.drivers import Q_OK, Q_OUT_OF_RANGE

_RAIN = const(1)  # protocol/channels.py "rain", 0.1 mm
_RAIN_TIPS = const(2)  # protocol/channels.py "rain_tips", count
_TIPS_MAX = const(10000)  # rain_tips' highest valid value in one reading
_UM_PER_TENTH = const(100)  # micrometres in the 0.1 mm the rain channel counts
_CLOSURE_MS = const(150)  # the longest a bucket's reed switch stays closed
_TIMES = const(256)  # tip times kept: the most tips a rolling rule may count (firmware/config.py RAIN_TIMES)
_ESP32 = sys.platform == "esp32"  # probed once: the port decides the IRQ and the wake


class RainGauge:
    CHANNELS = (_RAIN_TIPS, _RAIN)

    def __init__(self, pin, index=0, mm_per_tip=0.2, debounce_ms=20, trigger=None):
        self.index = index
        self._um_per_tip = int(mm_per_tip * 1000 + 0.5)
        # debounce_ms 0: a clean pulse (an optical or solid-state gauge), every edge a tip.
        self._hold = _CLOSURE_MS + debounce_ms if debounce_ms else 0
        self._count = 0
        self._last = 0
        self._armed = False
        self._opened = True  # the reed seen open since the last tip
        # Rain not yet sent, below one 0.1 mm step, in micrometres: a bucket
        # of 0.254 mm loses nothing to rounding over a storm.
        self._residue_um = 0
        # ticks_ms of the last tips, a ring (only the _kept newest slots mean anything). Made
        # from a range, which has a length: the array is allocated once at its size, with
        # no list of _TIMES ints first (2 KB on this 64-bit port, a board's boot margin).
        self._times = array.array("i", range(_TIMES))
        self._next = 0  # the slot the next tip's time goes in
        self._kept = 0  # slots holding a tip's time (up to _TIMES)
        self.fresh = False  # a tip since the main loop last looked (took_fresh())
        self._pin = pin
        self._group = None  # the pull-up's power group, when it has one
        if trigger is None:
            trigger = machine.Pin.IRQ_FALLING  # reed switch closing to ground
        self._closed = 1 if trigger == machine.Pin.IRQ_RISING else 0
        # The bound method is made once here; the IRQ calls it with no allocation.
        self._handler = self._edge
        if _ESP32:
            pin.irq(self._handler, trigger)
            import esp32

            # After pin.irq(): an irq() on the ext0 pin clears the ext0 wake.
            esp32.wake_on_ext0(pin, self._closed == 1)
        else:
            pin.irq(self._handler, trigger, hard=True)

    def _edge(self, pin):
        # Integers only. An edge within the hold of the last edge is the same tip.
        now = time.ticks_ms()
        if self._group is not None and not self._group.ready(now):
            return  # the pull-up's rail switching: the edge is the supply's
        quiet = not self._armed or time.ticks_diff(now, self._last) >= self._hold
        self._last = now
        self._armed = True
        if self._hold and pin.value() != self._closed:
            # Open again: a late-run handler. Unless the reed was seen open since the last tip,
            # this is that tip's release bounce; either way it has been seen open now.
            quiet = quiet and self._opened
            self._opened = True
        if quiet:
            self._count += 1
            self._opened = False
            # ticks_ms is a 30-bit small int: it fits the array's int32, and storing it allocates nothing.
            self._times[self._next] = now
            self._next = (self._next + 1) % _TIMES
            if self._kept < _TIMES:
                self._kept += 1
            self.fresh = True

    def took_fresh(self):
        """True once for the tips since the last call (the main loop's cue to evaluate its rules).
        Called at every pass of the loop, before its flash work, it also looks at the reed: open
        a hold after its last edge, no bounce of the last tip is still to come, and it is seen open.
        Else a tip whose closure falls whole in a long erase (up to 400 ms) would find it open
        and not count, when the loop last slept on a shut bounce and the reed opened in the sleep."""
        state = machine.disable_irq()
        fresh = self.fresh
        self.fresh = False
        if (not self._opened and self._hold and time.ticks_diff(time.ticks_ms(), self._last) >= self._hold
                and self._pin.value() != self._closed):
            self._opened = True
        machine.enable_irq(state)
        return fresh

    def rolling(self, code, window_ms):
        """Rain in the last window_ms in channel `code`'s unit (0.1 mm for rain, a count for
        rain_tips), from the tip times: at most _TIMES tips are counted."""
        state = machine.disable_irq()
        now = time.ticks_ms()
        n = 0
        at = self._next
        while n < self._kept:
            at = (at - 1) % _TIMES
            if time.ticks_diff(now, self._times[at]) >= window_ms:
                break
            n += 1
        machine.enable_irq(state)
        if code == _RAIN:
            return n * self._um_per_tip // _UM_PER_TENTH
        return n

    def hold(self, group):
        """Power the pull-up's group for good (and wait its settle time) before a tip can count."""
        self._group = group
        group.up()

    def woke(self):
        """After a sleep: count the tip that woke an esp32 (no IRQ ran for it)."""
        if _ESP32 and machine.wake_reason() == machine.EXT0_WAKE:
            self._edge(self._pin)

    def settle_ms(self):
        """How long to stay awake before sleeping: an esp32 whose reed is still closed
        would wake at once on its level-triggered ext0 source. An open reed is seen open."""
        if self._pin.value() == self._closed:
            return self._hold if _ESP32 else 0
        self._opened = True
        return 0

    def pending(self):
        """Tips counted and not yet taken."""
        return self._count

    def take(self):
        """The tips counted since the last take, and zero the count, with IRQs off."""
        state = machine.disable_irq()
        n = self._count
        self._count = 0
        machine.enable_irq(state)
        return n

    def restore(self, n):
        """Add back n tips counted before a reset and not yet sent."""
        state = machine.disable_irq()
        self._count += n
        machine.enable_irq(state)

    def read(self):
        n = self.take()
        total = n * self._um_per_tip + self._residue_um
        tenths = total // _UM_PER_TENTH
        self._residue_um = total - tenths * _UM_PER_TENTH
        quality = Q_OK if n <= _TIPS_MAX else Q_OUT_OF_RANGE
        return [(_RAIN_TIPS, self.index, n, quality), (_RAIN, self.index, tenths, quality)]
