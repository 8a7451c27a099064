"""The simulated `machine` module of the firmware's process (installed as sys.modules["machine"]).

Thin proxies: every Pin, ADC, I2C, SoftI2C and UART is a firmware/sim/rpc.py
Remote whose object (firmware/sim/io.py, adc.py, i2c.py, uart.py) and device
model live in the hardware process, as a board's peripherals are silicon and
not heap. Kept here: what must run in the firmware's own process, the pin
IRQ handlers (run as hard IRQs, under micropython.heap_lock(), when an edge
comes back from the hardware at a sleep), irq masking, the watchdog and sleep
on the virtual clock (vtime.py), and the reset causes. RTC memory and the
RP2 watchdog scratch registers (mem32) are kept by the hardware process,
so they outlive this one at a reset.
"""
import sys

import micropython

from firmware.sim import board, rpc, vtime

PWRON_RESET = board.PWRON_RESET
HARD_RESET = board.HARD_RESET
WDT_RESET = board.WDT_RESET
DEEPSLEEP_RESET = board.DEEPSLEEP_RESET
SOFT_RESET = board.SOFT_RESET

_irq_pins = {}  # handle -> Pin with a handler: where the hardware's edges go
_irq = [True]  # interrupts enabled
_held = []  # edges that came while interrupts were disabled, in order


class _Irq:
    """What Pin.irq() returns: the handler and trigger, and the last cause."""

    def __init__(self, handler, trigger, hard):
        self.handler = handler
        self._trigger = trigger
        self.hard = hard
        self._flags = 0

    def trigger(self):
        return self._trigger

    def flags(self):
        return self._flags


class Pin(rpc.Remote):
    KIND = "Pin"
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2
    IRQ_FALLING = 4
    IRQ_RISING = 8

    def value(self, v=None):
        if v is None:
            return rpc.call("call", self._h, "value", ())
        rpc.call("call", self._h, "value", (v,))
        return None

    def __call__(self, v=None):
        return self.value(v)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, hard=False):
        irq = _Irq(handler, trigger, hard)
        self._irq = irq
        _irq_pins[self._h] = self
        rpc.call("irq", self._h, trigger)
        return irq


class ADC(rpc.Remote):
    KIND = "ADC"
    ATTN_0DB = 0
    ATTN_2_5DB = 1
    ATTN_6DB = 2
    ATTN_11DB = 3
    WIDTH_9BIT = 9
    WIDTH_10BIT = 10
    WIDTH_11BIT = 11
    WIDTH_12BIT = 12


class I2C(rpc.Remote):
    KIND = "I2C"


class SoftI2C(rpc.Remote):
    KIND = "SoftI2C"


class UART(rpc.Remote):
    KIND = "UART"


def time_pulse_us(pin, pulse_level, timeout_us=1000000):
    return rpc.call("pulse", pin._h, pulse_level, timeout_us)


def deliver(edges):
    """Run the handlers of the edges the hardware saw, [handle, flags] each; True when one ran."""
    ran = False
    for h, flags in edges:
        pin = _irq_pins.get(h)
        if pin is not None and pin._irq.handler is not None:
            pin._irq._flags = flags
            if _irq[0]:
                _run(pin)
            else:
                _held.append(pin)
            ran = True
    return ran


def _run(pin):
    irq = pin._irq
    if irq.hard:
        # A hard IRQ must not allocate: here an allocation raises MemoryError.
        micropython.heap_lock()
        try:
            irq.handler(pin)
        finally:
            micropython.heap_unlock()
    else:
        irq.handler(pin)


def disable_irq():
    state = _irq[0]
    _irq[0] = False
    return state


def enable_irq(state=True):
    """Restore the IRQ state and run the handlers of the edges held meanwhile."""
    _irq[0] = bool(state)
    while _irq[0] and _held:
        _run(_held.pop(0))


class RTC:
    def __init__(self, id=0):
        pass

    def memory(self, data=None):
        return rpc.call("rtc", data)


class _Mem32:
    """machine.mem32 for the few registers the firmware touches: the watchdog scratch words."""

    def __getitem__(self, addr):
        return rpc.call("mem32", addr)

    def __setitem__(self, addr, value):
        rpc.call("mem32", addr, value & 0xFFFFFFFF)


mem32 = _Mem32()


class WDT:
    """Once started it cannot be stopped; a feed missed for `timeout` ms resets the board."""

    def __init__(self, id=0, timeout=5000):
        vtime.clock.wdt_start(timeout)

    def feed(self):
        vtime.clock.wdt_feed()


def reset():
    raise board.Reset(HARD_RESET)


def soft_reset():
    raise board.Reset(SOFT_RESET)


def reset_cause():
    return board.state["cause"]


def lightsleep(ms=None):
    vtime.clock.idle((ms if ms is not None else 1000) * 1000, True)
    net = sys.modules.get("firmware.sim.network")
    if net is not None:
        net.slept()  # esp32 loses Wi-Fi in light sleep (deep sleep is a reset: all is lost)


def deepsleep(ms=None):
    vtime.clock.wdt_timeout_us = 0  # the chip is off: no watchdog runs until the wake's reset
    vtime.clock.idle((ms if ms is not None else 1000) * 1000, False)
    raise board.Reset(DEEPSLEEP_RESET)


def idle():
    vtime.clock.idle(1000, True)

