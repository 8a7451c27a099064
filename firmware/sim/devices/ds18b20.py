"""DS18B20 model: ROM with CRC-8, Convert T, and a scratchpad with its CRC-8."""
import struct

from firmware.sim import bus
from firmware.sim.onewire import _crc8_byte

_FAMILY = 0x28
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
        self.raw = 0x0550  # power-on value, 85.0 degC, until the first conversion
        self.converting = False  # the scenario may hold a conversion to test the timeout
        self._out = b""
        self._cmd = 0

    def reset(self):
        self._cmd = 0
        self._out = b""

    def write(self, byte):
        if byte == 0x44:
            self.raw = int(round(bus.world.get(self.world_key, 20.0) * 16)) & 0xFFFF
        elif byte == 0xBE:
            body = struct.pack("<HBBBBBB", self.raw, 0x4B, 0x46, 0x7F, 0xFF, 0x0C, 0x10)
            self._out = body + bytes((_crc8(body),))

    def read(self):
        if not self._out:
            return 0xFF
        byte = self._out[0]
        self._out = self._out[1:]
        return byte

    def read_bit(self):
        return 0 if self.converting else 1
