"""Battery voltage divider on an ADC pin: the pin sees battery_v / ratio."""
from firmware.sim import bus
from firmware.sim.devices.noise import jitter


class Divider:
    def __init__(self, name, ratio=2.0, noise_v=0.002):
        self.name = name
        self.ratio = ratio
        self.noise_v = noise_v

    def volts(self):
        if bus.dead(self):
            return 0.0  # divider open: the pin is pulled to ground
        return bus.world.get("battery_v", 3.9) / self.ratio + jitter(self.noise_v)
