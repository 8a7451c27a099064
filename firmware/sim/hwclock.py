"""Scenario time as the simulated hardware sees it: what device models charge their datasheet times to.

The firmware's clock (vtime.py) counts busy time one to one with real time
and skips through sleeps; so does this one, from the scenario time of the
last sleep (the hardware process syncs it at each hello and sleep,
hardware.py). A model that answers "not ready" until a conversion is done
reads now_us(); a call that blocks the CPU on a board (time_pulse_us, a
UART write into a full buffer) takes that time for real with busy_us(), so
the firmware's clock and the watchdog see it too. A driver check that runs
drivers and models in one process (tests/mp_drivers) points now_us at its
own virtual clock with follow().
"""
import time as _real

_base = [0, _real.ticks_us()]  # scenario us at the last sync, and the real ticks then
_source = [None]  # a clock to follow instead (one process: drivers and models together)


def now_us():
    if _source[0] is not None:
        return _source[0]()
    return _base[0] + _real.ticks_diff(_real.ticks_us(), _base[1])


def sync(v_us):
    _base[0] = v_us
    _base[1] = _real.ticks_us()


def follow(source):
    _source[0] = source


def reach(v_us):
    """A request from the firmware sent at its v_us (rpc.py): nothing it causes here is earlier."""
    if _source[0] is None and now_us() < v_us:
        sync(v_us)


def busy_us(us):
    """The board's CPU is held for `us`: real time, which every clock here counts as busy."""
    if us > 0:
        _real.sleep_us(int(us))
