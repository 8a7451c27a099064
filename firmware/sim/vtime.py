"""The simulated board's `time` module: a virtual clock that skips through sleep.

Busy time counts one to one with real time (so socket timeouts, the
watchdog and real gateway round trips stay in step), while every sleep of
d virtual seconds takes d / speed real seconds. A board spends nearly all
its time asleep, so a 10-minute storm at --speed 60 takes a few seconds.
Scenario events (tips, world changes, faults, resets, link windows) are
delivered during sleeps, in time order, as interrupts reach a sleeping
board; a light sleep returns early when a pin IRQ fired, as on a board.

time.time() is the real wall clock, as a board's RTC (or the gateway time
it synced from an ack) would give: the gateway sees frames stamped with its
own present time, in seq order, never from its future. What the speed-up
compresses is scenario time: K tips per real second look, to the gateway,
like a K times heavier storm of the same total. ticks_ms() is scenario time.
"""
import time as _real

from firmware.sim import board

_TICKS_PERIOD = 1 << 30
_TICKS_MAX = _TICKS_PERIOD - 1


class Clock:
    def __init__(self, speed=1.0, scenario=None):
        self.speed = float(speed)
        self.scenario = scenario
        self.v_us = 0
        self._r_last = _real.ticks_us()
        self.wdt_timeout_us = 0
        self.wdt_fed_us = 0
        self.heap_probe = None  # called at each idle: the runner's heap figures

    def advance(self):
        now = _real.ticks_us()
        self.v_us += _real.ticks_diff(now, self._r_last)
        self._r_last = now

    def idle(self, us, wake_on_irq):
        """Sleep `us` of virtual time, delivering scenario events; early return on IRQ if asked."""
        self.advance()
        if self.heap_probe is not None:
            self.heap_probe(wake_on_irq)
        target = self.v_us + us
        while True:
            nxt = self.scenario.next_us() if self.scenario is not None else None
            stop = target if nxt is None or nxt > target else nxt
            if self.wdt_timeout_us:
                deadline = self.wdt_fed_us + self.wdt_timeout_us
                if deadline < stop:
                    self._sleep_to(max(deadline, self.v_us))
                    raise board.Reset(board.WDT_RESET)
            self._sleep_to(stop)
            if nxt is None or nxt > target:
                return
            if self.scenario.fire(self.v_us) and wake_on_irq:
                return

    def _sleep_to(self, v_us):
        wait = (v_us - self.v_us) / self.speed
        if wait >= 1:
            _real.sleep_us(int(wait))
        if v_us > self.v_us:
            self.v_us = v_us
        self._r_last = _real.ticks_us()

    def wdt_start(self, timeout_ms):
        self.advance()
        self.wdt_timeout_us = timeout_ms * 1000
        self.wdt_fed_us = self.v_us

    def wdt_feed(self):
        self.advance()
        self.wdt_fed_us = self.v_us


clock = Clock()


def install(new):
    global clock
    clock = new


def ticks_us():
    clock.advance()
    return clock.v_us & _TICKS_MAX


def ticks_ms():
    clock.advance()
    return (clock.v_us // 1000) & _TICKS_MAX


def ticks_cpu():
    return ticks_us()


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
    return int(_real.time())


def time_ns():
    return _real.time_ns()


def gmtime(secs=None):
    return _real.gmtime(time() if secs is None else secs)


def localtime(secs=None):
    return _real.localtime(time() if secs is None else secs)


def mktime(t):
    return _real.mktime(t)


def virtual_s():
    """Scenario seconds since the simulated board first powered on."""
    return clock.v_us / 1000000
