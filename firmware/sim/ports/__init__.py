"""The strict board model: each port's rules as data, for the simulated `machine` to enforce.

One module per MicroPython port (rp2.py, esp32.py) holds what that port's C
sources accept and do, release by release, with the file and version each
rule was read from. load(board, version) gives the rules of one board file
running one MicroPython release; firmware/sim/machine.py and esp32.py
enforce them, so the firmware meets on the PC the refusals it would meet
on the board.
"""
import sys

PORT_OF = {"pico": "rp2", "pico_w": "rp2", "pico2_w": "rp2", "esp32": "esp32", "esp32s3": "esp32"}


class Rules:
    """The rules of one board on one release: the port module's data, resolved."""

    def __init__(self, board, version, port):
        self.board = board
        self.version = tuple(version[:3])
        self.port = port
        self.name = port.NAME
        self.chip = port.CHIP[board]
        self.reserved = port.RESERVED.get(board, {})
        self.wdt_max_ms = port.wdt_max_ms(self.chip, self.version)
        self.wdt_in_lightsleep = port.wdt_in_lightsleep(self.chip, self.version)

    def allowed(self, what, kwargs):
        """TypeError for a keyword `what` (Pin, irq, I2C, UART, WDT) does not take on this port,
        as mp_arg_parse_all raises it (py/argcheck.c, MICROPY_ERROR_REPORTING_NORMAL)."""
        names = self.port.ARGS[what]
        for key in kwargs:
            if key not in names:
                raise TypeError("extra keyword arguments given")

    def pin_free(self, pin_id, what):
        """ValueError for a pin the board's module keeps for itself (flash, PSRAM, radio)."""
        why = self.reserved.get(pin_id)
        if why is not None:
            raise ValueError("%s: GPIO%s is %s on %s" % (what, pin_id, why, self.board))


def load(board, version):
    """The Rules of a board file (boards/<board>.py) running MicroPython `version` (a tuple)."""
    name = "firmware.sim.ports." + PORT_OF[board]
    __import__(name)
    return Rules(board, version, sys.modules[name])
