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

Strict: the hardware process checks every constructor and Pin.irq against
the board's port (keywords, module pins, bus wiring: firmware/sim/ports/),
and here sleep and the watchdog behave as that port's do on the MicroPython
release the board runs. mcu.py sets `port` from the hardware's hello before
the firmware's first import; the rules themselves stay in the hardware
process, so they cost the board's heap nothing.
"""
import sys

import micropython

from firmware.sim import board, rpc, vtime

# From the hardware's hello: "name" (rp2, esp32) and "wdt_sleep" (what the watchdog
# does in lightsleep: counts, hangs, paused).
port = {}
_sleep = [None]  # None awake, else "light" or "deep": what an edge can do now
_wake = [0]  # esp32 machine.wake_reason(): the source of the last wake
# esp32 wake sources (ports/esp32/modesp32.c, machine_pin.c, modmachine.c machine_sleep_helper,
# v1.22.0-v1.28.0): ext0 is one RTC GPIO at a level, for the sleeps in its mask (SLEEP 2,
# DEEPSLEEP 4: esp32.wake_on_ext0 sets both, Pin.irq(wake=) those it names); ext1 is a set of
# RTC GPIOs for every sleep, level True "any high", False "all low" on the ESP32 and "any low"
# on the ESP32-S3 (ESP-IDF esp_sleep.h esp_sleep_ext1_wakeup_mode_t: ALL_LOW is ESP32 only).
ext0 = [None, 0, 6]  # the Pin's handle (None: off), level, sleep mask
ext1 = [[], False]  # the Pins' handles, level
gpio = [[], False]  # esp32.wake_on_gpio (v1.27.0 on): the Pins' handles, level; light sleep only
wake_touch = [False]  # esp32.wake_on_touch: refuses ext0 ("no resources"); no pad is ever touched here
SLEEP_KINDS = {"light": 2, "deep": 4}  # machine.SLEEP, machine.DEEPSLEEP (modmachine.h MACHINE_WAKE_*)

# Both ports have these two (rp2's modmachine.c has no other reset or wake constant); the esp32
# ones are set at the end of this module.
PWRON_RESET = board.PWRON_RESET
WDT_RESET = board.WDT_RESET
# esp32 machine.wake_reason() values (ports/esp32/modmachine.c; ESP-IDF esp_sleep_source_t).
_EXT0_WAKE = 2
_EXT1_WAKE = 3
_TIMER_WAKE = 4
_GPIO_WAKE = 7  # ESP_SLEEP_WAKEUP_GPIO
# esp32 Pin.WAKE_LOW/WAKE_HIGH (GPIO_INTR_LOW_LEVEL/HIGH_LEVEL there): the triggers with which
# Pin.irq(wake=) makes the pin the ext0 source. Values of the simulator's own, apart from
# IRQ_FALLING/IRQ_RISING; the rp2 Pin has neither (ports/rp2/machine_pin.c locals, v1.22.0-v1.28.0).
_WAKE_LOW = 16
_WAKE_HIGH = 32

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
    _irq = None  # what irq() set up
    _level = None  # the pin's level while its hard IRQ handler runs (_run)


    def value(self, v=None):
        if v is None:
            if self._level is not None:
                return self._level
            return rpc.call("call", self._h, "value", ())
        rpc.call("call", self._h, "value", (v,))
        return None

    def __call__(self, v=None):
        return self.value(v)

    def irq(self, handler=None, trigger=IRQ_FALLING | IRQ_RISING, **kwargs):
        wake = kwargs.get("wake")
        if wake is not None and trigger in (_WAKE_LOW, _WAKE_HIGH):
            return self._wake_irq(trigger, wake, kwargs)
        rpc.call("irq", self._h, trigger, kwargs)  # the port's keywords, checked there
        if ext0[0] == self._h:
            # A plain irq() on the ext0 pin drops the ext0 wake (ports/esp32/machine_pin.c
            # machine_pin_irq, v1.22.0-v1.28.0): set esp32.wake_on_ext0 after Pin.irq.
            ext0[0] = None
        # rp2: `hard` runs the handler in the interrupt; esp32 has only scheduled handlers.
        irq = _Irq(handler, trigger, kwargs.get("hard", False))
        self._irq = irq
        _irq_pins[self._h] = self
        return irq

    def _wake_irq(self, trigger, wake, kwargs):
        """esp32 Pin.irq(trigger=WAKE_LOW|WAKE_HIGH, wake=SLEEP|DEEPSLEEP): the pin becomes the
        ext0 source for those sleeps, and no handler is installed (ports/esp32/machine_pin.c
        machine_pin_irq). With an edge trigger `wake` is ignored there (the plain irq above)."""
        # The port's keywords, and the hardware reports this pin's edges to end a sleep.
        rpc.call("irq", self._h, Pin.IRQ_FALLING | Pin.IRQ_RISING, kwargs)
        if not isinstance(wake, int) or not 2 <= wake <= 7:
            raise ValueError("bad wake value")
        if wake_touch[0]:
            raise ValueError("no resources")
        try:
            rpc.call("ext0", self._h)
        except ValueError:
            raise ValueError("invalid pin for wake")
        if ext0[0] is not None and ext0[0] != self._h:
            raise ValueError("no resources")
        ext0[0] = self._h
        ext0[1] = 1 if trigger == _WAKE_HIGH else 0
        ext0[2] = wake
        self._irq = _Irq(None, trigger, False)
        _irq_pins[self._h] = self
        return self._irq


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
    """Run the handlers of the edges the hardware saw, [handle, flags, scenario us, pin level
    after the edge] each; True when one ran."""
    ran = False
    for h, flags, at_us, level in edges:
        pin = _irq_pins.get(h)
        if _sleep[0] is not None and port["name"] == "esp32":
            # An esp32 asleep runs no pin IRQ; an edge wakes it only on a configured source
            # (ports/esp32/modmachine.c machine_sleep_helper), and its IRQ is not delivered.
            if _ext0_armed(_sleep[0]) and ext0[0] == h and (flags == Pin.IRQ_RISING) == bool(ext0[1]):
                _wake[0] = _EXT0_WAKE
                ran = True
            elif h in ext1[0] and _ext1_met():
                _wake[0] = _EXT1_WAKE
                ran = True
            elif h in gpio[0] and _sleep[0] == "light" and (flags == Pin.IRQ_RISING) == gpio[1]:
                _wake[0] = _GPIO_WAKE
                ran = True
            continue
        if pin is not None and pin._irq is not None and pin._irq.handler is not None:
            pin._irq._flags = flags
            if _irq[0]:
                _run(pin, at_us, level)
            else:
                _held.append(pin)
            ran = True
    return ran


def _run(pin, at_us=None, level=None):
    irq = pin._irq
    if irq.hard:
        # A hard IRQ runs at its edge, even while the CPU is busy (rp2: waiting on a socket,
        # where this process hears of the edge only at its next sleep): its handler reads the
        # edge's time from the clock, and the pin's level then (the hardware's, with the edge),
        # as a debounce on a board does. Then the clock goes on. Reading its pin allocates
        # nothing on a board; here it is a request, whose reply would move the clock on to the
        # hardware's present (rpc.py): so a held edge's level is read before the clock goes back.
        pin._level = pin.value() if level is None else level
        clock = vtime.clock
        clock.advance()
        early = clock.v_us - at_us if at_us is not None and at_us < clock.v_us else 0
        clock.v_us -= early
        # A hard IRQ must not allocate: here an allocation raises MemoryError.
        micropython.heap_lock()
        try:
            irq.handler(pin)
        finally:
            micropython.heap_unlock()
            pin._level = None
            clock.advance()
            clock.v_us += early
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

    def __getattr__(self, name):
        # RTC.memory() is esp32's (ports/esp32/machine_rtc.c, MICROPY_HW_RTC_USER_MEM_MAX 2048 B,
        # v1.22.0-v1.28.0); the rp2 RTC has datetime() alone (ports/rp2/machine_rtc.c).
        if name == "memory" and port.get("name") == "esp32":
            return self._memory
        raise AttributeError(name)

    def _memory(self, data=None):
        if data is not None and len(data) > 2048:
            raise ValueError("buffer too long")
        return rpc.call("rtc", data)


class _Mem32:
    """machine.mem32 for the few registers the firmware touches: the watchdog scratch words."""

    def __getitem__(self, addr):
        return rpc.call("mem32", addr)

    def __setitem__(self, addr, value):
        rpc.call("mem32", addr, value & 0xFFFFFFFF)


mem32 = _Mem32()


class WDT:
    """Once started it cannot be stopped; a feed missed for `timeout` ms resets the board.
    The hardware process refuses a timeout above the port's maximum (ports/rp2/machine_wdt.c)."""

    def __init__(self, id=0, timeout=5000):
        rpc.call("wdt", id, timeout)
        vtime.clock.wdt_start(timeout)

    def feed(self):
        vtime.clock.wdt_feed()


