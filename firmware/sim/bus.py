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
A model whose name is in `faults` behaves as a dead sensor.
"""

world = {}
faults = set()

_i2c = {}
_adc = {}
_pins = {}
_onewire = {}
_uart = {}


def reset():
    """Forget all wiring and state, as at power-on of a new simulated board."""
    world.clear()
    faults.clear()
    for table in (_i2c, _adc, _pins, _onewire, _uart):
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


def dead(model):
    """True when the scenario has failed this model's sensor."""
    return getattr(model, "name", None) in faults
