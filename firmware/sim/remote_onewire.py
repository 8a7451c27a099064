"""The `onewire` module of the firmware's process (sys.modules["onewire"]): a proxy.

The bus and its DS18B20 models are firmware/sim/onewire.py in the hardware
process; each call goes there (firmware/sim/rpc.py), as on a board the
1-Wire timing is in C, not on the heap.
"""
from firmware.sim import rpc


class OneWireError(Exception):
    pass


rpc.ERRORS["OneWireError"] = OneWireError


class OneWire(rpc.Remote):
    KIND = "OneWire"
    SEARCH_ROM = 0xF0
    MATCH_ROM = 0x55
    SKIP_ROM = 0xCC
