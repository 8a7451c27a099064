"""The UART transport: frames out as COBS packets, the gateway's acks back.

For a cable, an RS-485 transceiver or a transparent LoRa UART module. The
link carries frames of at most `mtu` bytes (checked at boot against the
largest frame the sensors make). Reads never block: poll() takes what the
UART holds, so the main loop bounds every wait itself.
"""
import machine

from protocol import link

_ACK_MAX = 96  # bytes: an ack is about 40


class UartLink:
    def __init__(self, board, t):
        tx, rx = board.UART[t["uart"]]
        self.mtu = t["mtu"]
        self.uart = machine.UART(t["uart"], baudrate=t["baud"], tx=machine.Pin(tx), rx=machine.Pin(rx),
                                 timeout=0)
        self._decoder = link.Decoder(_ACK_MAX)
        self.errors = 0  # damaged packets heard

    def up(self, deadline_ms):
        """A UART is always there; the gateway's acks tell whether anyone listens."""
        return True

    def send(self, frame):
        self.uart.write(link.encode(frame, self.mtu))
        return True

    def poll(self):
        """The ack packets received so far (bytes); damaged ones are counted and dropped."""
        n = self.uart.any()
        if not n:
            return ()
        data = self.uart.read(n)
        if not data:
            return ()
        out = []
        for item in self._decoder.feed(data):
            if isinstance(item, Exception):
                self.errors += 1
            else:
                out.append(item)
        return out

    def close(self):
        pass
