"""Tipping-bucket rain gauge model: a reed switch that closes to ground at each tip.

As a real one does, the switch stays closed while the magnet passes, 50 to
150 ms (varied tip by tip), and bounces open and shut on release, 1 ms
apart: the edges after the closing one come later in scenario time, so a
debounce that counts the release bounce as a tip counts two.

With its pull-up on a switched rail (bus.Rail) the pin reads low whenever
the rail is off, reed open or not: switching the rail is an edge on the
pin, and a tip while it is off makes none (the tip is lost, as on a board).
"""
from firmware.sim import bus, io

_CLOSURE_MIN_MS = 50
_CLOSURE_SPAN_MS = 101  # closures last 50..150 ms
_BOUNCE_US = 1000
_RELEASE_BOUNCES = 3  # open/shut pairs as the reed lets go


class TippingBucket:
    def __init__(self, name, pin_id, bounces=0):
        self.name = name
        self.pin_id = pin_id
        self.bounces = bounces  # extra open/shut pairs of an instant tip(), as a worn reed gives
        self.tips = 0  # tips the bucket made, counted or not
        self._edges = []  # [scenario us, level] still to come, in time order
        self._reed = 1  # 1 open, 0 closed
        self.rail = None  # the pull-up's supply, when it is switched (devices/__init__.py)

    def _set(self, reed, at_us=None):
        """The reed opens (1) or closes (0) at scenario time at_us: the pin follows while the
        pull-up is powered."""
        self._reed = reed
        bus.edge_us[0] = at_us
        try:
            return io.fire(self.pin_id, reed if self.rail is None or self.rail.powered else 0)
        finally:
            bus.edge_us[0] = None

    def powered(self, on):
        """The pull-up's rail switched: the pin goes with it (a reed closed keeps it low)."""
        io.fire(self.pin_id, self._reed if on else 0)

    def closure_ms(self):
        """How long the switch stays closed at the current tip (a fixed spread, repeatable)."""
        return _CLOSURE_MIN_MS + (self.tips * 37) % _CLOSURE_SPAN_MS

    def tip(self, n=1):
        """n tips at once, closure and release bounce with no time between: for driver
        checks that run without a scenario clock (tests/mp_drivers)."""
        for _ in range(n):
            self.tips += 1
            if bus.dead(self):
                continue
            self._set(0)
            for _ in range(self.bounces):
                self._set(1)
                self._set(0)
            self._set(1)

    def close(self, now_us):
        """The bucket tips at scenario time now_us: the switch closes now and opens,
        bouncing, a closure later (next_us/due). A dead gauge never closes."""
        self.tips += 1
        if bus.dead(self):
            return
        self._set(0, now_us)
        release = now_us + self.closure_ms() * 1000
        edges = [[release, 1]]
        for k in range(_RELEASE_BOUNCES):
            edges.append([release + (2 * k + 1) * _BOUNCE_US, 0])
            edges.append([release + (2 * k + 2) * _BOUNCE_US, 1])
        self._edges = edges

    def next_us(self):
        """When the switch next changes, or None."""
        return self._edges[0][0] if self._edges else None

    def due(self, now_us):
        """Make the edges due by now_us; True when one ran an IRQ handler."""
        ran = False
        while self._edges and self._edges[0][0] <= now_us:
            at, level = self._edges.pop(0)
            ran = self._set(level, at) or ran
        return ran
