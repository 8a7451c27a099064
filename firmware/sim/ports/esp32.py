"""The esp32 port (esp32: ESP32-WROOM-32/WROVER; esp32s3: ESP32-S3), read from micropython/micropython.

Checked at v1.22.0, v1.24.1, v1.25.0, v1.26.0, v1.26.1, v1.27.0 and v1.28.0 (and master of 2026-08
where it differs); every rule names its source file and the release a rule starts at.
"""

NAME = "esp32"
CHIP = {"esp32": "esp32", "esp32s3": "esp32s3"}

ARGS = {
    # ports/esp32/machine_pin.c machine_pin_obj_init_helper: mode, pull, value, drive, hold
    "Pin": ("mode", "pull", "value", "drive", "hold"),
    # ports/esp32/machine_pin.c machine_pin_irq: handler, trigger, wake (no `hard`: pin
    # IRQs are always scheduled, soft)
    "irq": ("handler", "trigger", "wake"),
    # ports/esp32/machine_i2c.c machine_hw_i2c_make_new: id, scl, sda, freq, timeout
    "I2C": ("id", "scl", "sda", "freq", "timeout"),
    # ports/esp32/machine_uart.c mp_machine_uart_init_helper
    "UART": ("baudrate", "bits", "parity", "stop", "tx", "rx", "rts", "cts", "txbuf", "rxbuf", "timeout",
             "timeout_char", "invert", "flow"),
    # extmod/machine_wdt.c machine_wdt_make_new: id, timeout
    "WDT": ("id", "timeout"),
    # ports/esp32/modesp32.c esp32_wake_on_ext0: pin, level
    "wake_on_ext0": ("pin", "level"),
}

# I2C(id) without scl/sda (ports/esp32/machine_i2c.h MICROPY_HW_I2C0_SCL/SDA and I2C1):
# esp32 I2C0 SCL 18 / SDA 19, I2C1 25/26; esp32s3 9/8 for both. As (scl, sda).
# UART(id) without tx/rx (ports/esp32/machine_uart.c mp_machine_uart_make_new): UART1 rx 9 /
# tx 10 (the WROOM-32's flash pins), UART2 rx 16 / tx 17. As (tx, rx).
UART_DEFAULT = {1: (10, 9), 2: (17, 16)}
I2C_DEFAULT = {"esp32": {0: (18, 19), 1: (25, 26)}, "esp32s3": {0: (9, 8), 1: (9, 8)}}

# Module pins: the ESP32-WROOM-32's SPI flash on GPIO6-11; PSRAM on GPIO16/17 on WROVER
# modules (the ESP32_GENERIC firmware runs on both, so a board file must keep off both).
# ESP32-S3 modules: SPI flash/PSRAM on GPIO26-32, USB on GPIO19/20.
_FLASH = "the module's SPI flash"
RESERVED = {
    "esp32": {6: _FLASH, 7: _FLASH, 8: _FLASH, 9: _FLASH, 10: _FLASH, 11: _FLASH,
              16: "PSRAM on WROVER modules", 17: "PSRAM on WROVER modules"},
    "esp32s3": {26: _FLASH, 27: _FLASH, 28: _FLASH, 29: _FLASH, 30: _FLASH, 31: _FLASH, 32: _FLASH,
                19: "USB D-", 20: "USB D+"},
}

# GPIOs Pin(id) finds (ports/esp32/machine_pin.h MICROPY_HW_ENABLE_GPIOn, machine_pin.c
# machine_pin_find, else ValueError "invalid pin"; v1.22.0-v1.28.0): ESP32 0-23, 25-27, 32-39;
# ESP32-S3 0-21, 26, 33-48 (ESP32_GENERIC_S3, no octal PSRAM).
GPIOS = {"esp32": tuple(range(24)) + (25, 26, 27) + tuple(range(32, 40)),
         "esp32s3": tuple(range(22)) + (26,) + tuple(range(33, 49))}
# ESP32 GPIO34-39 are inputs only: Pin(id, Pin.OUT or OPEN_DRAIN) there raises ValueError
# "pin can only be input" (machine_pin.c GPIO_FIRST_NON_OUTPUT 34, CONFIG_IDF_TARGET_ESP32 only).
FIRST_INPUT_ONLY = {"esp32": 34}
_OUTPUT_MODES = (1, 2)  # the simulator's Pin.OUT, Pin.OPEN_DRAIN

# RTC GPIOs, the only pins ext0/ext1 can wake on (RTC_IS_VALID_EXT_PIN, ports/esp32/modesp32.h).
RTC_PINS = {"esp32": (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39),
            "esp32s3": tuple(range(22))}

# The RTC keeps counting through deep sleep and every reset but power-on (ESP-IDF keeps the
# boot time in RTC memory); at power-on time.time() starts from 0 in the 2000 epoch
# (py/mpconfig.h default MICROPY_EPOCH_IS_2000; ports/esp32 does not set 1970).
RTC_AT_BOOT = 0
RTC_SURVIVES_RESET = True
EPOCH = 946684800  # 2000-01-01 in the 1970 epoch

