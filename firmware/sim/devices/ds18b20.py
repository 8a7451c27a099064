"""DS18B20 model: ROM with CRC-8, Convert T that takes the datasheet's time, and a scratchpad with its CRC-8.

Conversion time by resolution (config register bits R1:R0), the maximum of
the Maxim/Analog Devices DS18B20 datasheet (rev. 6, "Configuration
Register", tCONV): 93.75 ms at 9 bits up to 750 ms at 12 bits, the power-on
default. While converting the sensor answers read slots with 0 (it holds DQ
low), and the scratchpad keeps the previous temperature (85.0 degC after
power-on) until the conversion ends.
"""
import struct

from firmware.sim import bus, energy, hwclock
from firmware.sim.onewire import _crc8_byte

_FAMILY = 0x28
_CONV_US = (93750, 187500, 375000, 750000)  # tCONV max, 9..12 bits
_CONFIG_12BIT = 0x7F
_serials = [0x1000]


def _crc8(data):
    crc = 0
    for byte in data:
        crc = _crc8_byte(crc, byte)
    return crc


class DS18B20:
    def __init__(self, name, world_key="water_temp_c", rom=None):
        self.name = name
        self.world_key = world_key
        if rom is None:
            _serials[0] += 1
            body = bytes((_FAMILY,)) + struct.pack("<IH", _serials[0], 0)
            rom = body + bytes((_crc8(body),))
        self.rom = rom
        self.converting = False  # the scenario may hold a conversion forever to test the timeout
        self.power_up()

    def power_up(self):
        """The scratchpad's power-on state (datasheet, "Memory"): 85.0 degC until a conversion."""
        self.raw = 0x0550
        self.config = _CONFIG_12BIT
        self._done_us = 0  # when the running conversion ends
        self._next = None  # its result, in the scratchpad from then on
        self._out = b""

    def reset(self):
        self._out = b""

    def _settle(self):
        if self._next is not None and hwclock.now_us() >= self._done_us:
            self.raw = self._next
            self._next = None

    def busy(self):
        return self.converting or hwclock.now_us() < self._done_us

    def write(self, byte):
        if byte == 0x44:
            self._settle()
            self._next = int(round(bus.world.get(self.world_key, 20.0) * 16)) & 0xFFFF
            conv = _CONV_US[(self.config >> 5) & 3]
            self._done_us = hwclock.now_us() + conv
            energy.charge(self.name, "converting", hwclock.now_us(), conv)
        elif byte == 0xBE:
            self._settle()
            body = struct.pack("<HBBBBBB", self.raw, 0x4B, 0x46, self.config, 0xFF, 0x0C, 0x10)
            self._out = body + bytes((_crc8(body),))

    def read(self):
        if not self._out:
            return 0xFF
        byte = self._out[0]
        self._out = self._out[1:]
        return byte

    def read_bit(self):
        return 0 if self.busy() else 1
