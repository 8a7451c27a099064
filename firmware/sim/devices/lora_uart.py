"""A transparent LoRa UART module pair (E32/E220 class): the board's on its UART, the gateway's on the peer.

What the board's UART writes (firmware/sim/uart.py hands it over as it
crosses the line) goes into the module's 512-byte buffer (E32 datasheet;
more is lost) and out as LoRa packets of at most packet_max bytes, one
after another, each taking its air time (firmware/lora.py, Semtech
AN1200.13); the gateway's end gets a packet's bytes when it has been
received. What the gateway sends back goes through its own module: the
same UART time and air time. Both modules are half-duplex: a packet from
one side that is on the air while the other side sends is lost (counted in
`collisions`, and a "collision" event). Every transmission of the board's module is logged, and
its time on air over the last hour checked against the region's duty
cycle: `exceeded` counts the transmissions that went over it, and each
prints a "duty_exceeded" event. The state outlives the board's resets, as
the module does.

On a power group (transport.power) the board's module works only while its
rail is on: bytes written to it while off are lost (`unpowered`), a packet
it was sending when the rail went off is cut, and what the gateway sends
meanwhile is never heard. The E32/E220 manuals give no start-up time (AUX
is low during the power-on self-check): the model takes none.
"""
from firmware import lora
from firmware.sim import bus, energy, hwclock
from firmware.sim.scenario import emit

_BUFFER = 512  # E32-868T20D datasheet: the module's UART buffer
_HOUR_US = 3600 * 1000000
_IDLE_BYTES = 3  # the module sends once its UART has been idle this many byte times


class LoraModules:
    def __init__(self, uart_id, radio, baud):
        self.uart_id = uart_id
        self.radio = radio
        self.sf, self.bw, self.cr, self.preamble, self.packet_max, self.duty = lora.settings(radio)
        self.byte_us = 10 * 1000000 / baud
        self.board_air = []  # [start, end] of the board's packets in the last hour
        self.gateway_air = []  # [start, end] of the gateway's packets, kept while they matter
        self.to_gateway = []  # [end, bytes, start]: packets in the air towards the gateway
        self.to_board = []  # [end, bytes, start]: packets in the air towards the board
        self.received = b""  # bytes the board's module has heard and not yet given its UART
        self.packets = 0
        self.air_us = 0
        self.exceeded = 0
        self.collisions = 0
        self.overflow = 0
        self.unpowered = 0  # bytes the board wrote to the module while its rail was off
        self.cut = 0  # packets cut by the rail going off, or sent to a module that was off
        self.rail = None  # its power group's rail (devices/__init__.py), None: always on

    def _powered_through(self, start, end):
        """True when the board's module was on from `start` to `end` (scenario us)."""
        rail = self.rail
        if rail is None:
            return True
        if rail.powered:
            return rail.since_us <= start
        return rail.since_us <= start and rail.off_us >= end

    def _peer(self):
        return bus.uart_peer(self.uart_id)

    def _send(self, data, start, log, out):
        """Queue `data` as packets from `start`; the list of [start, end] each took on the air."""
        n = len(data)
        if n > _BUFFER:
            self.overflow += n - _BUFFER
            data = data[:_BUFFER]
        at = start + _IDLE_BYTES * self.byte_us
        spans = []
        for size in lora.packets(len(data), self.packet_max):
            end = at + lora.airtime_us(size, self.sf, self.bw, self.cr, self.preamble)
            out.append([end, data[:size], at])
            data = data[size:]
            spans.append([at, end])
            log.append([at, end])
            at = end
        return spans

    def write(self, data):
        """Bytes from the board's UART, now: the board's module sends them."""
        self._step()
        now = hwclock.now_us()
        if self.rail is not None and not self.rail.powered:
            self.unpowered += len(data)
            emit("lora_unpowered", now / 1000000, "bytes", len(data))
            return
        start = max(now, self.board_air[-1][1] if self.board_air else 0)
        spans = self._send(bytes(data), start, self.board_air, self.to_gateway)
        air = 0
        for at, end in spans:
            air += end - at
            energy.charge("lora", "tx", at, end - at)
        self.packets += len(spans)
        self.air_us += air
        emit("air", now / 1000000, "bytes", len(data), "packets", len(spans), "air_ms", air // 1000)
        self._check_duty(spans[-1][1])

    def _check_duty(self, end):
        """The time on air in the hour up to `end`, against the duty cycle."""
        self.board_air = [span for span in self.board_air if span[1] > end - _HOUR_US]
        on = 0
        for at, stop in self.board_air:
            on += stop - max(at, end - _HOUR_US)
        if on > self.duty * _HOUR_US:
            self.exceeded += 1
            emit("duty_exceeded", end / 1000000, "on_air_ms", on // 1000, "limit_ms", int(self.duty * _HOUR_US) // 1000)

    def read(self, n):
        """Bytes the board's module has for its UART."""
        self._step()
        data, self.received = self.received[:n], self.received[n:]
        return data or None

    def _lost(self, packet, other):
        """True when `packet` ([end, bytes, start]) overlapped a transmission of the receiving side."""
        for at, end in other:
            if at < packet[0] and end > packet[2]:
                return True
        return False

    def _collide(self, way, packet):
        self.collisions += 1
        emit("collision", packet[0] / 1000000, "way", way, "bytes", len(packet[1]))

    def _step(self):
        now = hwclock.now_us()
        peer = self._peer()
        while self.to_gateway and self.to_gateway[0][0] <= now:
            packet = self.to_gateway.pop(0)
            if not self._powered_through(packet[2], packet[0]):
                self.cut += 1  # the rail went off while it was on the air
            elif self._lost(packet, self.gateway_air):
                self._collide("to_gateway", packet)
            elif peer is not None:
                peer.write(packet[1])
        if peer is not None:
            data = peer.read(4096)
            if data:
                start = max(now + len(data) * self.byte_us, self.gateway_air[-1][1] if self.gateway_air else 0)
                self._send(bytes(data), start, self.gateway_air, self.to_board)
        while self.to_board and self.to_board[0][0] <= now:
            packet = self.to_board.pop(0)
            if not self._powered_through(packet[2], packet[0]):
                self.cut += 1  # the board's module was off while it came
            elif self._lost(packet, self.board_air):
                self._collide("to_board", packet)
            else:
                self.received += packet[1]
        self.gateway_air = [span for span in self.gateway_air if span[1] > now - _HOUR_US]


_modules = {}  # uart id -> LoraModules, kept across the board's resets


def attach(board, t):
    """The module pair on the site's UART (transport t), made once per simulated board: the UART
    (firmware/sim/uart.py) talks to it instead of the peer."""
    uart_id = t.get("uart")
    if uart_id is None:
        uart_id = board.PINS.get("uart")
    if uart_id not in _modules:
        _modules[uart_id] = LoraModules(uart_id, t["radio"], t.get("baud", 9600))
    return _modules[uart_id]
