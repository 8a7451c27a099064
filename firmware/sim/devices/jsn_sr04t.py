"""JSN-SR04T model: after a trigger pulse, an echo as long as the sound's round trip, taking that long.

machine.time_pulse_us blocks the CPU until the pulse ends or times out, so
the model holds the caller (hwclock.busy_us) for the echo's length, or for
the whole timeout when nothing comes back. JSN-SR04T datasheet (v3.0):
a trigger of at least 10 us starts a ping, and the measuring cycle is at
least 50 ms: a trigger sooner after the last one is ignored (the module is
still listening for that ping's echo), so it gives no echo.
"""
from firmware.sim import bus, energy, hwclock
from firmware.sim.devices.noise import jitter

_MAX_SEEN_M = 6.0  # past this the echo is too weak to come back
_CYCLE_US = 50000  # minimum time between pings


class Echo:
    def __init__(self, name, mount_height_m, noise_us=3.0):
        self.name = name
        self.mount_height_m = mount_height_m
        self.noise_us = noise_us
        self.ignored = 0  # triggers that came inside the measuring cycle
        self.power_up()

    def power_up(self):
        """Unpowered it hears no trigger and sends no echo; its datasheet gives no start-up time."""
        self.triggered = False
        self._last_ping_us = None

    def written(self, level):
        # The falling end of the trigger pulse starts a ping, unless the last one is still running.
        if level:
            return
        now = hwclock.now_us()
        if self._last_ping_us is not None and now - self._last_ping_us < _CYCLE_US:
            self.ignored += 1
            return
        self._last_ping_us = now
        self.triggered = True
        energy.charge(self.name, "converting", now, _CYCLE_US)  # the working current for the cycle

    def pulse_us(self, level, timeout_us):
        t = self._echo_us(level)
        if t < 0 or t > timeout_us:
            hwclock.busy_us(timeout_us)  # time_pulse_us waited it out
            return -2 if t < 0 else -1
        hwclock.busy_us(t)
        return t

    def _echo_us(self, level):
        triggered = self.triggered
        self.triggered = False
        if bus.dead(self) or not triggered or level != 1:
            return -2
        distance = self.mount_height_m - bus.world.get("water_level_m", 0.0)
        if distance > _MAX_SEEN_M or distance <= 0:
            return -2
        speed = 331.3 + 0.606 * bus.world.get("air_temp_c", 20.0)
        return int(2 * distance / speed * 1e6 + jitter(self.noise_us))
