"""Power groups: a GPIO that switches the supply of some sensors or of a radio module.

The site config names them ("power": {"sensors": {"pin": 14, "on": 1, "settle_ms": 60}})
and a sensor or the transport names its group ("power": "sensors"). A JSN-SR04T,
a 4-20 mA loop or a LoRa module left on draws milliamps all day; switched, it
draws only while it is read or sends. A group counts its users, so that two
sensors on one rail never cut each other's supply, and a rain gauge whose
pull-up is on the rail holds it for good (its tips are counted at any time).

up() on a rail that was off drives the pin and sleeps the settle time, the
part's start-up time from its datasheet: asleep, so the watchdog and the
virtual clock of the simulated board both see it (config.py counts it in the
loop's budget). ready() is integer work only: the rain gauge's IRQ asks it
whether an edge came from the reed or from the rail switching.
"""
import time

import machine


class Group:
    def __init__(self, pin, on, settle_ms):
        self.on = on
        self.settle_ms = settle_ms
        self.users = 0
        self.on_at = 0  # ticks_ms when the rail last came up
        self.switched = 0  # times the rail came up: what the energy tests count
        self.pin = machine.Pin(pin, machine.Pin.OUT, value=1 - on)

    def up(self):
        """One more user; power the rail and wait its settle time if it was off."""
        self.users += 1
        if self.users == 1:
            self.on_at = time.ticks_ms()  # first: the switching edge's IRQ may run in value()
            self.pin.value(self.on)
            self.switched += 1
            if self.settle_ms:
                time.sleep_ms(self.settle_ms)

    def down(self):
        """One user less; the rail goes off with the last."""
        if self.users:
            self.users -= 1
            if not self.users:
                self.pin.value(1 - self.on)

    def ready(self, now):
        """True while the rail is on and has settled (no allocation: called in an IRQ)."""
        return self.users > 0 and time.ticks_diff(now, self.on_at) >= self.settle_ms


def groups(raw):
    """The site's groups by name, each rail off until a user needs it."""
    out = {}
    for name in raw or ():
        spec = raw[name]
        out[name] = Group(spec["pin"], spec.get("on", 1), spec.get("settle_ms", 0))
    return out
