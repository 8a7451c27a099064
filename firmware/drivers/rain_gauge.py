"""Tipping-bucket rain gauge: tips counted in a pin IRQ, taken atomically by read().

The handler runs as a hard IRQ: it only reads the tick counter and adds to
small ints held on the instance, so it never touches the heap (a tip during
a garbage collection is still counted). Tips stay counted across sleep and
sending until read() takes them; pending()/restore() let the firmware keep
untaken tips in RTC memory across a reset.
"""
import machine
import time
from micropython import const

from firmware.drivers import Q_OK, Q_OUT_OF_RANGE

_RAIN = const(1)  # protocol/channels.py "rain", 0.1 mm
_RAIN_TIPS = const(2)  # protocol/channels.py "rain_tips", count
_TIPS_MAX = const(10000)  # rain_tips' highest valid value in one reading
_UM_PER_TENTH = const(100)  # micrometres in the 0.1 mm the rain channel counts


class RainGauge:
    CHANNELS = (_RAIN_TIPS, _RAIN)

    def __init__(self, pin, index=0, mm_per_tip=0.2, debounce_ms=20, trigger=None):
        self.index = index
        self._um_per_tip = int(mm_per_tip * 1000 + 0.5)
        self._debounce = debounce_ms
        self._count = 0
        self._last = 0
        self._armed = False
        # Rain not yet sent, below one 0.1 mm step, in micrometres: a bucket
        # of 0.254 mm loses nothing to rounding over a storm.
        self._residue_um = 0
        self._pin = pin
        if trigger is None:
            trigger = machine.Pin.IRQ_FALLING  # reed switch closing to ground
        # The bound method is made once here; the IRQ calls it with no allocation.
        self._handler = self._edge
        pin.irq(self._handler, trigger, hard=True)

    def _edge(self, pin):
        # Hard IRQ: integers only. An edge within debounce_ms of the last
        # counted one is the reed switch bouncing, not a tip.
        now = time.ticks_ms()
        if self._armed and time.ticks_diff(now, self._last) < self._debounce:
            return
        self._last = now
        self._armed = True
        self._count += 1

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
