"""HX711 model: answers the bit-banged protocol on SCK (written) and DOUT (level).

DOUT low means ready; each rising SCK shifts out the next of 24 bits, MSB
first; the pulses after the 24th end the conversion and the next one is
ready at once. A dead chip keeps DOUT high.
"""
from firmware.sim import bus
from firmware.sim.devices.noise import jitter


class HX711:
    def __init__(self, name, sck_pin, tare, scale, world_key="load_kg", noise=3.0):
        self.name = name
        self.sck_pin = sck_pin
        self.tare = tare
        self.scale = scale
        self.world_key = world_key
        self.noise = noise
        self.clocks = 0
        self.value = 0
        self.sck = 0

    def _sample(self):
        raw = int(round(self.tare + bus.world.get(self.world_key, 0.0) * self.scale + jitter(self.noise)))
        return max(-0x800000, min(0x7FFFFF, raw)) & 0xFFFFFF

    def written(self, level):
        if level and not self.sck:
            if self.clocks == 0:
                self.value = self._sample()
            self.clocks += 1
        self.sck = level

    def level(self):
        if bus.dead(self):
            return 1
        if self.clocks == 0:
            return 0
        if self.clocks <= 24:
            return (self.value >> (24 - self.clocks)) & 1
        self.clocks = 0  # the gain pulses ended the read: a new conversion is ready
        return 0
