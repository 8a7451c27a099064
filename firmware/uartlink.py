"""The UART transport: frames out as COBS packets, the gateway's acks back.

For a cable, an RS-485 transceiver or a transparent LoRa UART module. The
link carries frames of at most `mtu` bytes (checked at boot against the
largest frame the sensors make). Reads never block: poll() takes what the
UART holds, so the main loop bounds every wait itself.

With a LoRa module (transport.radio) the link plans each frame's air time
(firmware/lora.py): it sends only when the duty cycle and the last frame's
ack window allow, and holds the rest back (counted, and logged), so the
region's limit is never exceeded and the module is never sending while the
gateway's ack comes in.

A LoRa module or an RS-485 transceiver on a power group (transport.power)
is powered only to send and to hear the acks: up when the link may send,
down at rest() once the main loop is done waiting (a module off hears
nothing, so the loop rests it only after the ack wait).
"""
import machine

from firmware import log
from protocol import link

_ACK_MAX = 96  # bytes: an ack is about 40


class UartLink:
    def __init__(self, board, t, power=None):
        tx, rx = board.UART[t["uart"]]
        self.mtu = t["mtu"]
        self.uart = machine.UART(t["uart"], baudrate=t["baud"], tx=machine.Pin(tx), rx=machine.Pin(rx),
                                 timeout=0)
        self._decoder = link.Decoder(_ACK_MAX)
        self.errors = 0  # damaged packets heard
        self.power = power
        self.plan = None
        if t.get("radio"):
            from firmware.lora import Planner
            self.plan = Planner(t["radio"], t["baud"], link.encoded_bound(self.mtu + 2) + 1)

    def up(self, deadline_ms):
        """A UART is always there (the gateway's acks tell whether anyone listens); a LoRa
        module only once the duty cycle and the last ack's window let it send. Powers the
        module's group (and waits its settle time) when it may."""
        if self.plan is not None and not self._clear():
            return False
        if self.power is not None and not self.power.users:
            self.power.up()
        return True

    def rest(self, idle_ms):
        """Nothing to send for idle_ms: the module's group off (its receiver draws 11-17 mA)."""
        if self.power is not None and self.power.users and idle_ms > 0:
            self.power.down()
            log.event("radio_off", "idle_ms", idle_ms)

    def _clear(self):
        wait = self.plan.wait_ms()
        if wait:
            self.plan.held += 1
            log.event("radio_hold", "wait_ms", wait, "held", self.plan.held, "air_ms", self.plan.air_ms)
        return not wait

    def send(self, frame):
        """Write the frame's link packet; False when the radio must hold it back."""
        if not self.up(0):
            return False
        data = link.encode(frame, self.mtu)
        self.uart.write(data)
        if self.plan is not None:
            self.plan.sent(len(data))
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
