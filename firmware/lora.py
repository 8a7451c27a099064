"""A transparent LoRa UART module (E32/E220 class) as the UART link sees it: air time, packets, duty cycle.

The module sends what its UART receives as LoRa packets of at most
`packet_max` bytes (the region's largest payload at this spreading factor,
or the module's sub-packet setting if smaller: an E32 sends 58), one after
another. A 56-byte frame is 60 bytes with our link framing (COBS, CRC-16,
delimiter; the gateway needs them to find frames in the byte stream the far
module hands it), one over the 59 bytes EU868 allows at SF10: it goes as two
packets, 59 and 1 bytes, and its air time is both packets'.

Air time: Semtech AN1200.13 ("LoRa Modem Designer's Guide"), explicit header
and CRC on, low data rate optimisation when a symbol lasts over 16 ms.
Duty cycle: ETSI EN 300 220 measures the time on air over any hour; after
each transmission of T the link stays off the air for T / duty - T, the
rule LoRaWAN devices follow (LoRaWAN 1.0.x, "Retransmissions back-off" and
the regional duty-cycle bands), so a 1 % band never sees more than 36 s an
hour. The module is half-duplex: while it sends it hears nothing, so the
link also waits for the gateway's ack to come back before the next frame.
After a reset the link does not know when it last sent: it waits one
off-time of its largest frame first.

Runs on MicroPython (firmware/uartlink.py) and CPython (tests, the
simulated module in firmware/sim/devices/lora_uart.py).
"""
import time

# region -> (duty cycle, largest payload by SF 7..12). EU868: LoRaWAN Regional Parameters
# RP002-1.0.4 (DR5..DR0 maximum payload M) and ETSI EN 300 220 sub-band g1 (1 %).
# "none": a region with no duty-cycle limit (a test bench, or a licence that allows it).
REGIONS = {
    "EU868": (0.01, (230, 230, 123, 59, 59, 59)),
    "none": (1.0, (255, 255, 255, 255, 255, 255)),
}
ACK_BYTES = 48  # an ack (about 40 bytes, firmware/app.py) with our link framing
_GATEWAY_MS = 200  # the gateway's commit and reply, and both modules' UART idle detection


def airtime_us(size, sf, bw_hz, cr=5, preamble=8):
    """Time on air of one LoRa packet of `size` payload bytes (AN1200.13, section 4).
    cr: the coding rate's denominator, 5..8 for 4/5..4/8."""
    t_sym = (1 << sf) * 1000000 / bw_hz
    de = 1 if t_sym > 16000 else 0
    num = 8 * size - 4 * sf + 28 + 16  # explicit header (IH = 0), CRC on
    den = 4 * (sf - 2 * de)
    n = 8 + max(-(-num // den) * cr, 0)
    return int((preamble + 4.25) * t_sym + n * t_sym + 0.5)


def packets(size, packet_max):
    """The packet sizes the module sends `size` bytes as."""
    out = [packet_max] * (size // packet_max)
    if size % packet_max:
        out.append(size % packet_max)
    return out


def settings(radio):
    """(sf, bw_hz, cr, preamble, packet_max, duty) from a config's transport.radio."""
    sf = radio.get("sf", 10)
    duty, largest = REGIONS[radio.get("region", "EU868")]
    packet_max = min(radio.get("packet_max", 255), largest[sf - 7])
    return (sf, radio.get("bw_khz", 125) * 1000, radio.get("cr", 5), radio.get("preamble", 8), packet_max,
            radio.get("duty", duty))


def burst_us(size, radio):
    """Time on air of `size` bytes through the module: every packet's."""
    sf, bw, cr, preamble, packet_max, duty = settings(radio)
    total = 0
    for n in packets(size, packet_max):
        total += airtime_us(n, sf, bw, cr, preamble)
    return total


def round_trip_ms(size, radio, baud):
    """From write() to the ack in the UART: our bytes on the UART and in the air, the
    gateway's reply, its ack in the air and on our UART."""
    uart_ms = (size + ACK_BYTES) * 10000 // baud
    return uart_ms + (burst_us(size, radio) + burst_us(ACK_BYTES, radio)) // 1000 + _GATEWAY_MS


class Planner:
    """When the link may send next: the duty cycle's off-time and the ack's window."""

    def __init__(self, radio, baud, largest):
        self.radio = radio
        self.baud = baud
        self.duty = settings(radio)[5]
        self.held = 0  # frames the link held back
        self.air_ms = 0  # time on air so far
        off = self._off_ms(burst_us(largest, radio) // 1000)
        self._next = time.ticks_add(time.ticks_ms(), off)  # after a reset: one off-time of the largest

    def _off_ms(self, air_ms):
        return int(air_ms / self.duty - air_ms)

    def wait_ms(self):
        """How long until the link may send; 0 when it may now."""
        return max(0, time.ticks_diff(self._next, time.ticks_ms()))

    def sent(self, size):
        """`size` link bytes went to the module now: off the air until the duty cycle and the ack allow."""
        air = burst_us(size, self.radio) // 1000
        self.air_ms += air
        on_air = size * 10000 // self.baud + air  # the module starts once the UART has brought the bytes
        self._next = time.ticks_add(time.ticks_ms(),
                                    max(on_air + self._off_ms(air), round_trip_ms(size, self.radio, self.baud)))


def _whole(value, lo, hi):
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def check(t, largest, add):
    """A config's transport.radio (firmware/config.py): its settings, and an ack timeout long enough
    for the largest frame (plus the link's 4 bytes) and its ack to cross the air."""
    radio = t["radio"]
    if not isinstance(radio, dict) or radio.get("type") != "lora":
        add("transport.radio: must be {\"type\": \"lora\", \"sf\": 7..12, ...}")
        return
    if radio.get("region", "EU868") not in REGIONS:
        add("transport.radio.region: one of %s" % ", ".join(sorted(REGIONS)))
        return
    duty = radio.get("duty", 0.01)
    if not (_whole(radio.get("sf", 10), 7, 12) and radio.get("bw_khz", 125) in (125, 250, 500)
            and _whole(radio.get("cr", 5), 5, 8) and _whole(radio.get("preamble", 8), 6, 65535)
            and _whole(radio.get("packet_max", 255), 1, 255) and isinstance(duty, (int, float))
            and 0 < duty <= 1):
        add("transport.radio: sf 7..12, bw_khz 125/250/500, cr 5..8 (4/5..4/8), preamble 6..65535, "
            "packet_max 1..255, duty 0..1")
        return
    need = round_trip_ms(largest + 4, radio, t["baud"])
    if _whole(t.get("ack_timeout_ms"), 50, 60000) and t["ack_timeout_ms"] < need:
        add("transport.ack_timeout_ms: %d ms is less than the %d ms a %d-byte frame and its ack take over "
            "this radio; make it at least that" % (t["ack_timeout_ms"], need, largest))
