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
FS_SIZE = (4096 - 1536) * 1024  # ports/rp2/boards/RPI_PICO2_W/mpconfigboard.h v1.25-v1.28
FS_MOUNT = {"progsize": 256}  # vfs.VfsLfs2 options: ports/rp2/modules/_boot.py v1.22-v1.28 (littlefs inlines files up to 512 B)
WDT_MAX_MS = 16777  # RP2350 watchdog: 24-bit counter at 1 tick per us
SLEEP_MODES = ("none", "light")
TRANSPORTS = ("uart", "mqtt")
RETAINED = "scratch"
