"""A simulated `onewire` module: MicroPython's OneWire API over sim device models.

Installed as sys.modules["onewire"] on the unix port. The devices on a pin
come from bus.onewire_devices(pin_id); each model has `rom` (8 bytes),
`name`, `reset()`, `write(byte)`, `read() -> byte` and `read_bit() -> bit`.
A dead model gives no presence pulse and reads as an idle (high) line.
"""
from firmware.sim import bus

_SEARCH_ROM = 0xF0
_MATCH_ROM = 0x55
_SKIP_ROM = 0xCC


class OneWireError(Exception):
    pass


def _crc8_byte(crc, byte):
    # Dallas/Maxim CRC-8: x^8 + x^5 + x^4 + 1, bit-reflected (0x8C), LSB first.
    for _ in range(8):
        mix = (crc ^ byte) & 1
        crc >>= 1
        if mix:
            crc ^= 0x8C
        byte >>= 1
    return crc


class OneWire:
    SEARCH_ROM = _SEARCH_ROM
    MATCH_ROM = _MATCH_ROM
    SKIP_ROM = _SKIP_ROM

    def __init__(self, pin):
        self.pin = pin
        self._selected = ()
        self._state = 0  # 0 idle, 1 awaiting ROM command, 2 reading a ROM, 3 function
        self._rom = bytearray()
        self._bits = 0
        self._nbits = 0

    def _live(self):
        return [dev for dev in bus.onewire_devices(self.pin.id) if not bus.dead(dev)]

    def reset(self, required=False):
        live = self._live()
        for dev in live:
            dev.reset()
        self._selected = ()
        self._state = 1 if live else 0
        if required and not live:
            raise OneWireError()
        return bool(live)

    def writebyte(self, value):
        value &= 0xFF
        if self._state == 1:
            if value == _SKIP_ROM:
                self._selected = tuple(self._live())
                self._state = 3
            elif value == _MATCH_ROM:
                self._rom = bytearray()
                self._state = 2
            else:
                self._state = 0
        elif self._state == 2:
            self._rom.append(value)
            if len(self._rom) == 8:
                rom = bytes(self._rom)
                self._selected = tuple(dev for dev in self._live() if bytes(dev.rom) == rom)
                self._state = 3
        elif self._state == 3:
            for dev in self._selected:
                dev.write(value)

    def write(self, buf):
        for value in buf:
            self.writebyte(value)

    def writebit(self, value):
        self._bits |= (1 if value else 0) << self._nbits
        self._nbits += 1
        if self._nbits == 8:
            byte = self._bits
            self._bits = 0
            self._nbits = 0
            self.writebyte(byte)

    def readbyte(self):
        # Open drain: every selected device pulls the line, so reads are a wired AND.
        value = 0xFF
        if self._state == 3:
            for dev in self._selected:
                value &= dev.read()
        return value

    def readinto(self, buf):
        for i in range(len(buf)):
            buf[i] = self.readbyte()

    def readbit(self):
        value = 1
        if self._state == 3:
            for dev in self._selected:
                value &= dev.read_bit()
        return value

    def select_rom(self, rom):
        self.reset()
        self.writebyte(_MATCH_ROM)
        self.write(rom)

    def scan(self):
        # The search algorithm's result: every live device's ROM, in ROM order.
        return sorted(bytearray(dev.rom) for dev in self._live())

    def crc8(self, data):
        crc = 0
        for byte in data:
            crc = _crc8_byte(crc, byte)
        return crc