# A flash erase or program (esp_flash, the cache disabled) loses no UART byte: MicroPython's
# sdkconfig.base sets CONFIG_UART_ISR_IN_IRAM=y (ports/esp32/boards/sdkconfig.base v1.22.0-
# v1.28.0), with which ESP-IDF's uart_driver_install adds ESP_INTR_FLAG_IRAM (components/
# esp_driver_uart/src/uart.c; driver/uart.c in IDF 4): the ISR runs from IRAM while the cache
# is off and moves the 128-byte hardware FIFO into the driver's RX ring buffer as usual.
# The CPU is held for the step all the same (the time is charged).
FLASH_RX_FIFO = None
# A pin IRQ only schedules its handler (ports/esp32/machine_pin.c machine_pin_isr_handler:
# mp_sched_schedule, v1.22.0-v1.28.0), which runs between bytecodes: after the littlefs call
# that made the steps has returned, so the hardware tells its edges at the next sleep.
PIN_IRQ_AFTER_FLASH_STEP = False

# machine.wake_reason() values (ports/esp32/modmachine.c, ESP-IDF esp_sleep_wakeup_cause_t).
EXT0_WAKE = 2
EXT1_WAKE = 3
TIMER_WAKE = 4


def wdt_max_ms(chip, version):
    """ports/esp32/machine_wdt.c hands the timeout to the task watchdog unbounded; the
    board file's WDT_MAX_MS is the project's own cap."""
    return None


def wdt_in_lightsleep(chip, version):
    """machine.WDT is ESP-IDF's task watchdog (ports/esp32/machine_wdt.c v1.22.0-v1.28.0:
    esp_task_wdt_reconfigure, esp_task_wdt_add_user, esp_task_wdt_reset_user), which runs on
    timer group 0's MWDT (ESP-IDF components/esp_system/task_wdt/task_wdt_impl_timergroup.c,
    TWDT_INSTANCE WDT_MWDT0). In light sleep "digital peripherals, most of the RAM, and CPUs are
    clock-gated ... their internal state is preserved" (ESP-IDF Sleep Modes, v4.3-v5.x): the MWDT
    stops where it was and goes on at the wake, so the watchdog does not count while asleep.
    machine.lightsleep is esp_light_sleep_start (modmachine.c machine_sleep_helper)."""
    return "paused"


def pin_options(chip, pin, mode, kwargs):
    """Pin's keywords (ports/esp32/machine_pin.c machine_pin_obj_init_helper, v1.22.0-v1.28.0):
    `drive` goes through mp_obj_get_int (TypeError unless an int; a value outside DRIVE_0..3 is
    ignored), `hold` is any object, its truth used; an output mode on an input-only pin is refused."""
    drive = kwargs.get("drive")
    if drive is not None and not isinstance(drive, int):
        raise TypeError("can't convert %s to int" % type(drive).__name__)
    first = FIRST_INPUT_ONLY.get(chip)
    if first is not None and pin >= first and mode in _OUTPUT_MODES:
        raise ValueError("pin can only be input")


def wdt_timeout(timeout, maximum):
    """ports/esp32/machine_wdt.c: no maximum, but a timeout <= 0 is refused."""
    if timeout <= 0:
        raise ValueError("WDT timeout too short")


# esp32.PCNT (ports/esp32/esp32_pcnt.c, first in v1.26.0, unchanged to v1.28.0): units per chip,
# PCNT_UNIT_MAX = SOC_PCNT_UNITS_PER_GROUP (ESP-IDF soc_caps.h: ESP32 8, ESP32-S3 4).
PCNT_FIRST = (1, 26, 0)
PCNT_UNITS = {"esp32": 8, "esp32s3": 4}


def pcnt_unit(chip, version, args):
    """PCNT(id, ...): esp32_pcnt_make_new's checks of the unit id."""
    if version < PCNT_FIRST:
        raise AttributeError("PCNT")
    if not args:
        raise TypeError("id")
    unit = args[0]
    if not isinstance(unit, int):
        raise TypeError("can't convert %s to int" % type(unit).__name__)
    if not 0 <= unit < PCNT_UNITS[chip]:
        raise ValueError("invalid id")


# ADC(Pin) pins (ports/esp32/machine_adc.c madc_obj table, v1.22.0-v1.28.0): ESP32 ADC1 on
# GPIO32-39, ADC2 on 0, 2, 4, 12-15, 25-27; ESP32-S3 ADC1 on 1-10, ADC2 on 11-20. ADC2 cannot be
# read while Wi-Fi is on (not modelled: the board files put analog roles on ADC1).
ADC_PINS = {"esp32": tuple(range(32, 40)) + (0, 2, 4, 12, 13, 14, 15, 25, 26, 27),
            "esp32s3": tuple(range(1, 21))}


def adc_pin(chip, pin):
    """ADC(Pin) on a pin with no ADC channel: ValueError "invalid pin" (mp_machine_adc_make_new)."""
    if pin not in ADC_PINS[chip]:
        raise ValueError("invalid pin")


def bus_pins(chip, kind, bus, pins):
    """I2C and UART reach any GPIO through the GPIO matrix (ports/esp32/machine_i2c.c,
    machine_uart.c: no pin table); the pins a module keeps are refused in ports/__init__.py.
    A UART's TX on an input-only pin fails in ESP-IDF's uart_set_pin ("tx_io_num error",
    ESP_FAIL), which machine_uart.c passes to check_esp_err: OSError(1, "ESP_FAIL")."""
    first = FIRST_INPUT_ONLY.get(chip)
    if kind == "UART" and first is not None and pins[0] is not None and pins[0] >= first:
        raise OSError(1, "ESP_FAIL")
