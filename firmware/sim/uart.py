"""The simulated UART: bytes to and from the peer wired at its id (firmware/sim/bus.py)."""
from firmware.sim import bus

_RX_MAX = 1024  # a board UART's receive ring; more is lost, as on a board


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None, timeout=0,
                 **kwargs):
        self.id = id
        self.baudrate = baudrate
        self._rx = bytearray()

    def _pull(self):
        peer = bus.uart_peer(self.id)
        if peer is None:
            return
        data = peer.read(_RX_MAX - len(self._rx))
        if data:
            self._rx.extend(data)

    def any(self):
        self._pull()
        return len(self._rx)

    def read(self, n=-1):
        self._pull()
        if not self._rx:
            return None
        if n < 0 or n > len(self._rx):
            n = len(self._rx)
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return out

    def write(self, data):
        peer = bus.uart_peer(self.id)
        if peer is not None:
            peer.write(bytes(data))
        return len(data)
