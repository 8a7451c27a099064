"""One configured sensor as the main loop holds it: a read() that never raises.

Split from the factory (firmware/sensors.py) so that the factory, its type
table and its checks, and the channel registry can be unloaded once the
sensors are built: each channel's valid range is copied here at build time.
"""
from firmware.drivers import Q_NO_RETURN, Q_OK, Q_OUT_OF_RANGE


class Sensor:
    """Its name, interval and index; `limits` is (code, lowest, highest) flat per channel.
    `power` is its group (firmware/power.py): up for each read, down after it."""

    power = None

    def __init__(self, name, interval_s, index, driver, limits):
        self.name = name
        self.interval_s = interval_s
        self.index = index
        self.driver = driver
        self.limits = limits
        self.errors = 0  # reads that raised inside the driver

    def powered_by(self, group):
        self.power = group
        self._switched = -1

    def read(self):
        """The driver's readings, with its group powered for the read."""
        power = self.power
        if power is None:
            return self._read()
        power.up()
        try:
            if power.switched != self._switched:
                # The rail came up since the last read: the part is in its power-on
                # state, and a driver that set it up must do so again.
                self._switched = power.switched
                if hasattr(self.driver, "powered"):
                    self.driver.powered()
            return self._read()
        finally:
            power.down()

    def _read(self):
        """The driver's readings; a value outside its channel's range is clamped and
        flagged out-of-range so that a frame always carries something sendable."""
        try:
            readings = self.driver.read()
        except Exception as exc:  # a driver bug or a bus error it did not catch
            self.errors += 1
            print("sensor %s: %r" % (self.name, exc))
            return [(code, self.index, 0, Q_NO_RETURN) for code in self.driver.CHANNELS]
        limits = self.limits
        out = []
        for code, index, value, quality in readings:
            for i in range(0, len(limits), 3):
                if limits[i] == code:
                    if value < limits[i + 1] or value > limits[i + 2]:
                        value = min(max(value, limits[i + 1]), limits[i + 2])
                        if quality == Q_OK:
                            quality = Q_OUT_OF_RANGE
                    break
            out.append((code, index, value, quality))
        return out


class RainSensor(Sensor):
    """The rain gauge's Sensor: its tips can be counted, taken and put back. Its group
    (the reed's pull-up) stays up for good: tips are counted at any time."""

    def powered_by(self, group):
        self.driver.hold(group)

    def pending(self):
        return self.driver.pending()

    def take(self):
        return self.driver.take()

    def restore(self, n):
        self.driver.restore(n)
