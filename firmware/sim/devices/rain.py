"""Tipping-bucket rain gauge model: a reed switch that closes to ground at each tip."""
from firmware.sim import bus, io


class TippingBucket:
    def __init__(self, name, pin_id, bounces=0):
        self.name = name
        self.pin_id = pin_id
        self.bounces = bounces  # extra open/close pairs per closure, as a worn reed gives
        self.tips = 0  # tips the bucket made, counted or not

    def tip(self, n=1):
        """The bucket tips n times; a dead gauge (stuck or cut cable) never closes."""
        for _ in range(n):
            self.tips += 1
            if bus.dead(self):
                continue
            io.fire(self.pin_id, 0)
            for _ in range(self.bounces):
                io.fire(self.pin_id, 1)
                io.fire(self.pin_id, 0)
            io.fire(self.pin_id, 1)
