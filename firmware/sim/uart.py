"""The simulated UART: bytes to and from the peer wired at its id (firmware/sim/bus.py, or a LoRa
module: firmware/sim/devices/lora_uart.py), at the baud rate.

A byte is 10 bits on the line (start, 8 data, stop: the firmware's 8N1) and
takes 10 / baud seconds. Both ports buffer in software (rp2
ports/rp2/machine_uart.c DEFAULT_BUFFER_SIZE; esp32 ports/esp32/machine_uart.c
"IDF minimum"; v1.22-v1.28): `txbuf` and `rxbuf` default to 256 bytes.
write() returns once its bytes are in the TX buffer, and blocks (the CPU
busy, hwclock.busy_us) while more than txbuf bytes wait for the line; the
peer gets each byte only once it has crossed the line. Received bytes come
off the line at the baud rate into the RX buffer; what arrives while it
holds rxbuf unread bytes is lost (`lost` counts it), as a board's ring
buffer overruns. The peer is read when the firmware touches the UART, so a
byte that reached the peer's end during a sleep counts from then.
"""
import sys

from firmware.sim import bus, energy, hwclock


def _end(uart_id):
    """What the UART talks to: the site's LoRa module when it has one (loaded only then), else the peer."""
    lora = sys.modules.get("firmware.sim.devices.lora_uart")
    module = lora._modules.get(uart_id) if lora is not None else None
    return module if module is not None else bus.uart_peer(uart_id)

_BITS_PER_BYTE = 10
_DEFAULT_BUF = 256


class UART:
    def __init__(self, id, baudrate=9600, bits=8, parity=None, stop=1, tx=None, rx=None, timeout=0,
                 txbuf=_DEFAULT_BUF, rxbuf=_DEFAULT_BUF, **kwargs):
        self.id = id
        self.baudrate = baudrate
        self.byte_us = _BITS_PER_BYTE * 1000000 / baudrate
        self.txbuf = txbuf
        self.rxbuf = rxbuf
        self._rx = bytearray()
        self._line = []  # [us when on our side, bytes] from the peer, not yet in the RX buffer
        self._line_free_us = 0  # when the RX line has carried everything pulled so far
        self._tx = []  # [us when at the peer's end, bytes] written and not yet delivered
        self._tx_done_us = 0  # when the TX line has sent everything written
        self.lost = 0  # received bytes dropped by a full RX buffer

    def _step(self):
        """Deliver what crossed the TX line by now; take from the peer, and off the RX line what arrived."""
        now = hwclock.now_us()
        peer = _end(self.id)
        while self._tx and self._tx[0][0] <= now:
            data = self._tx.pop(0)[1]
            if peer is not None:
                peer.write(data)
        if peer is not None:
            data = peer.read(4096)
            if data:
                start = max(now, self._line_free_us)
                self._line_free_us = start + len(data) * self.byte_us
                self._line.append([start, bytes(data)])
        while self._line:
            start, data = self._line[0]
            arrived = min(len(data), int((now - start) / self.byte_us))
            if arrived <= 0:
                break
            room = self.rxbuf - len(self._rx)
            self._rx.extend(data[:min(arrived, max(room, 0))])
            if arrived > room:
                self.lost += arrived - max(room, 0)
            if arrived == len(data):
                self._line.pop(0)
            else:
                self._line[0] = [start + arrived * self.byte_us, data[arrived:]]
                break

    def any(self):
        self._step()
        return len(self._rx)

    def read(self, n=-1):
        self._step()
        if not self._rx:
            return None
        if n < 0 or n > len(self._rx):
            n = len(self._rx)
        out = bytes(self._rx[:n])
        self._rx = self._rx[n:]
        return out

    def write(self, data):
        self._step()
        now = hwclock.now_us()
        start = max(now, self._tx_done_us)
        # Bytes in flight leave the line one by one: each is delivered to the peer when it has crossed.
        data = bytes(data)
        self._tx_done_us = start + len(data) * self.byte_us
        self._tx.append([self._tx_done_us, data])
        energy.charge("rs485", "tx", start, len(data) * self.byte_us)  # the driver is on while they cross
        waiting = (self._tx_done_us - now) / self.byte_us
        if waiting > self.txbuf:
            hwclock.busy_us((waiting - self.txbuf) * self.byte_us)  # write() blocks until the rest fits
        self._step()
        return len(data)

    def flush(self):
        """Wait until the TX line has sent everything (machine.UART.flush)."""
        hwclock.busy_us(self._tx_done_us - hwclock.now_us())
        self._step()

    def txdone(self):
        return hwclock.now_us() >= self._tx_done_us