def reset():
    raise board.Reset(board.HARD_RESET)


def soft_reset():
    raise board.Reset(board.SOFT_RESET)


def reset_cause():
    cause = board.state["cause"]
    if port.get("name") == "rp2" and cause != PWRON_RESET:
        # ports/rp2/modmachine.c: WDT_RESET when watchdog_caused_reboot(), else PWRON_RESET; its
        # machine.reset() is watchdog_reboot(), which sets the watchdog's reason bits (pico-sdk
        # hardware_watchdog), so a deliberate reset (and deepsleep's) reads as WDT_RESET too.
        return WDT_RESET
    return cause


def _wake_reason():
    """esp32 only (ports/esp32/modmachine.c): machine.wake_reason at the end of this module."""
    return _wake[0]


def __getattr__(name):
    # machine.SLEEP and DEEPSLEEP, Pin.irq's wake= masks: esp32 only (rp2's modmachine.c has none).
    if name in ("SLEEP", "DEEPSLEEP") and port.get("name") == "esp32":
        return SLEEP_KINDS["light" if name == "SLEEP" else "deep"]
    raise AttributeError(name)


def _ext0_armed(how):
    return ext0[0] is not None and ext0[2] & SLEEP_KINDS[how]


def _ext1_met():
    """Whether the ext1 pins are at their wake level now (it is level-triggered)."""
    levels = [rpc.call("call", h, "value", ()) for h in ext1[0]]
    if ext1[1]:
        return 1 in levels
    if port.get("chip") == "esp32":
        return 1 not in levels  # ESP_EXT1_WAKEUP_ALL_LOW
    return 0 in levels  # ESP_EXT1_WAKEUP_ANY_LOW


