"""The rp2 port (RP2040: pico, pico_w; RP2350: pico2_w), read from micropython/micropython.

Checked at v1.22.0, v1.24.1, v1.25.0, v1.26.1, v1.27.0 and v1.28.0 (and
master of 2026-08 where it differs); every rule names its source file.
"""

NAME = "rp2"
CHIP = {"pico": "rp2040", "pico_w": "rp2040", "pico2_w": "rp2350"}

# Keyword arguments each constructor or method takes (the allowed_args
# tables), identical from v1.22.0 to v1.28.0:
ARGS = {
    # ports/rp2/machine_pin.c machine_pin_obj_init_helper: mode, pull, value, alt
    "Pin": ("mode", "pull", "value", "alt"),
    # ports/rp2/machine_pin.c machine_pin_irq: handler, trigger, hard
    "irq": ("handler", "trigger", "hard"),
    # ports/rp2/machine_i2c.c machine_i2c_make_new: id, freq, scl, sda, timeout
    "I2C": ("id", "freq", "scl", "sda", "timeout"),
    # ports/rp2/machine_uart.c mp_machine_uart_init_helper
    "UART": ("baudrate", "bits", "parity", "stop", "tx", "rx", "cts", "rts", "timeout", "timeout_char",
             "invert", "flow", "txbuf", "rxbuf"),
    # extmod/machine_wdt.c machine_wdt_make_new: id, timeout
    "WDT": ("id", "timeout"),
}

# GPIOs Pin(id) finds (ports/rp2/machine_pin.c machine_pin_find, else ValueError "invalid pin"):
# GPIO0-29 on the RP2040 and on the Pico 2 W's RP2350A (30 GPIOs).
GPIOS = {"rp2040": range(30), "rp2350": range(30)}

# I2C(id) without scl/sda: the board's PICO_DEFAULT_I2C pins (pico-sdk boards/pico.h,
# pico_w.h, pico2_w.h: SDA 4, SCL 5 on I2C0; ports/rp2/machine_i2c.c uses them for I2C0
# and MICROPY_HW_I2C1_SCL/SDA 7/6 for I2C1), as (scl, sda).
I2C_DEFAULT = {0: (5, 4), 1: (7, 6)}
# UART(id) without tx/rx (ports/rp2/machine_uart.c MICROPY_HW_UART0_TX/RX, UART1), as (tx, rx).
UART_DEFAULT = {0: (0, 1), 1: (4, 5)}

# Pins the Pico W / Pico 2 W's CYW43439 holds (ports/rp2/boards/RPI_PICO_W/mpconfigboard.h,
# CYW43_PIN_WL_REG_ON 23, CYW43_PIN_WL_DATA_OUT 24, CYW43_PIN_WL_CS 25, CYW43_PIN_WL_CLOCK 29):
# driving them kills the radio.
_CYW43 = {23: "the CYW43 power", 24: "the CYW43 data line", 25: "the CYW43 chip select",
          29: "the CYW43 clock (and VSYS/3)"}
RESERVED = {"pico_w": _CYW43, "pico2_w": _CYW43}

# ports/rp2/main.c starts the RTC (aon_timer) at 2021-01-01 00:00:00 at every boot, and
# mpconfigport.h has MICROPY_EPOCH_IS_1970: time.time() after any reset is this plus uptime.
RTC_AT_BOOT = 1609459200
RTC_SURVIVES_RESET = False

# time.time() epoch offset: 1970 (mpconfigport.h MICROPY_EPOCH_IS_1970).
EPOCH = 0

# A flash erase or program runs with interrupts off (ports/rp2/rp2_flash.c: v1.22.0 in
# MICROPY_BEGIN_ATOMIC_SECTION, v1.23.0-v1.28.0 begin_critical_flash_section's
# save_and_disable_interrupts; XIP is off meanwhile, so no handler could run from flash
# anyway): the UART's IRQ handler (ports/rp2/machine_uart.c) cannot empty the PL011's RX
# FIFO, 32 entries (RP2040 datasheet 4.2, RP2350 datasheet 12.1), and bytes beyond it are lost.
FLASH_RX_FIFO = 32
# Interrupts come back after each erase or program (rp2_flash.c end_critical_flash_section /
# MICROPY_END_ATOMIC_SECTION, v1.22.0-v1.28.0): a hard pin IRQ held through a step runs as it
# ends, between the steps of one littlefs commit (firmware/sim/hardware.py flash_step).
PIN_IRQ_AFTER_FLASH_STEP = True

