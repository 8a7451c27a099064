"""Pins of the simulated `machine` module: Pin with IRQs, time_pulse_us, irq masking.

The real drivers talk to these exactly as they would to a board's Pin and
time_pulse_us; each call is answered by the device model wired in
firmware/sim/bus.py, so the drivers run unchanged on the unix port.
ADC and I2C are in adc.py and i2c.py, loaded by firmware/sim/machine.py
only when the firmware first asks for them (heap).
"""
from firmware.sim import bus, energy, hwclock

try:
    import micropython
except ImportError:  # CPython: no heap lock, handlers run as soft IRQs
    micropython = None

# Pins made so far, by id: `fire` drives the newest Pin of an id, like a
# signal on the one physical pad that every Pin object of that id shares.
_pins = {}

# esp32.PCNT units (firmware/sim/ports/pcnt.py): told of every level change of a pin; and whether
# the chip's digital clocks are gated (an esp32 in light sleep), when they count nothing.
counters = []
gated = [False]

# Interrupt state: a `fire` while interrupts are disabled is held and
# delivered when they are enabled again, as a pending hardware IRQ would be.
_irq = {"enabled": True}
_held = []


class _Irq:
    """What Pin.irq() returns: the handler and trigger, and the last cause."""

    def __init__(self, handler, trigger, hard):
        self.handler = handler
        self._trigger = trigger
        self.hard = hard
        self._flags = 0

    def trigger(self, value=None):
        if value is not None:
            self._trigger = value
        return self._trigger

    def flags(self):
        return self._flags


class Pin:
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def __init__(self, id, mode=-1, pull=-1, value=None):
        self.id = id
        self._mode = Pin.IN
        self._pull = None
        self._out = 0
        old = _pins.get(id)
        # The pad's level as a model holds it: an older Pin's, or one driven before any Pin was made.
        self._level = old._level if old is not None else bus.driven(id)
        self._irq = None
        _pins[id] = self
        self.init(mode, pull, value)

    def init(self, mode=-1, pull=-1, value=None):
        if mode != -1:
            self._mode = mode
        if pull != -1:
            self._pull = pull
        if value is not None:
            self.value(value)

    def _input(self):
        model = bus.pin_model(self.id)
        if model is not None and hasattr(model, "level"):
            return 1 if model.level() else 0
        if self._level is not None:
            return self._level
        # A floating input reads what its pull resistor gives it.
        return 1 if self._pull == Pin.PULL_UP else 0

    def value(self, v=None):
        if v is None:
            if self._mode == Pin.OUT:
                return self._out
            return self._input()
        self._out = 1 if v else 0
        energy.pin(self.id, self._out, hwclock.now_us())  # a power group's enable, if it is one
        model = bus.pin_model(self.id)
        if model is not None and hasattr(model, "written"):
            model.written(self._out)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, hard=False):
        if handler is not None or self._irq is None:
            self._irq = _Irq(handler, trigger, hard)
        return self._irq

    def __repr__(self):
        return "Pin(%r)" % (self.id,)


def forget_pins():
    """A new boot: the Pins and held edges of the firmware that ran before are gone."""
    _pins.clear()
    del _held[:]
    del counters[:]
    _irq["enabled"] = True


def fire(pin_id, level):
    """Drive input pin `pin_id` to `level` and run its IRQ handler on a matching edge.

    A handler registered with hard=True runs under micropython.heap_lock(),
    so a handler that allocates raises MemoryError here as it would crash a
    board's hard IRQ. Returns True when a handler ran (or is held until
    interrupts are enabled again).
    """
    pin = _pins.get(pin_id)
    level = 1 if level else 0
    if pin is None:
        bus.drive(pin_id, level)
        return False
    before = pin._input()
    pin._level = level
    if before != level:
        for counter in counters:
            counter.edge(pin_id, level)
    if before == level or pin._irq is None or pin._irq.handler is None:
        return False
    edge = Pin.IRQ_RISING if level else Pin.IRQ_FALLING
    if not pin._irq._trigger & edge:
        return False
    pin._irq._flags = edge
    if not _irq["enabled"]:
        _held.append(pin)
        return True
    _run(pin)
    return True


def _run(pin):
    irq = pin._irq
    if irq.hard and micropython is not None:
        micropython.heap_lock()
        try:
            irq.handler(pin)
        finally:
            micropython.heap_unlock()
    else:
        irq.handler(pin)


def disable_irq():
    """Hold IRQs from `fire`; returns the state to give to enable_irq."""
    state = _irq["enabled"]
    _irq["enabled"] = False
    return state


def enable_irq(state=True):
    """Restore the IRQ state and deliver the edges held meanwhile, in order."""
    _irq["enabled"] = bool(state)
    while _irq["enabled"] and _held:
        _run(_held.pop(0))


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    """Length of the next pulse at `pulse_level` on `pin`, as machine.time_pulse_us.

    -2 when the pulse did not start within timeout_us, -1 when it did not end.
    The model on the pin answers (`pulse_us`); a pin with no model never pulses.
    """
    model = bus.pin_model(pin.id)
    if model is None or not hasattr(model, "pulse_us"):
        return -2
    return model.pulse_us(pulse_level, timeout_us)


def level(pin_id):
    """The level on pad pin_id now (0 when no Pin of it was made and nothing drives it)."""
    pin = _pins.get(pin_id)
    return pin._input() if pin is not None else (bus.driven(pin_id) or 0)


def made(pin_id):
    """The Pin of pad pin_id the running firmware made, or None."""
    return _pins.get(pin_id)