def lightsleep(ms=None):
    _asleep("light", ms)
    net = sys.modules.get("firmware.sim.network")
    if net is not None:
        net.slept()  # esp32 loses Wi-Fi in light sleep (deep sleep is a reset: all is lost)


def deepsleep(ms=None):
    """esp32: a reset that keeps only RTC memory, its wake reason told to the next boot;
    rp2: lightsleep, then reset (ports/rp2/modmachine.c mp_machine_deepsleep)."""
    if port["name"] != "rp2":
        if gpio[0]:  # ports/esp32/modmachine.c v1.27.0-v1.28.0: !SOC_GPIO_SUPPORT_DEEPSLEEP_WAKEUP
            raise ValueError("DEEPSLEEP with gpio pins not supported on this chip")
        vtime.clock.wdt_timeout_us = 0  # the chip is off: no watchdog runs until the wake's reset
    _asleep("deep", ms)
    if port["name"] == "rp2":
        raise board.Reset(board.HARD_RESET)
    rpc.call("wake", _wake[0])
    raise board.Reset(board.DEEPSLEEP_RESET)


def _asleep(how, ms):
    """A sleep as the port has it. The hardware process decides from the port's rules
    (firmware/sim/ports sleep()): a hang, a busy delay, an at-once wake or a sleep; here
    the watchdog does in light sleep what the release makes it do (wdt_in_lightsleep)."""
    armed = [ext0[0], ext0[1]] if _ext0_armed(how) else [None, 0]
    if ext1[0]:
        if _ext1_met():  # level-triggered: a pin already at its level wakes the chip at once
            _wake[0] = _EXT1_WAKE
            return
        if ms is None and armed[0] is None:
            ms = 1 << 30  # as the port rules sleep "forever" with an ext0 source
    if gpio[0] and how == "light":
        levels = [rpc.call("call", h, "value", ()) for h in gpio[0]]
        if (1 if gpio[1] else 0) in levels:  # gpio_wakeup_enable is level-triggered too
            _wake[0] = _GPIO_WAKE
            return
        if ms is None and armed[0] is None:
            ms = 1 << 30
    action, value = rpc.call("sleep", how, ms, armed)
    if action == "hang":
        raise board.Hang(value)
    if action == "busy":
        vtime.sleep_us(value)
        return
    if action == "woke":
        _wake[0] = value
        return
    _wake[0] = _TIMER_WAKE  # unless an edge says otherwise
    clock = vtime.clock
    clock.advance()
    wdt = port["wdt_sleep"]  # rp2's deepsleep is a lightsleep; esp32's watchdog counts
    timeout = clock.wdt_timeout_us
    _sleep[0] = how
    try:
        if not timeout or wdt == "counts":
            clock.idle(value, True, how)
            return
        start = clock.v_us
        deadline = clock.wdt_fed_us + timeout
        clock.wdt_timeout_us = 0  # decided here, not by the clock
        if wdt == "hangs" and deadline < start + value:
            clock.idle(max(deadline - start, 0), True, how)
            if clock.v_us >= deadline:
                raise board.Hang("rp2040_wdt")  # micropython #17228: locked up
        else:
            clock.idle(value, True, how)
            if wdt == "paused":
                deadline += clock.v_us - start  # micropython #17229: it did not count
        clock.wdt_fed_us = deadline - timeout
        clock.wdt_timeout_us = timeout
    finally:
        _sleep[0] = None


def idle():
    vtime.clock.idle(1000, True)


if board.state.get("port") == "esp32":
    # What only the esp32 port has (ports/esp32/modmachine.c and machine_pin.c, v1.22.0-v1.28.0):
    # on rp2 these are AttributeErrors, as on the board.
    HARD_RESET = board.HARD_RESET
    DEEPSLEEP_RESET = board.DEEPSLEEP_RESET
    SOFT_RESET = board.SOFT_RESET
    PIN_WAKE = EXT0_WAKE = _EXT0_WAKE
    EXT1_WAKE = _EXT1_WAKE
    TIMER_WAKE = _TIMER_WAKE
    TOUCHPAD_WAKE = 5
    ULP_WAKE = 6
    wake_reason = _wake_reason
    Pin.WAKE_LOW = _WAKE_LOW
    Pin.WAKE_HIGH = _WAKE_HIGH
    Pin.DRIVE_0 = 0
    Pin.DRIVE_1 = 1
    Pin.DRIVE_2 = 2
    Pin.DRIVE_3 = 3
