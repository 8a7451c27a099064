"""How the board's port sleeps, for firmware/sim/machine.py: wake sources, IRQs, the watchdog.

Loaded at the first sleep, so the boot's peak heap does not hold it. The
rules are the port's (firmware/sim/ports/, told in the hardware's hello as
machine.port): rp2 (ports/rp2/modmachine.c mp_machine_lightsleep) and
esp32 (ports/esp32/modmachine.c machine_sleep_helper), v1.22.0-v1.28.0.
"""
from firmware.sim import board, rpc, vtime
from firmware.sim.machine import (DEEPSLEEP_RESET, EXT0_WAKE, HARD_RESET, TIMER_WAKE, Pin, _irq_pins,
                                  _sleep, _wake, ext0, port)


def _hang(why):
    """The board stops for good: the simulator reports it (why: a key of ports.HANGS,
    short so that the firmware's heap does not hold the story) and the run fails."""
    raise board.Hang(why)


def esp32_edge(pin, flags):
    """An edge at a sleeping esp32: it runs no pin IRQ, and wakes only on a configured
    source (ports/esp32/modmachine.c machine_sleep_helper: timer, ext0, ext1, gpio);
    the IRQ of that edge is not delivered after the wake. True when it woke."""
    if pin is None or ext0[0] != pin._h or (flags == Pin.IRQ_RISING) != bool(ext0[1]):
        return False
    _wake[0] = EXT0_WAKE
    return True


def _asleep(us, how):
    """Spend a sleep: `how` is "light" or "deep". The watchdog does in light sleep
    what the port's release makes it do (ports/rp2.py wdt_in_lightsleep)."""
    clock = vtime.clock
    clock.advance()
    wdt = port["wdt_sleep"] if how == "light" else "counts"
    timeout = clock.wdt_timeout_us
    _sleep[0] = how
    try:
        if not timeout or wdt == "counts":
            clock.idle(us, True)
            return
        start = clock.v_us
        deadline = clock.wdt_fed_us + timeout
        clock.wdt_timeout_us = 0  # decided here, not by the clock
        if wdt == "hangs" and deadline < start + us:
            clock.idle(max(deadline - start, 0), True)
            if clock.v_us >= deadline:
                _hang("rp2040_wdt")
        else:
            clock.idle(us, True)
            if wdt == "paused":
                # RP2350: the watchdog did not count while asleep (micropython #17229).
                deadline += clock.v_us - start
        clock.wdt_fed_us = deadline - timeout
        clock.wdt_timeout_us = timeout
    finally:
        _sleep[0] = None


def _ext0_now():
    """True when the esp32 ext0 pin is at its wake level already: a level wake fires at once."""
    if ext0[0] is None:
        return False
    pin = _irq_pins.get(ext0[0])
    return pin is not None and pin.value() == ext0[1]


def lightsleep(ms=None):
    if port["name"] == "rp2":
        # ports/rp2/modmachine.c mp_machine_lightsleep: no timeout is DORMANT, which
        # only the CYW43's host-wake line ends; <= 1 ms is a busy delay; a pin IRQ wakes
        # a timed sleep and its handler runs (micropython #7035).
        if ms is None:
            _hang("rp2_dormant")
        if ms <= 1:
            vtime.sleep_ms(ms)
            return
        if ms >= 4294967:
            raise ValueError("sleep too long")
        _asleep(ms * 1000, "light")
        return
    _wake[0] = TIMER_WAKE
    if _ext0_now():
        _wake[0] = EXT0_WAKE
        return
    if ms is None:
        if ext0[0] is None:
            _hang("esp32_no_wake")
        ms = 1 << 30
    _asleep(ms * 1000, "light")


def deepsleep(ms=None):
    """esp32: a reset that keeps only RTC memory, woken by the timer or ext0 (the wake
    reason reaches the next boot); rp2: lightsleep then reset (ports/rp2/modmachine.c)."""
    if port["name"] == "rp2":
        lightsleep(ms)
        raise board.Reset(HARD_RESET)
    _wake[0] = TIMER_WAKE
    if _ext0_now():
        _wake[0] = EXT0_WAKE
    else:
        _asleep((ms if ms is not None else 1 << 30) * 1000, "deep")
    rpc.call("wake", _wake[0])
    raise board.Reset(DEEPSLEEP_RESET)


