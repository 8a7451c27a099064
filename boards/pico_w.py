"""Raspberry Pi Pico W (RP2040 + CYW43439 Wi-Fi): UART or MQTT over Wi-Fi."""

NAME = "pico_w"
ARCH = "armv6m"
# GP29 is shared with the CYW43 SPI clock on the W: reading VSYS there
# disturbs Wi-Fi, so the battery divider goes on GP28 instead.
PINS = {
    "rain": 6, "trigger": 7, "echo": 8, "onewire": 9,
    "hx711_sck": 10, "hx711_dt": 11,
    "i2c0": 0, "adc0": 26, "adc1": 27, "battery": 28,
    "uart": 0,
}
I2C = {0: (5, 4)}
UART = {0: (0, 1), 1: (8, 9)}
ADC_BITS = 12
ADC_VREF = 3.3  # volts at full scale
ADC_ATTEN = None
ADC_PINS = (26, 27, 28)
BATTERY_DIVIDER = 2.0  # external 100k/100k divider on GP28
FREE_HEAP = 166 * 1024  # the Wi-Fi driver takes its share
FLASH_SIZE = 2 * 1024 * 1024
FS_SIZE = 848 * 1024  # ports/rp2/boards/RPI_PICO_W/mpconfigboard.h
FS_MOUNT = {"progsize": 256}  # vfs.VfsLfs2 options: ports/rp2/modules/_boot.py v1.22-v1.28 (littlefs inlines files up to 512 B)
WDT_MAX_MS = 8388  # ports/rp2/machine_wdt.c WDT_TIMEOUT_MAX
SLEEP_MODES = ("none", "light")
TRANSPORTS = ("uart", "mqtt")
RETAINED = "scratch"
# MicroPython releases this board file supports: the oldest and the newest checked
# (any patch release of it). Older or newer ones are refused at boot and by
# `huaico flash`: the strict model (firmware/sim/ports/rp2.py) was read at these.
MICROPYTHON = ((1, 22, 0), (1, 28, 0))
