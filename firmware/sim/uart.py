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

rp2 programs and erases its flash with interrupts off (ports/rp2/rp2_flash.c,
v1.22-v1.28), so the UART's IRQ handler, which moves bytes from the PL011's
RX FIFO into the RX buffer (ports/rp2/machine_uart.c uart_drain_rx_fifo),
does not run for the step's duration: the FIFO (32 entries, RP2040/RP2350
datasheets, UART section) takes what arrives, less the few bytes the handler
had not taken yet (its IRQ fires at 1/8 full, 4 bytes, or 32 bit times after
the last byte: pico-sdk uart_set_irq_enables, PL011 receive timeout), and
every byte after is lost (an overrun: `overrun` and `lost` count it).
Sending stalls the same way: the TX buffer reaches the PL011's 32-entry TX
FIFO only through write() and that IRQ (uart_fill_tx_fifo, v1.22-v1.28), which refills it
when it falls to 1/8 full, 4 entries (pico-sdk uart_set_irq_enables:
TXIFLSEL 0); through a step the line sends what the FIFO held and then idles
until interrupts are back. flash_busy() runs such a step, reading the peer
every millisecond meanwhile so that bytes reach the line when they really came.
"""
import sys

from firmware.sim import bus, energy, hwclock
from firmware.sim.scenario import emit


def _end(uart_id):
    """What the UART talks to: the site's LoRa module when it has one (loaded only then), else the peer."""
    lora = sys.modules.get("firmware.sim.devices.lora_uart")
    module = lora._modules.get(uart_id) if lora is not None else None
    return module if module is not None else bus.uart_peer(uart_id)

_BITS_PER_BYTE = 10
_DEFAULT_BUF = 256
_RX_IRQ_LEVEL = 4  # pico-sdk uart_set_irq_enables: RXIFLSEL 1/8 of the 32-entry FIFO
_RX_TIMEOUT_BITS = 32  # PL011: the receive timeout IRQ after 32 bit times without a byte
_TX_IRQ_LEVEL = 4  # pico-sdk uart_set_irq_enables: TXIFLSEL 0, the TX IRQ at 1/8 of the FIFO
_POLL_US = 1000


def flash_busy(us, uarts, fifo):
    """A flash erase or program holds the CPU for `us`; with `fifo` (entries), as on rp2,
    interrupts are off meanwhile and these UARTs receive into that FIFO only."""
    if not fifo:
        hwclock.busy_us(us)  # esp32: the UART ISR is in IRAM and receives on (ports/esp32)
        return
    end = hwclock.now_us() + us
    for u in uarts:
        u.irqs_off(fifo, end)
    while True:
        left = end - hwclock.now_us()
        if left <= 0:
            break
        hwclock.busy_us(min(left, _POLL_US))
        for u in uarts:
            u._step()
    for u in uarts:
        u.irqs_on()


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
        self._tx_run_us = 0  # when the TX line last started sending after being idle
        self.lost = 0  # received bytes dropped by a full RX buffer or FIFO
        self.overrun = 0  # of them, by the FIFO while interrupts were off
        self._off = None  # us since interrupts are off (a flash step on rp2), else None
        self._fifo = bytearray()  # what the hardware FIFO holds meanwhile
        self._fifo_room = 0
        self._overrun_at = 0
        self._off_was = 0
        self._last_us = -1e18  # when the last byte came off the line
        self._unread = 0  # bytes of it still in the FIFO for the IRQ handler to take

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
            self._take(start, data[:arrived])
            if arrived == len(data):
                self._line.pop(0)
            else:
                self._line[0] = [start + arrived * self.byte_us, data[arrived:]]
                break

    def _take(self, start, data):
        """Bytes that came off the line, the k-th of them at start + k byte times."""
        on = len(data)
        if self._off is not None:
            on = max(0, min(on, int((self._off - start) / self.byte_us)))
        if on:
            if start - self._last_us >= _RX_TIMEOUT_BITS * self.byte_us / _BITS_PER_BYTE:
                self._unread = 0  # the receive timeout IRQ had emptied the FIFO
            self._unread = (self._unread + on) % _RX_IRQ_LEVEL
            self._last_us = start + on * self.byte_us
            self._into_rx(data[:on])
        rest = len(data) - on
        if rest:
            fits = max(0, min(rest, self._fifo_room - len(self._fifo)))
            self._fifo.extend(data[on:on + fits])
            self.overrun += rest - fits
            self.lost += rest - fits

    def _into_rx(self, data):
        room = max(self.rxbuf - len(self._rx), 0)
        self._rx.extend(data[:room])
        if len(data) > room:
            self.lost += len(data) - room

    def irqs_off(self, fifo, on_us):
        """Interrupts off from now until on_us (a flash step), the FIFOs `fifo` entries each."""
        self._step()
        self._overrun_at = self.overrun
        self._off = hwclock.now_us()
        held = self._unread if self._off - self._last_us < _RX_TIMEOUT_BITS * self.byte_us / _BITS_PER_BYTE else 0
        self._fifo_room = fifo - held
        if self._tx_done_us > self._off:
            # The TX FIFO is full after a write or a refill and refilled each time it falls to the
            # IRQ's level: what it holds now goes out, the rest waits for interrupts.
            sent = int((self._off - self._tx_run_us) / self.byte_us)
            held = fifo - sent % (fifo - _TX_IRQ_LEVEL)
            self._stall_tx(self._off + held * self.byte_us, on_us)

    def _stall_tx(self, fed_us, on_us):
        """The TX line idles from fed_us (what the FIFO held has gone) to on_us."""
        delay = on_us - fed_us
        if delay <= 0 or self._tx_done_us <= fed_us:
            return
        tx = []
        for done, data in self._tx:
            gone = min(len(data), max(0, int((fed_us - (done - len(data) * self.byte_us)) / self.byte_us)))
            if gone:
                tx.append([done - (len(data) - gone) * self.byte_us, data[:gone]])
            if gone < len(data):
                tx.append([done + delay, data[gone:]])
        self._tx = tx
        self._tx_done_us += delay
        self._tx_run_us = on_us  # the IRQ fills the emptied FIFO again

    def irqs_on(self):
        """The IRQ handler runs at once and empties the FIFO into the RX buffer."""
        self._step()
        self._off_was = self._off
        self._off = None
        self._into_rx(self._fifo)
        self._fifo = bytearray()
        self._unread = 0
        if self.overrun > self._overrun_at:
            emit("uart_overrun", hwclock.now_us() / 1000000, "uart", self.id, "bytes", self.overrun - self._overrun_at,
                 "off_us", int(hwclock.now_us() - self._off_was))

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
        if now >= self._tx_done_us:
            self._tx_run_us = now  # the line was idle: the FIFO fills from here
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
