"""The MicroPython releases check: is the release on a board one its board file supports?

The firmware asks at boot (firmware/boot.py: a module of its own, loaded and
unloaded before the sensors, so that the check costs the boot's heap
nothing) and `huaico flash` asks before it writes (gateway/devices/flash.py), with
the release the board reports.
"""
import sys


def refusal(board, version=None):
    """One line when MicroPython `version` (this one's by default) is not one boards/<board>.py
    supports (MICROPYTHON: the oldest, and the newest checked with any patch of it), else None."""
    have = tuple((version or sys.implementation.version)[:3])
    oldest, newest = board.MICROPYTHON
    if have < tuple(oldest):
        why = "older than %d.%d.%d, the oldest" % tuple(oldest)
    elif have[:2] > tuple(newest[:2]):
        why = "newer than %d.%d.x, the newest" % tuple(newest[:2])
    else:
        return None
    return ("MicroPython %d.%d.%d, %s boards/%s.py supports: install MicroPython %d.%d.x"
            % (have + (why, board.NAME) + tuple(newest[:2])))
