"""Raspberry Pi Pico 2 W (RP2350 Cortex-M33 + CYW43439): UART or MQTT over Wi-Fi."""

NAME = "pico2_w"
ARCH = "armv7emsp"
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
BATTERY_DIVIDER = 2.0
FREE_HEAP = 420 * 1024
FLASH_SIZE = 4 * 1024 * 1024
FS_SIZE = 2560 * 1024  # ports/rp2/boards/RPI_PICO2_W: 4 MB flash less 1536 KB
FS_MOUNT = {"progsize": 256}  # vfs.VfsLfs2 options: ports/rp2/modules/_boot.py v1.22-v1.28 (littlefs inlines files up to 512 B)
# ports/rp2/machine_wdt.c WDT_TIMEOUT_MAX is 8388 on every release to v1.28.0, RP2350
# included; only master after v1.28.0 allows the RP2350's 16777 (1 tick per us).
WDT_MAX_MS = 8388
SLEEP_MODES = ("none", "light")
TRANSPORTS = ("uart", "mqtt")
RETAINED = "scratch"
# MicroPython releases this board file supports: the oldest and the newest checked
# (any patch release of it). Older or newer ones are refused at boot and by
# `huaico flash`: the strict model (firmware/sim/ports/rp2.py) was read at these.
# v1.25.0 is the first release with an RPI_PICO2_W board.
MICROPYTHON = ((1, 25, 0), (1, 28, 0))
