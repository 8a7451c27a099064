"""The `time` the drivers see in a driver check: the board's clock, with no hardware process to sleep in.

Busy time counts one to one with real time, as on the simulated board
(firmware/sim/vtime.py); a sleep only moves the clock, so a DS18B20's
750 ms conversion costs the check nothing. Smaller than vtime.py, which
brings the RPC wire along: the checks run in a board-sized heap.
"""
import time as _real

_TICKS_MAX = (1 << 30) - 1
_clock = [0, _real.ticks_us()]  # virtual us at the last look, real ticks then

ticks_add = _real.ticks_add
ticks_diff = _real.ticks_diff
time = _real.time


def now_us():
    now = _real.ticks_us()
    _clock[0] += _real.ticks_diff(now, _clock[1])
    _clock[1] = now
    return _clock[0]


def ticks_us():
    return now_us() & _TICKS_MAX


def ticks_ms():
    return (now_us() // 1000) & _TICKS_MAX


def sleep_us(us):
    now_us()
    _clock[0] += us


def sleep_ms(ms):
    sleep_us(ms * 1000)


def sleep(s):
    sleep_us(int(s * 1000000))
