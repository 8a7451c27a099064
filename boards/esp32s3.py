"""ESP32-S3 DevKitC (no PSRAM assumed): UART or MQTT over Wi-Fi."""

NAME = "esp32s3"
ARCH = "xtensawin"
# GPIO1-10 are ADC1; GPIO19/20 are USB; GPIO26-32 belong to the flash.
PINS = {
    "rain": 11, "trigger": 12, "echo": 13, "onewire": 14,
    "hx711_sck": 15, "hx711_dt": 16,
    "i2c0": 0, "adc0": 1, "adc1": 2, "adc2": 3, "battery": 4,
    "uart": 1,
}
I2C = {0: (9, 8)}
UART = {1: (17, 18)}
ADC_BITS = 12
ADC_VREF = 3.6  # volts at full scale with ATTN_11DB (MicroPython esp32 docs)
ADC_ATTEN = "ATTN_11DB"  # name of the machine.ADC constant; about 0.15-2.45 V is linear
ADC_PINS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
BATTERY_DIVIDER = 2.0
FREE_HEAP = 160 * 1024
FLASH_SIZE = 8 * 1024 * 1024
FS_SIZE = 6 * 1024 * 1024  # the "vfs" partition of ports/esp32/partitions-8MiB.csv v1.22-v1.28
FS_MOUNT = {}  # ports/esp32/modules/_boot.py v1.22-v1.28 mounts with VfsLfs2's defaults (files inline up to 128 B)
WDT_MAX_MS = 600000
SLEEP_MODES = ("none", "light", "deep")
TRANSPORTS = ("uart", "mqtt")
RETAINED = "rtc"
# MicroPython releases this board file supports: the oldest and the newest checked
# (any patch release of it). Older or newer ones are refused at boot and by
# `huaico flash`: the strict model (firmware/sim/ports/esp32.py) was read at these.
MICROPYTHON = ((1, 22, 0), (1, 28, 0))
