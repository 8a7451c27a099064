"""Crack gauge model: a linear potentiometer whose plunger sits at zero_mm + bus.world["crack_mm"].

"crack_mm" is how far the crack has opened since the gauge was installed
(negative: closed); the gauge was mounted with its plunger at zero_mm of its
travel, the value the volunteer writes in the config. The track spans 0 V to
3.3 V; a dead gauge (wiper lifted, lead cut) is pulled to 0 V.
"""
from firmware.sim import bus
from firmware.sim.devices.noise import jitter

_TRACK_V = 3.3


class CrackGauge:
    def __init__(self, name, travel_mm=25.0, zero_mm=0.0, noise_v=0.0008):
        self.name = name
        self.travel_mm = travel_mm
        self.zero_mm = zero_mm
        self.noise_v = noise_v

    def volts(self):
        if bus.dead(self):
            return 0.0
        mm = self.zero_mm + bus.world.get("crack_mm", 0.0)
        return mm / self.travel_mm * _TRACK_V + jitter(self.noise_v)
