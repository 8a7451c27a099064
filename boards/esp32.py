"""ESP32 DevKitC (ESP32-WROOM-32): UART or MQTT over Wi-Fi."""

NAME = "esp32"
ARCH = "xtensawin"
# Analog roles use ADC1 only (GPIO32-39): ADC2 cannot be read while Wi-Fi
# is on. The rain pin is an RTC GPIO so that it can wake the chip.
PINS = {
    "rain": 27, "trigger": 5, "echo": 18, "onewire": 4,
    "hx711_sck": 25, "hx711_dt": 26,
    "i2c0": 0, "adc0": 34, "adc1": 35, "adc2": 32, "battery": 33,
    "uart": 2,
}
I2C = {0: (22, 21)}
# (tx, rx). Not UART1's default 10/9 (the WROOM-32's flash) nor UART2's 17/16
# (PSRAM on WROVER modules, which run the same firmware): pass these pins.
UART = {2: (23, 19), 1: (14, 13)}
ADC_BITS = 12
ADC_VREF = 3.6  # volts at full scale with ATTN_11DB (MicroPython esp32 docs)
ADC_ATTEN = "ATTN_11DB"  # name of the machine.ADC constant; about 0.15-2.45 V is linear
ADC_PINS = (32, 33, 34, 35, 36, 39)
BATTERY_DIVIDER = 2.0
FREE_HEAP = 100 * 1024  # a plain ESP32's share once Wi-Fi is up
FLASH_SIZE = 4 * 1024 * 1024
FS_SIZE = 2 * 1024 * 1024  # the "vfs" partition of ports/esp32/partitions-4MiB.csv v1.22-v1.28
FS_MOUNT = {}  # ports/esp32/modules/_boot.py v1.22-v1.28 mounts with VfsLfs2's defaults (files inline up to 128 B)
WDT_MAX_MS = 600000  # the task watchdog takes any timeout; ten minutes is our cap
SLEEP_MODES = ("none", "light", "deep")
TRANSPORTS = ("uart", "mqtt")
RETAINED = "rtc"  # RTC slow memory survives deep sleep and soft resets
# MicroPython releases this board file supports: the oldest and the newest checked
# (any patch release of it). Older or newer ones are refused at boot and by
# `huaico flash`: the strict model (firmware/sim/ports/esp32.py) was read at these.
MICROPYTHON = ((1, 22, 0), (1, 28, 0))
