"""The MicroPython releases check at boot: is the release on this board one its board file supports?

A module of its own, loaded after the boot's heap peak and unloaded again
(firmware/boot.py), so that the check costs the boot nothing. `huaico flash`
applies the same rule before it writes (gateway/flash.py release_problem).
"""
import sys


def refusal(board):
    """One console line when this release is not one boards/<board>.py supports
    (MICROPYTHON: oldest, newest checked; any patch release of the newest), else None."""
    have = tuple(sys.implementation.version[:3])
    oldest, newest = board.MICROPYTHON
    if oldest <= have and have[:2] <= newest[:2]:
        return None
    return ("MicroPython %d.%d.%d is not supported on %s: install MicroPython %d.%d.%d to %d.%d.x for this board"
            % (have + (board.NAME,) + oldest + newest[:2]))
