"""Analog probe models: pH, turbidity, conductivity, dissolved oxygen and soil moisture.

Each gives the volts its signal board would for the quantity in bus.world
(linear curves like the common hobby boards'); a dead probe reads 0 V.
Calibration points for a test are found from these curves, as a volunteer
finds them by dipping the probe in buffers or standards.
"""
from firmware.sim import bus
from firmware.sim.devices.noise import jitter

_DO_SAT = (14.62, 12.77, 11.29, 10.08, 9.09, 8.26, 7.56, 6.95, 6.41)  # mg/L, 0..40 degC by 5


def do_saturation(temp_c):
    x = min(max(temp_c, 0.0), 40.0) / 5
    i = min(int(x), len(_DO_SAT) - 2)
    return _DO_SAT[i] + (_DO_SAT[i + 1] - _DO_SAT[i]) * (x - i)


def probe_volts(kind, world):
    """The probe board's output for the quantities in world."""
    temp = world.get("water_temp_c", 25.0)
    if kind == "ph":
        return 1.5 - (world.get("ph", 7.0) - 7.0) * 0.1775
    if kind == "turbidity":
        return 3.0 - 0.0006 * world.get("turbidity_ntu", 0.0)
    if kind == "conductivity":
        # The cell sees the conductivity at the water's temperature, about 2 %/degC above 25 degC's.
        return world.get("conductivity_us_cm", 0.0) * (1 + 0.02 * (temp - 25.0)) / 10000.0
    if kind == "dissolved_oxygen":
        return 1.6 * world.get("do_mg_l", 8.26) / do_saturation(temp)
    raise ValueError(kind)


class Probe:
    def __init__(self, name, kind, noise_v=0.0008):
        self.name = name
        self.kind = kind
        self.noise_v = noise_v

    def volts(self):
        if bus.dead(self):
            return 0.0
        return probe_volts(self.kind, bus.world) + jitter(self.noise_v)


class SoilProbe:
    def __init__(self, name, dry_v, wet_v, noise_v=0.001):
        self.name = name
        self.dry_v = dry_v
        self.wet_v = wet_v
        self.noise_v = noise_v

    def volts(self):
        if bus.dead(self):
            return 0.0
        pct = bus.world.get("soil_moisture_pct", 30.0)
        return self.dry_v + (self.wet_v - self.dry_v) * pct / 100.0 + jitter(self.noise_v)
