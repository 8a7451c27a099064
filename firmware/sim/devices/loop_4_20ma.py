"""4-20 mA pressure transmitter model: loop current for the water over it, seen across a shunt."""
from firmware.sim import bus
from firmware.sim.devices.noise import jitter


class Transmitter:
    def __init__(self, name, range_m, shunt_ohm=150.0, offset_m=0.0, noise_v=0.001):
        self.name = name
        self.range_m = range_m
        self.shunt_ohm = shunt_ohm
        self.offset_m = offset_m
        self.noise_v = noise_v

    def milliamps(self):
        if bus.dead(self):
            return 0.0  # broken loop
        depth = bus.world.get("water_level_m", 0.0) - self.offset_m
        ma = 4.0 + 16.0 * depth / self.range_m
        return min(max(ma, 3.8), 22.0)  # the transmitter's own limits (NAMUR NE 43)

    def volts(self):
        return self.milliamps() * self.shunt_ohm / 1000.0 + jitter(self.noise_v)
