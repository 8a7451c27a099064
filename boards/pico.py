"""Raspberry Pi Pico (RP2040, no radio): a UART link to the gateway or a LoRa module."""

NAME = "pico"
ARCH = "armv6m"
# Roles -> GPIO numbers; "i2c0" names the I2C bus id. GP4/GP5 are I2C0's
# default pins; GP26-28 are the ADC inputs; GP29 reads VSYS/3 through the
# board's own divider, so the battery role needs no extra parts.
PINS = {
    "rain": 6, "trigger": 7, "echo": 8, "onewire": 9,
    "hx711_sck": 10, "hx711_dt": 11,
    "i2c0": 0, "adc0": 26, "adc1": 27, "adc2": 28, "battery": 29,
    "uart": 0,
}
I2C = {0: (5, 4)}  # bus id -> (scl, sda)
UART = {0: (0, 1), 1: (8, 9)}  # uart id -> (tx, rx)
ADC_BITS = 12  # read_u16() scales the 12-bit result to 16 bits
ADC_VREF = 3.3  # volts at full scale
ADC_ATTEN = None  # no attenuator: full scale is the 3.3 V reference
ADC_PINS = (26, 27, 28, 29)
BATTERY_DIVIDER = 3.0  # on-board VSYS divider
FREE_HEAP = 190 * 1024  # gc.mem_free() after boot on v1.2x firmware
FLASH_SIZE = 2 * 1024 * 1024
FS_SIZE = 1408 * 1024  # ports/rp2/boards/RPI_PICO/mpconfigboard.h MICROPY_HW_FLASH_STORAGE_BYTES
FS_MOUNT = {"progsize": 256}  # vfs.VfsLfs2 options: ports/rp2/modules/_boot.py v1.22-v1.28 (littlefs inlines files up to 512 B)
WDT_MAX_MS = 8388  # ports/rp2/machine_wdt.c WDT_TIMEOUT_MAX (24-bit counter, 2 ticks per us: RP2040-E1)
SLEEP_MODES = ("none", "light")
TRANSPORTS = ("uart",)
RETAINED = "scratch"  # watchdog scratch registers survive a soft or watchdog reset
# MicroPython releases this board file supports: the oldest and the newest checked
# (any patch release of it). Older or newer ones are refused at boot and by
# `huaico flash`: the strict model (firmware/sim/ports/rp2.py) was read at these.
MICROPYTHON = ((1, 22, 0), (1, 28, 0))
