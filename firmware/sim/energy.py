"""The hooks of the simulated board's energy bookkeeping (firmware/sim/energy_model.py).

Why a module of its own: the hooks sit in the simulated peripherals and
device models (sim/io.py, sim/uart.py, devices/), which the driver checks
load into a board-sized MicroPython heap (tests/test_drivers_sim.py); the
model and its currents' tables are loaded only by the runner that makes a
model (runner.py), so a check's heap holds a few functions, not the model.
"""
model = None  # the running board's Energy (energy_model.py; runner.py sets it), for the hooks


def charge(part, state, start_us, length_us):
    """A burst of `state` on `part`, if this board has that part (a hook's entry point)."""
    if model is not None and part in model.parts:
        model.burst(part, state, start_us, length_us)


def change(part, state, at_us):
    """`part` is in `state` from at_us, if this board has that part."""
    if model is not None and part in model.parts:
        model.set(part, state, at_us)


def pin(gpio, level, at_us):
    """A GPIO was driven: the power group on it, if any, is on or off from at_us."""
    if model is not None:
        model.pin(gpio, level, at_us)