# The fix of micropython #17228/#17229 (PR #17546, commit 434b9daf33 "rp2/modmachine:
# Fix lightsleep watchdog interactions", merged 2026-06-12) is in no release up to
# v1.28.0: the first release to carry it is v1.29.0.
_LIGHTSLEEP_WDT_FIXED = (1, 29, 0)


def wdt_max_ms(chip, version):
    """ports/rp2/machine_wdt.c WDT_TIMEOUT_MAX: 8388 ms on every release to v1.28.0, for
    RP2350 too; master (after v1.28.0) allows 16777 on RP2350 (1 tick per us)."""
    if chip == "rp2350" and version >= (1, 29, 0):
        return 16777
    return 8388


def wdt_in_lightsleep(chip, version):
    """What the watchdog does during machine.lightsleep (ports/rp2/modmachine.c):
    "counts" (it resets the board when it fires), "hangs" (RP2040 before the fix:
    the watchdog fires, the power-on state machine does not restart the ROSC that
    lightsleep stopped, and the chip locks up until power is cycled, #17228), or
    "paused" (RP2350 before the fix: lightsleep clears CLK_SYS_WATCHDOG from
    SLEEP_EN1, so the watchdog does not count while asleep, #17229)."""
    if version >= _LIGHTSLEEP_WDT_FIXED:
        return "counts"
    return "hangs" if chip == "rp2040" else "paused"


def pin_options(chip, pin, mode, kwargs):
    """Pin's keyword-only `alt` (ports/rp2/machine_pin.c allowed_args, MP_ARG_INT, v1.22.0-v1.28.0):
    an int, else mp_arg_parse_all's TypeError. It selects a function only in mode ALT, which the
    simulator does not model (no peripheral there takes over the pad)."""
    alt = kwargs.get("alt")
    if alt is not None and not isinstance(alt, int):
        raise TypeError("can't convert %s to int" % type(alt).__name__)


def wdt_timeout(timeout, maximum):
    """ports/rp2/machine_wdt.c takes the timeout as a uint32_t: a negative one is huge."""
    if timeout < 0 or timeout > maximum:
        raise ValueError("timeout exceeds %d" % maximum)


def pcnt_unit(chip, version, args):
    raise AttributeError("PCNT")  # an esp32 peripheral


def adc_pin(chip, pin):
    """ADC(Pin): GPIO26-29 only (ports/rp2/machine_adc.c ADC_IS_VALID_GPIO, ADC_BASE_PIN 26,
    v1.22.0-v1.28.0); ADC(0..4) is a channel."""
    if not 26 <= pin <= 29:
        raise ValueError("Pin doesn't have ADC capabilities")


def bus_pins(chip, kind, bus, pins):
    """The pins an I2C or UART peripheral can reach, checked when given (v1.22.0-v1.28.0):
    ports/rp2/machine_i2c.c IS_VALID_SCL/SDA (SCL odd, SDA even, bit 1 the bus: "bad SCL pin");
    machine_uart.c IS_VALID_PERIPH/TX/RX (bit 3 of pin + 4 the UART; TX pin % 4 == 0, RX 1 on
    the RP2040; on the RP2350 (v1.25.0 on) any even pin TX, odd RX, its UART_AUX function)."""
    first, second = pins
    if kind == "I2C":
        checks = ((first, 1, "bad SCL pin"), (second, 0, "bad SDA pin"))
        for pin, odd, error in checks:
            if pin is not None and not (pin & 1 == odd and (pin & 2) >> 1 == bus):
                raise ValueError(error)
        return
    mask = 1 if chip == "rp2350" else 3
    for pin, low, error in ((first, 0, "bad TX pin"), (second, 1, "bad RX pin")):
        if pin is not None and not (pin & mask == low and ((pin + 4) & 8) >> 3 == bus):
            raise ValueError(error)
