"""The esp32 port (esp32: ESP32-WROOM-32/WROVER; esp32s3: ESP32-S3), read from micropython/micropython.

Checked at v1.22.0, v1.24.1, v1.26.1 and v1.28.0; every rule names its source file.
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
    """The model keeps the task watchdog counting through lightsleep (not checked on
    hardware: see firmware/README.md)."""
    return "counts"
