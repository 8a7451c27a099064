"""HX711 model: answers the bit-banged protocol on SCK (written) and DOUT (level), at its output data rate.

Avia HX711 datasheet (rev. 2.0): the chip converts continuously at 10 or 80
samples/s (the RATE pin, tied low for 10 on most breakout boards); DOUT
goes low when a conversion is ready and high again once it is clocked out.
After power-up (and a reset or channel change) the output settles in 4
conversion periods (table "Output settling time": 400 ms at 10 SPS, 50 ms
at 80 SPS), and no data is ready before then. Each rising SCK shifts out
the next of 24 bits, MSB first; the pulses after the 24th choose the next
conversion's gain. A dead chip keeps DOUT high.
"""
from firmware.sim import bus, hwclock
from firmware.sim.devices.noise import jitter

_SETTLE_PERIODS = 4


class HX711:
    def __init__(self, name, sck_pin, tare, scale, world_key="load_kg", noise=3.0, sps=10):
        self.name = name
        self.sck_pin = sck_pin
        self.tare = tare
        self.scale = scale
        self.world_key = world_key
        self.noise = noise
        self.period_us = 1000000 // sps
        self.value = 0
        self.sck = 0
        self.power_up()

    def power_up(self):
        """The on-chip power-on reset: the output settles again from now (no data until then)."""
        self._powered_us = hwclock.now_us()
        self._taken = -1  # the conversion (by period number) last clocked out
        self.clocks = 0

    def _latest(self):
        """The number of the newest finished conversion, -1 before the output has settled."""
        k = (hwclock.now_us() - self._powered_us) // self.period_us
        return k if k >= _SETTLE_PERIODS else -1

    def _sample(self):
        raw = int(round(self.tare + bus.world.get(self.world_key, 0.0) * self.scale + jitter(self.noise)))
        return max(-0x800000, min(0x7FFFFF, raw)) & 0xFFFFFF

    def written(self, level):
        if level and not self.sck:
            if self.clocks == 0:
                self.value = self._sample()
                self._taken = self._latest()
            self.clocks += 1
        self.sck = level

    def level(self):
        if bus.dead(self):
            return 1
        if self.clocks == 0:
            latest = self._latest()
            return 0 if latest >= 0 and latest > self._taken else 1
        if self.clocks <= 24:
            return (self.value >> (24 - self.clocks)) & 1
        self.clocks = 0  # the gain pulses ended the read: DOUT high until the next conversion
        return 1
