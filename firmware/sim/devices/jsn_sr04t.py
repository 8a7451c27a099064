"""JSN-SR04T model: after a trigger pulse, an echo as long as the sound's round trip."""
from firmware.sim import bus
from firmware.sim.devices.noise import jitter

_MAX_SEEN_M = 6.0  # past this the echo is too weak to come back


class Echo:
    def __init__(self, name, mount_height_m, noise_us=3.0):
        self.name = name
        self.mount_height_m = mount_height_m
        self.noise_us = noise_us
        self.triggered = False

    def written(self, level):
        # The falling end of the trigger pulse starts a ping.
        if not level:
            self.triggered = True

    def pulse_us(self, level, timeout_us):
        triggered = self.triggered
        self.triggered = False
        if bus.dead(self) or not triggered or level != 1:
            return -2
        distance = self.mount_height_m - bus.world.get("water_level_m", 0.0)
        if distance > _MAX_SEEN_M or distance <= 0:
            return -2
        speed = 331.3 + 0.606 * bus.world.get("air_temp_c", 20.0)
        t = int(2 * distance / speed * 1e6 + jitter(self.noise_us))
        return t if t <= timeout_us else -1
