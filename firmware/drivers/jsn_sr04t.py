"""Ultrasonic water level, JSN-SR04T class: a downward echo from a fixed mount.

The median of N pings rejects the odd echo off a bridge pier or a wave; the
speed of sound comes from the air temperature (331.3 + 0.606 m/s per degC).
No echo at all is a no-return; a distance inside the blind zone or beyond
the range is flagged out of range; fewer than half the pings answering is
flagged noisy. Level = mount height - distance.
"""
import machine
import time
from micropython import const

from firmware.drivers import Q_NO_RETURN, Q_NOISY, Q_OK, Q_OUT_OF_RANGE, scaled

_WATER_LEVEL = const(4)  # protocol/channels.py "water_level", m, exponent -3
_TRIGGER_US = const(20)  # JSN-SR04T wants a trigger pulse of at least 10 us
_ECHO_TIMEOUT_US = const(40000)  # 6.8 m round trip at 340 m/s: past the 6 m the sensor can see
_GAP_MS = const(60)  # the datasheet's minimum cycle between pings (50 ms) plus margin


class JSNSR04T:
    CHANNELS = (_WATER_LEVEL,)

    def __init__(self, trigger, echo, index, mount_height_m, pings=5, min_m=0.25, max_m=4.5, air_temp_c=20.0):
        self.trigger = trigger
        self.echo = echo
        self.index = index
        self.mount_height_m = mount_height_m
        self.min_m = min_m
        self.max_m = max_m
        self.air_temp_c = air_temp_c  # the firmware may update it from an air temperature sensor
        self._times = [0] * pings
        trigger.value(0)

    def ping_us(self):
        """One round-trip time in us, or a negative time_pulse_us code for no echo."""
        self.trigger.value(1)
        time.sleep_us(_TRIGGER_US)
        self.trigger.value(0)
        return machine.time_pulse_us(self.echo, 1, _ECHO_TIMEOUT_US)

    def distance_m(self):
        """(median distance in m, answered pings), or (None, 0) when no ping came back."""
        times = self._times
        n = 0
        for i in range(len(times)):
            if i:
                time.sleep_ms(_GAP_MS)
            t = self.ping_us()
            if t > 0:
                times[n] = t
                n += 1
        if not n:
            return None, 0
        answered = sorted(times[:n])
        t = answered[n // 2] if n % 2 else (answered[n // 2 - 1] + answered[n // 2]) / 2
        speed = 331.3 + 0.606 * self.air_temp_c
        return t * 1e-6 * speed / 2, n

    def read(self):
        distance, n = self.distance_m()
        if distance is None:
            return [(_WATER_LEVEL, self.index, 0, Q_NO_RETURN)]
        quality = Q_OK
        if distance < self.min_m or distance > self.max_m:
            quality = Q_OUT_OF_RANGE
        elif 2 * n <= len(self._times):
            quality = Q_NOISY
        return [(_WATER_LEVEL, self.index, scaled(self.mount_height_m - distance, -3), quality)]
