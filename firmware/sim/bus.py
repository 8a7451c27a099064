"""The simulated board's wiring: which model answers on which pin, ADC or bus.

The simulated `machine` module looks devices up here, and a scenario sets
the physical world that the models read (`world`), so that the real drivers
and the real firmware run unchanged on the MicroPython unix port.

Contract for device models (firmware/sim/devices/):
- I2C: `i2c_attach(bus_id, addr, model)`; `model.write(data)` receives the
  bytes of a write (a memory write is the register byte then the data) and
  `model.read(n)` answers a read of n bytes (a memory read is a one-byte
  write of the register, then a read). A missing or failed device makes the
  bus raise OSError(19) (ENODEV) like a real board.
- ADC: `adc_attach(pin_id, source)`; `source()` gives the volts on the pin.
- Pins: `pin_attach(pin_id, model)`; `model.level()` is what the firmware
  reads, `model.written(level)` sees what it drives, and for echo pins
  `model.pulse_us(level, timeout_us)` answers `machine.time_pulse_us`.
- 1-Wire: `onewire_attach(pin_id, devices)`; the simulated `onewire`
  module talks to those device models.
- UART: `uart_attach(uart_id, peer)`; peer has `write(data)` (bytes from
  the board) and `read(n)` (bytes to the board, or None).
- Power: a model on a switched rail (the site's `power` groups) has `rail`
  set (`Rail`, attached to the group's pin) and answers only while the rail
  is on and its own STARTUP_US (from its datasheet) has passed since power
  came up: until then `dead(model)` is True, as for a failed sensor. A model
  with `power_up()` is put back in its power-on state when the rail comes up;
  one with `powered(on)` is told each switch (the rain gauge's pull-up).
A model whose name is in `faults` behaves as a dead sensor.
"""
from firmware.sim import hwclock

world = {}
faults = set()

_i2c = {}
_adc = {}
_pins = {}
_onewire = {}
_uart = {}
_driven = {}  # pin id -> the level a model drove it to before any Pin of it was made (io.fire)
edge_us = [None]  # the scenario time of the edge a model is firing now (rain.py), for hard IRQs
rail_log = [None]  # scenario.emit in the simulated board's hardware process: a "rail" event per switch


class Rail:
    """A supply switched by a GPIO (a MOSFET or a load switch): on while the pin is at `on`.
    Off at power-on and at every reset, as a GPIO is an input then and the switch's gate
    pull keeps it off."""

    def __init__(self, pin_id, on):
        self.pin_id = pin_id
        self.on = on
        self.powered = False
        self.since_us = 0  # scenario us when it last came up
        self.off_us = 0  # and when it last went off
        self.models = []
        self.ups = 0

    def attach(self, model):
        model.rail = self
        self.models.append(model)

    def written(self, level):
        powered = (1 if level else 0) == self.on
        if powered == self.powered:
            return
        self.powered = powered
        now = hwclock.now_us()
        if powered:
            self.since_us = now
            self.ups += 1
        else:
            self.off_us = now
        if rail_log[0] is not None:
            rail_log[0]("rail", now / 1000000, "pin", self.pin_id, "on", powered)
        for model in self.models:
            if powered and hasattr(model, "power_up"):
                model.power_up()
            if hasattr(model, "powered"):
                model.powered(powered)

    def ready(self, startup_us):
        return self.powered and hwclock.now_us() - self.since_us >= startup_us


def reset():
    """Forget all wiring and state, as at power-on of a new simulated board."""
    world.clear()
    faults.clear()
    for table in (_i2c, _adc, _pins, _onewire, _uart, _driven):
        table.clear()


def i2c_attach(bus_id, addr, model):
    _i2c[(bus_id, addr)] = model


def i2c_device(bus_id, addr):
    return _i2c.get((bus_id, addr))


def i2c_scan(bus_id):
    return sorted(addr for (bus, addr) in _i2c if bus == bus_id)


def adc_attach(pin_id, source):
    _adc[pin_id] = source


def adc_source(pin_id):
    return _adc.get(pin_id)


def pin_attach(pin_id, model):
    _pins[pin_id] = model


def pin_model(pin_id):
    return _pins.get(pin_id)


def onewire_attach(pin_id, devices):
    _onewire[pin_id] = devices


def onewire_devices(pin_id):
    return _onewire.get(pin_id, ())


def uart_attach(uart_id, peer):
    _uart[uart_id] = peer


def uart_peer(uart_id):
    return _uart.get(uart_id)


def drive(pin_id, level):
    _driven[pin_id] = level


def driven(pin_id):
    """The level a model holds the pin at, None when none has driven it (its pull decides)."""
    return _driven.get(pin_id)


def dead(model):
    """True when the scenario has failed this model's sensor, or its rail is off or
    has not been on for the part's start-up time."""
    if getattr(model, "name", None) in faults:
        return True
    rail = getattr(model, "rail", None)
    return rail is not None and not rail.ready(getattr(model, "STARTUP_US", 0))
