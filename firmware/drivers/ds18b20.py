"""DS18B20 1-Wire temperature, for water or air.

Conversion is polled with a bounded number of read slots (12-bit takes up
to 750 ms); the scratchpad's CRC-8 and its always-one config bits are
checked; 85.0 degC is the power-on value of a sensor that did not convert
(brown-out, or a read too soon), so it is converted again and, if it stays,
flagged stuck.
"""
import struct
import time
from micropython import const

from firmware.drivers import Q_NO_RETURN, Q_OK, Q_STUCK, scaled

_WATER_TEMP = const(5)  # protocol/channels.py "water_temp", degC, exponent -2
_AIR_TEMP = const(6)  # protocol/channels.py "air_temp", degC, exponent -2
_CONVERT_T = const(0x44)
_READ_SCRATCH = const(0xBE)
_MATCH_ROM = const(0x55)
_SKIP_ROM = const(0xCC)
_POLL_MS = const(10)
_POLLS = const(80)  # 800 ms: the datasheet's 750 ms at 12 bits, plus margin
_POWER_ON_RAW = const(0x0550)  # 85.0 degC, the scratchpad's reset value


class DS18B20:
    def __init__(self, ow, index, rom=None, output=None):
        self.ow = ow
        self.index = index
        # rom: 16 hex digits from the config, or None for the only device on the pin.
        self.rom = None if rom is None else bytes(int(rom[i:i + 2], 16) for i in range(0, 16, 2))
        self.code = _AIR_TEMP if output == "air_temp" else _WATER_TEMP
        self.CHANNELS = (self.code,)
        self._buf = bytearray(9)

    def _select(self):
        if not self.ow.reset():
            raise OSError(19)  # no presence pulse: nothing on the bus
        if self.rom is None:
            self.ow.writebyte(_SKIP_ROM)
        else:
            self.ow.writebyte(_MATCH_ROM)
            self.ow.write(self.rom)

    def _convert(self):
        self._select()
        self.ow.writebyte(_CONVERT_T)
        for _ in range(_POLLS):
            if self.ow.readbit():
                return True
            time.sleep_ms(_POLL_MS)
        return False

    def _scratchpad(self):
        """The raw temperature, or None when the scratchpad fails its checks."""
        self._select()
        self.ow.writebyte(_READ_SCRATCH)
        self.ow.readinto(self._buf)
        buf = self._buf
        # Config byte: bits 0-4 and 7 always read 1; an all-zero shorted bus passes the CRC.
        if self.ow.crc8(buf) != 0 or buf[4] & 0x9F != 0x1F:
            return None
        return struct.unpack_from("<h", buf)[0]

    def read(self):
        raw = None
        try:
            for _ in range(2):
                if not self._convert():
                    continue
                raw = self._scratchpad()
                if raw is not None and raw != _POWER_ON_RAW:
                    break
        except OSError:
            raw = None
        if raw is None:
            return [(self.code, self.index, 0, Q_NO_RETURN)]
        quality = Q_STUCK if raw == _POWER_ON_RAW else Q_OK
        return [(self.code, self.index, scaled(raw / 16.0, -2), quality)]
