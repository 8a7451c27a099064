"""The simulated UART at its baud rate, under micropython (firmware/sim/uart.py): a byte takes
10 bits of line time each way, write() blocks only for what does not fit the 256-byte TX buffer,
and bytes that arrive while the 256-byte RX buffer is full are lost, as on rp2 and esp32."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import check, elapsed_ms, fresh, near, run

import board_time

from firmware.sim import bus

BYTE_MS_9600 = 10 * 1000 / 9600


class GatewayEnd:
    """The far end of the cable, as tests/fixtures' UartPeer is: what it got and when, and what it sends."""

    def __init__(self):
        self.got = []  # (board ms, bytes)
        self.out = b""

    def write(self, data):
        self.got.append((board_time.now_us() / 1000, bytes(data)))

    def read(self, n):
        data, self.out = self.out[:n], self.out[n:]
        return data or None


def _uart():
    import machine
    fresh()
    end = GatewayEnd()
    bus.uart_attach(1, end)
    return machine.UART(1, baudrate=9600, tx=machine.Pin(4), rx=machine.Pin(5), timeout=0), end


def a_frame_reaches_the_gateway_after_its_line_time():
    uart, end = _uart()
    start = board_time.now_us() / 1000
    n, ms = elapsed_ms(uart.write, bytes(range(1, 61)))
    check(n == 60 and ms < 5, "write() of 60 bytes returns once they are buffered (%.1f ms)" % ms)
    uart.any()
    check(not end.got, "nothing at the gateway before the line has carried it")
    board_time.sleep_ms(70)
    uart.any()
    check(len(end.got) == 1 and end.got[0][1] == bytes(range(1, 61)), "the frame arrived: %r" % (end.got,))
    if end.got:
        check(end.got[0][0] - start >= 60 * BYTE_MS_9600, "60 bytes take 62.5 ms at 9600 baud")


def write_blocks_for_what_the_tx_buffer_cannot_hold():
    uart, end = _uart()
    n, ms = elapsed_ms(uart.write, bytes(1000))
    near(ms, (1000 - 256) * BYTE_MS_9600, 20, "write(1000 bytes) at 9600 baud blocks until 744 have gone")


def received_bytes_come_at_the_baud_rate():
    uart, end = _uart()
    end.out = bytes(range(1, 101))
    check(uart.any() == 0, "nothing read before the first byte has crossed the line")
    board_time.sleep_ms(52)
    near(uart.any(), 52 / BYTE_MS_9600, 2, "about 50 bytes after 52 ms")
    board_time.sleep_ms(60)
    check(uart.read() == bytes(range(1, 101)), "all 100 after 104 ms, in order")


def a_full_rx_buffer_loses_what_comes_next():
    uart, end = _uart()
    end.out = bytes(600)
    uart.any()
    board_time.sleep_ms(1000)
    data = uart.read()
    check(len(data) == 256, "the 256-byte RX buffer holds 256 of 600: %d" % len(data))
    check(uart.lost == 344, "344 bytes lost: %d" % uart.lost)


def an_rp2_flash_step_loses_what_the_fifo_cannot_hold():
    """A 45 ms sector erase with interrupts off (rp2: ports/rp2/rp2_flash.c) while 100 bytes arrive at
    115200 baud (8.7 ms): the PL011's 32-entry FIFO keeps 32, the rest is lost and counted; an esp32
    (UART ISR in IRAM) keeps all 100. The firmware's ack path is built around it (firmware/app.py)."""
    import machine
    from firmware.sim.uart import flash_busy
    for fifo, kept in ((32, 32), (None, 100)):
        fresh()
        end = GatewayEnd()
        bus.uart_attach(1, end)
        uart = machine.UART(1, baudrate=115200, tx=machine.Pin(4), rx=machine.Pin(5), timeout=0)
        end.out = bytes(range(100))
        uart.any()  # on the line from now
        flash_busy(45000, [uart], fifo)
        data = uart.read() or b""
        check(len(data) == kept and data == bytes(range(kept)),
              "FIFO %r: %d of 100 bytes kept, %d wanted" % (fifo, len(data), kept))
        check(uart.overrun == 100 - kept, "FIFO %r: %d lost, %d counted" % (fifo, 100 - kept, uart.overrun))


def an_rp2_flash_step_stalls_the_line_once_the_tx_fifo_is_sent():
    """100 bytes written at 115200 baud (8.7 ms of line), then at once a 45 ms erase with interrupts
    off: the PL011 sends the 32 its TX FIFO holds, and the UART IRQ that refills it from the TX
    buffer (ports/rp2/machine_uart.c uart_fill_tx_fifo) waits for the erase's end: 32 bytes have
    crossed when it ends, the last at 45 + 68 byte times (50.9 ms). An esp32 (UART ISR in IRAM)
    sends on: all 100 by then."""
    import machine
    from firmware.sim.uart import flash_busy
    byte_ms = 10 * 1000 / 115200
    for fifo, sent in ((32, 32), (None, 100)):
        fresh()
        end = GatewayEnd()
        bus.uart_attach(1, end)
        uart = machine.UART(1, baudrate=115200, tx=machine.Pin(4), rx=machine.Pin(5), timeout=0)
        start = board_time.now_us() / 1000
        uart.write(bytes(range(100)))
        flash_busy(45000, [uart], fifo)
        uart.any()
        got = b"".join(data for _, data in end.got)
        check(got == bytes(range(sent)), "FIFO %r: %d bytes sent through the step, %d wanted" % (fifo, len(got), sent))
        while len(b"".join(data for _, data in end.got)) < 100 and board_time.now_us() / 1000 - start < 70:
            board_time.sleep_ms(1)
            uart.any()
        check(b"".join(data for _, data in end.got) == bytes(range(100)), "FIFO %r: all 100 bytes, in order" % fifo)
        if fifo:
            near(end.got[-1][0] - start, 45 + 68 * byte_ms, 1.5, "rp2: the last byte's arrival")


run((
    (an_rp2_flash_step_loses_what_the_fifo_cannot_hold, ()),
    (an_rp2_flash_step_stalls_the_line_once_the_tx_fifo_is_sent, ()),
    (a_frame_reaches_the_gateway_after_its_line_time, ()),
    (write_blocks_for_what_the_tx_buffer_cannot_hold, ()),
    (received_bytes_come_at_the_baud_rate, ()),
    (a_full_rx_buffer_loses_what_comes_next, ()),
))
