"""What outlives a reset of the simulated board: the clock, retained memory, the cause, the link.

A reset ends the firmware's process (RAM is gone); the hardware process
(runner.py) keeps this module's state, as the hardware keeps its RTC, its RTC
memory or watchdog scratch registers, and its cables, and tells the next
firmware process the cause. A power cut also clears the retained memory.
The firmware's process has its own copy for the exceptions, the cause and
the link state that the hardware reports at each sleep.
"""

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5


class Reset(BaseException):
    """The board restarts. BaseException so that no `except Exception` in the firmware stops it."""

    def __init__(self, cause, power=False):
        self.cause = cause
        self.power = power


class Hang(BaseException):
    """The board stops for good (a lock-up only a power cycle ends): the run fails."""

    def __init__(self, why):
        self.why = why


class ScenarioEnd(BaseException):
    """The scenario's time is up: the runner stops the board."""


state = {
    "cause": PWRON_RESET,
    "rtc_memory": b"",
    "link_down": False,
    "wake": 0,  # esp32 machine.wake_reason() of the next boot (a deep sleep's wake source)
    "rtc_s": None,  # what time.time() adds to the wall clock: the board's RTC (runner.py)
}
scratch = {}  # RP2 watchdog scratch registers, by address


def power_cut():
    """RAM and the retained memory are gone; flash and cables stay."""
    state["rtc_memory"] = b""
    state["rtc_s"] = None
    scratch.clear()
