"""The simulated board's `time` module: a virtual clock that skips through sleep.

Busy time counts one to one with real time (so socket timeouts, the
watchdog and real gateway round trips stay in step), while every sleep of
d virtual seconds takes d / speed real seconds. A board spends nearly all
its time asleep, so a 10-minute storm at --speed 60 takes a few seconds.
The clock runs in the firmware's process; a sleep is spent in the hardware
process (firmware/sim/hardware.py), which delivers the scenario's events
(tips, world changes, faults, resets, link windows) in time order as
interrupts reach a sleeping board, and answers at each pin edge: its IRQ
handler runs here at that instant, and a light sleep returns early.

time.time() runs at the rate of the real wall clock, as a board's RTC does,
from where the board's port starts it (rp2: 2021-01-01 at every boot; esp32:
2000-01-01 at power-on, kept across resets; firmware/sim/ports/): the
gateway's acks set the board's offset, and from then on the gateway sees
frames stamped with its own present, in seq order, never from its future.
What the speed-up compresses is scenario time: K tips per real second look,
to the gateway, like a K times heavier storm of the same total. ticks_ms() is scenario time,
and goes on across resets (the hardware process keeps it).
"""
import time as _real

from firmware.sim import board, rpc

# What time.time() adds to the wall clock: the board's RTC after its last reset,
# set per port by mcu.py from the hardware's hello (firmware/sim/ports/).
rtc_s = [0]
_TICKS_PERIOD = 1 << 30
_TICKS_MAX = _TICKS_PERIOD - 1


class Clock:
    def __init__(self, v_us=0):
        self.v_us = v_us
        self._r_last = _real.ticks_us()
        self.wdt_timeout_us = 0
        self.wdt_fed_us = 0
        self.heap_probe = None  # called at each idle: the heap figures (mcu.py)
        self.deliver = None  # runs the IRQ handlers of pin edges (machine.py)

    def advance(self):
        now = _real.ticks_us()
        self.v_us += _real.ticks_diff(now, self._r_last)
        self._r_last = now

    def now_us(self):
        self.advance()
        return self.v_us

    def reach(self, v_us):
        """The hardware's time in a reply (rpc.py): what the request caused there happened by
        then, so the firmware's time goes on from no earlier."""
        self.advance()
        if v_us > self.v_us:
            self.v_us = v_us

    def idle(self, us, wake_on_irq, how=None):
        """Sleep `us` of virtual time in the hardware process; early return on IRQ if asked.
        A watchdog deadline inside the sleep resets the board there. `how`: "light" or "deep"
        for machine's sleeps, None for time.sleep (awake): the energy model's MCU state."""
        self.advance()
        if self.heap_probe is not None:
            self.heap_probe(wake_on_irq)
        target = self.v_us + us
        while True:
            limit = target
            if self.wdt_timeout_us and self.wdt_fed_us + self.wdt_timeout_us < limit:
                limit = self.wdt_fed_us + self.wdt_timeout_us
            v_us, edges, down, control = rpc.call("idle", self.v_us, limit, how)
            if v_us > self.v_us:
                self.v_us = v_us
            self._r_last = _real.ticks_us()
            board.state["link_down"] = down
            if control == "end":
                raise board.ScenarioEnd()
            if control:
                raise board.Reset(control[0], control[1])
            if edges and self.deliver(edges) and wake_on_irq:
                return
            if self.v_us >= limit:
                if limit < target:
                    raise board.Reset(board.WDT_RESET)
                return

    def wdt_start(self, timeout_ms):
        self.advance()
        self.wdt_timeout_us = timeout_ms * 1000
        self.wdt_fed_us = self.v_us

    def wdt_feed(self):
        self.advance()
        self.wdt_fed_us = self.v_us


clock = Clock()
rpc.keep_time(clock)


def install(new):
    global clock
    clock = new
    rpc.keep_time(new)


def ticks_us():
    clock.advance()
    return clock.v_us & _TICKS_MAX


def ticks_ms():
    clock.advance()
    return (clock.v_us // 1000) & _TICKS_MAX


def ticks_add(ticks, delta):
    return (ticks + delta) & _TICKS_MAX


def ticks_diff(a, b):
    return ((a - b + _TICKS_PERIOD // 2) & _TICKS_MAX) - _TICKS_PERIOD // 2


def sleep_us(us):
    clock.idle(us, False)


def sleep_ms(ms):
    clock.idle(ms * 1000, False)


def sleep(s):
    clock.idle(int(s * 1000000), False)


def time():
    return int(_real.time()) + rtc_s[0]

