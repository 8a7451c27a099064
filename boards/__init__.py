"""Board files: what the firmware needs to know about each supported board.

One plain module per board (no classes, so a board file costs a few hundred
bytes of heap): NAME, ARCH (the mpy-cross -march value), PINS (sensor role
-> pin id, or bus id for "i2c0"/"uart"), I2C and UART buses, ADC facts,
heap and flash sizes, the watchdog limit, sleep modes, transports, and
where a few words survive a reset (RETAINED). Drivers never name a pin:
the firmware resolves roles here.
"""

NAMES = ("pico", "pico_w", "pico2_w", "esp32", "esp32s3")


def load(name):
    """The board module for a name; ValueError for an unknown board."""
    if name not in NAMES:
        raise ValueError("unknown board %r (one of %s)" % (name, ", ".join(NAMES)))
    return getattr(__import__("boards." + name), name)
