"""The strict board model: each port's rules as data, for the simulated `machine` to enforce.

One module per MicroPython port (rp2.py, esp32.py) holds what that port's C
sources accept and do, release by release, with the file and version each
rule was read from. load(board, version) gives the rules of one board file
running one MicroPython release; firmware/sim/machine.py and esp32.py
enforce them, so the firmware meets on the PC the refusals it would meet
on the board. The rules live in the hardware process (firmware/sim/hardware.py
checks each peripheral the firmware makes); what the firmware's process needs
for sleep and the watchdog travels in the hello (hello()).
"""
import sys

# Why a board hung (firmware/sim/machine.py raises board.Hang with the key).
HANGS = {
    "rp2040_wdt": "the RP2040 watchdog fired in lightsleep: locked up until power is cycled"
                  " (micropython #17228, fixed after v1.28.0)",
    "rp2_dormant": "rp2 lightsleep() without a timeout is DORMANT: no pin IRQ wakes it",
    "esp32_no_wake": "esp32 lightsleep() without a timeout and no wake source",
}

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


    def hello(self):
        """What the firmware's process (machine.py `port`) needs: plain values."""
        return {"name": self.name, "chip": self.chip, "wdt_sleep": self.wdt_in_lightsleep}

    def wdt(self, id, timeout):
        """machine.WDT(id, timeout): extmod/machine_wdt.c, ports/rp2/machine_wdt.c, ports/esp32/machine_wdt.c."""
        if id != 0:
            raise ValueError("WDT(%d) doesn't exist" % id)
        self.port.wdt_timeout(timeout, self.wdt_max_ms)

    def sleep(self, how, ms, level_now):
        """What machine.lightsleep/deepsleep(ms) does first on this port, as [action, value]:
        ["hang", key of HANGS], ["busy", us], ["woke", wake reason] or ["sleep", us].
        level_now: whether the esp32 ext0 pin is at its wake level (None: no ext0)."""
        if self.name == "rp2":
            # ports/rp2/modmachine.c mp_machine_lightsleep: no timeout is DORMANT, which only
            # the CYW43's host-wake line ends; <= 1 ms a busy delay; >= 2^32/1000 ms refused;
            # a pin IRQ wakes a timed sleep and its handler runs (micropython #7035).
            if ms is None:
                return ["hang", "rp2_dormant"]
            if ms <= 1:
                return ["busy", ms * 1000]
            if ms >= 4294967:
                raise ValueError("sleep too long")
            return ["sleep", ms * 1000]
        # ports/esp32/modmachine.c machine_sleep_helper: the timer and ext0 (level-triggered:
        # a pin already at its level wakes the chip at once).
        if level_now:
            return ["woke", self.port.EXT0_WAKE]
        if ms is None:
            if level_now is None:
                return ["hang", "esp32_no_wake"]
            ms = 1 << 30
        return ["sleep", ms * 1000]

    def ext0_pin(self, pin_id):
        """esp32.wake_on_ext0 takes an RTC GPIO only (ports/esp32/modesp32.c RTC_IS_VALID_EXT_PIN)."""
        if pin_id not in self.port.RTC_PINS[self.chip]:
            raise ValueError("invalid pin")

    def irq(self, kwargs):
        """Pin.irq's keywords (esp32's wake= is checked and armed in firmware/sim/machine.py)."""
        self.allowed("irq", kwargs)

    def new(self, kind, args, kwargs, wiring):
        """The (args, kwargs) to build peripheral `kind` with, after this port's checks;
        TypeError or ValueError as the port raises them. `wiring` is the board file."""
        if kind == "Pin":
            self.allowed("Pin", kwargs)
            if len(args) > 3:
                raise TypeError("function takes 3 positional arguments but %d were given" % len(args))
            if args[0] not in self.port.GPIOS[self.chip]:
                raise ValueError("invalid pin")  # machine_pin_find (both ports)
            self.pin_free(args[0], "Pin")
            args = list(args) + [kwargs.get(name, -1) for name in ("mode", "pull")[len(args) - 1:]]
            self.port.pin_options(self.chip, args[0], args[1], kwargs)
            value = kwargs.get("value")
            return args, ({} if value is None else {"value": value})
        if kind == "ADC":
            source = getattr(args[0], "id", args[0])
            if not (self.name == "rp2" and isinstance(args[0], int) and 0 <= source < 5):  # an rp2 channel
                self.port.adc_pin(self.chip, source)
            return args, kwargs
        if kind == "PCNT":
            self.port.pcnt_unit(self.chip, self.version, args)
            return args, kwargs
        if kind == "I2C":
            self.allowed("I2C", kwargs)
            self.port.bus_pins(self.chip, "I2C", args[0], _pin_ids(kwargs, ("scl", "sda")))
            defaults = self.port.I2C_DEFAULT
            defaults = defaults.get(self.chip, defaults)
            bus = self._wired("I2C", args[0], (kwargs.get("scl"), kwargs.get("sda")), defaults, wiring)
            return [bus], {"freq": kwargs.get("freq", 400000)}
        if kind == "UART":
            self.allowed("UART", kwargs)
            self.port.bus_pins(self.chip, "UART", args[0], _pin_ids(kwargs, ("tx", "rx")))
            bus = self._wired("UART", args[0], (kwargs.get("tx"), kwargs.get("rx")), self.port.UART_DEFAULT, wiring)
            return [bus], {"baudrate": kwargs.get("baudrate", 115200), "timeout": kwargs.get("timeout", 0)}
        return args, kwargs

    def _wired(self, kind, bus_id, pins, defaults, wiring):
        """The bus id whose cables are on these pins: -1 (nothing answers there) when they are
        not the board file's, e.g. the port's default pins of I2C(id) without scl/sda."""
        pins = [getattr(p, "id", p) for p in pins]
        if None in pins:
            default = defaults.get(bus_id)
            if default is None:
                raise ValueError("%s(%r) doesn't exist" % (kind, bus_id))
            pins = [default[i] if pins[i] is None else pins[i] for i in range(2)]
        for p in pins:
            self.pin_free(p, kind)
        table = getattr(wiring, kind, {})
        return bus_id if list(table.get(bus_id, ())) == pins else -1


def _pin_ids(kwargs, names):
    """The GPIO numbers of the pins given by these keywords (a Pin or a number; None if not given)."""
    return [getattr(kwargs.get(name), "id", kwargs.get(name)) for name in names]


def load(board, version):
    """The Rules of a board file (boards/<board>.py) running MicroPython `version` (a tuple)."""
    name = "firmware.sim.ports." + PORT_OF[board]
    __import__(name)
    return Rules(board, version, sys.modules[name])
