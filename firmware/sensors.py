"""The sensor factory: check a site config's sensor entries and build their drivers.

validate(board, cfg) names every wrong field of one entry; make(board, cfg)
builds the driver on the board's machine objects and wraps it in a Sensor
(firmware/sensor.py), whose read() never raises. Drivers are imported only
for the types a site uses, and the firmware unloads this module once its
sensors are built (firmware/app.py): the table and the checks are boot-time
work that would otherwise hold ~16 KB of heap.
"""
import machine

from protocol import channels
from protocol.frame import MAX_INDEX
from firmware.sensor import RainSensor, Sensor

# type -> (driver module, class, pin roles and how each is made, constructor
# parameters after the index as flat (name, default, lowest, highest) quads).
# The objects made from roles: "in_up"/"in"/"out" Pins, "adc" an ADC and its
# full-scale volts, "i2c" a bus, "ow" a OneWire. A default of None marks a
# number the config must give; a lowest of None a key checked on its own.
# Flat tuples: nested dicts of this table cost three times the heap.
_TYPES = {
    'rain_gauge': ('rain_gauge', 'RainGauge', ('rain', 'in_up'),
        ('mm_per_tip', 0.2, 0.01, 10.0, 'debounce_ms', 20, 0, 1000)),
    'battery': ('battery', 'Battery', ('battery', 'adc'),
        ('ratio', 2.0, 1.0, 20.0, 'samples', 8, 1, 64, 'noise_v', 0.1, 0.0, 3.3)),
    'ultrasonic_level': ('jsn_sr04t', 'JSNSR04T', ('trigger', 'out', 'echo', 'in'),
        ('mount_height_m', None, 0.2, 20.0, 'pings', 5, 1, 15, 'min_m', 0.25, 0.02, 10.0, 'max_m', 4.5, 0.1, 20.0, 'air_temp_c', 20.0, -40.0, 60.0)),
    'pressure_level_ma': ('loop_4_20ma', 'Loop420', ('adc0', 'adc'),
        ('range_m', None, 0.1, 100.0, 'shunt_ohm', 150.0, 10.0, 500.0, 'offset_m', 0.0, -10.0, 50.0, 'samples', 8, 1, 64, 'noise_v', 0.05, 0.0, 3.3)),
    'pressure_level_i2c': ('ms5837', 'MS5837', ('i2c0', 'i2c'),
        ('addr', 118, 8, 119, 'bars', 30, 2, 30, 'density', 997.0, 900.0, 1100.0, 'air_mbar', 1013.25, 800.0, 1100.0, 'offset_m', 0.0, -10.0, 50.0)),
    'ds18b20': ('ds18b20', 'DS18B20', ('onewire', 'ow'),
        ('rom', None, None, None, 'output', None, None, None)),
    'ph': ('water_quality', 'WaterQuality', ('adc0', 'adc'),
        ('type', None, None, None, 'calibration', None, None, None, 'samples', 8, 1, 64, 'noise_v', 0.05, 0.0, 3.3)),
    'turbidity': ('water_quality', 'WaterQuality', ('adc0', 'adc'),
        ('type', None, None, None, 'calibration', None, None, None, 'samples', 8, 1, 64, 'noise_v', 0.05, 0.0, 3.3)),
    'conductivity': ('water_quality', 'WaterQuality', ('adc0', 'adc'),
        ('type', None, None, None, 'calibration', None, None, None, 'samples', 8, 1, 64, 'noise_v', 0.05, 0.0, 3.3, 'temp_c', 25.0, -5.0, 60.0, 'alpha', 0.02, 0.0, 0.1)),
    'dissolved_oxygen': ('water_quality', 'WaterQuality', ('adc0', 'adc'),
        ('type', None, None, None, 'calibration', None, None, None, 'samples', 8, 1, 64, 'noise_v', 0.05, 0.0, 3.3, 'temp_c', 25.0, -5.0, 50.0)),
    'soil_moisture': ('soil_moisture', 'SoilMoisture', ('adc0', 'adc'),
        ('dry_v', None, 0.0, 3.6, 'wet_v', None, 0.0, 3.6, 'samples', 8, 1, 64, 'noise_v', 0.05, 0.0, 3.3)),
    'accel_adxl345': ('adxl345', 'ADXL345', ('i2c0', 'i2c'),
        ('addr', 83, 8, 119, 'window', 32, 4, 256)),
    'accel_mpu6050': ('mpu6050', 'MPU6050', ('i2c0', 'i2c'),
        ('addr', 104, 8, 119, 'window', 32, 4, 256)),
    'crack_gauge': ('crack_gauge', 'CrackGauge', ('adc0', 'adc'),
        ('travel_mm', 25.0, 1.0, 300.0, 'calibration', None, None, None, 'zero_mm', 0.0, -300.0, 300.0, 'samples', 9, 1, 64, 'noise_v', 0.03, 0.0, 3.3)),
    'hx711': ('hx711', 'HX711', ('hx711_sck', 'out', 'hx711_dt', 'in'),
        ('scale', None, -1000000000.0, 1000000000.0, 'tare', 0, -8388608, 8388607, 'output', None, None, None, 'samples', 4, 1, 32, 'gain', 128, 32, 128, 'sps', 10, 10, 80)),
}

_CALIBRATED = ("ph", "turbidity", "conductivity", "dissolved_oxygen", "crack_gauge")
_ADC_TYPES = ("pressure_level_ma", "ph", "turbidity", "conductivity", "dissolved_oxygen",
              "soil_moisture", "battery", "crack_gauge")
_I2C_TYPES = ("pressure_level_i2c", "accel_adxl345", "accel_mpu6050")
_HX711_OUTPUTS = ("load", "strain")
_DS18B20_OUTPUTS = ("water_temp", "air_temp")


def _is_num(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def pin_id(board, cfg, role):
    """The pin (or bus) id for a role: the config's "pins" override, else the board's."""
    pins = cfg.get("pins") or {}
    if role in pins:
        return pins[role]
    return board.PINS.get(role)


def validate(board, cfg):
    """Every problem with one sensor entry, as readable strings; empty when it is fine."""
    if not isinstance(cfg, dict):
        return ["sensor entry is not an object"]
    kind = cfg.get("type")
    name = cfg.get("name")
    where = "sensor %r" % (name,)
    if kind not in _TYPES:
        return ["%s: unknown type %r (known: %s)" % (where, kind, ", ".join(sorted(_TYPES)))]
    errors = []
    if not isinstance(name, str) or not name:
        errors.append("%s: name must be a non-empty string" % where)
    index = cfg.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index <= MAX_INDEX:
        errors.append("%s: index must be an integer 0..%d" % (where, MAX_INDEX))
    interval = cfg.get("interval_s")
    if not isinstance(interval, int) or isinstance(interval, bool) or interval < 1:
        errors.append("%s: interval_s must be a whole number of seconds >= 1" % where)
    pins = cfg.get("pins", {})
    if not isinstance(pins, dict):
        errors.append("%s: pins must be an object of role -> pin" % where)
        pins = {}
    roles = _TYPES[kind][2]
    roles = [roles[i] for i in range(0, len(roles), 2)]
    for role in roles:
        if pins.get(role, board.PINS.get(role)) is None:
            errors.append("%s: board %s has no %r pin; give one under \"pins\"" % (where, board.NAME, role))
    adc_pins = getattr(board, "ADC_PINS", None)
    if kind in _ADC_TYPES and adc_pins is not None:
        pid = pin_id(board, {"pins": pins}, roles[0])
        if pid is not None and pid not in adc_pins:
            errors.append("%s: pin %r is not ADC-capable on %s" % (where, pid, board.NAME))
    if kind in _I2C_TYPES:
        bus = pin_id(board, {"pins": pins}, roles[0])
        if bus is not None and bus not in getattr(board, "I2C", {}):
            errors.append("%s: board %s has no I2C bus %r" % (where, board.NAME, bus))
    params = _TYPES[kind][3]
    for i in range(0, len(params), 4):
        key, default, lo, hi = params[i:i + 4]
        if lo is None:
            continue
        value = cfg.get(key, default)
        if value is None:
            errors.append("%s: %s is required" % (where, key))
        elif not _is_num(value) or not lo <= value <= hi:
            errors.append("%s: %s must be a number in %r..%r, not %r" % (where, key, lo, hi, value))
    if kind in _CALIBRATED:
        errors.extend(_check_points(where, cfg.get("calibration", [])))
    if kind == "soil_moisture" and _is_num(cfg.get("dry_v")) and cfg.get("dry_v") == cfg.get("wet_v"):
        errors.append("%s: dry_v and wet_v must differ" % where)
    if kind == "hx711":
        if cfg.get("output", "load") not in _HX711_OUTPUTS:
            errors.append("%s: output must be one of %s" % (where, ", ".join(_HX711_OUTPUTS)))
        if cfg.get("scale") == 0:
            errors.append("%s: scale must not be 0" % where)
        if cfg.get("gain", 128) not in (32, 64, 128):
            errors.append("%s: gain must be 32, 64 or 128" % where)
        if cfg.get("sps", 10) not in (10, 80):
            errors.append("%s: sps must be 10 or 80 (the board's RATE pin)" % where)
    if kind == "ds18b20":
        if cfg.get("output", "water_temp") not in _DS18B20_OUTPUTS:
            errors.append("%s: output must be one of %s" % (where, ", ".join(_DS18B20_OUTPUTS)))
        rom = cfg.get("rom")
        if rom is not None and (not isinstance(rom, str) or len(rom) != 16 or not _hex_ok(rom)):
            errors.append("%s: rom must be 16 hex digits" % where)
    if kind == "ultrasonic_level" and cfg.get("min_m", 0.25) >= cfg.get("max_m", 4.5):
        errors.append("%s: min_m must be below max_m" % where)
    if kind == "pressure_level_i2c" and cfg.get("bars", 30) not in (2, 30):
        errors.append("%s: bars must be 2 (MS5837-02BA) or 30 (MS5837-30BA)" % where)
    return errors


def _hex_ok(text):
    for c in text:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def _check_points(where, points):
    if not isinstance(points, list) or len(points) > 3:
        return ["%s: calibration must be a list of at most 3 [volts, value] points" % where]
    errors = []
    xs = []
    for point in points:
        if not isinstance(point, list) or len(point) != 2 or not _is_num(point[0]) or not _is_num(point[1]):
            errors.append("%s: calibration point %r is not [volts, value]" % (where, point))
        elif point[0] in xs:
            errors.append("%s: two calibration points at %r V" % (where, point[0]))
        else:
            xs.append(point[0])
    return errors


def _objects(board, cfg, role, how):
    Pin = machine.Pin
    where = pin_id(board, cfg, role)
    if how == "in_up" and "power" in cfg:
        # The pull-up is the group's resistor on its switched rail: an internal one
        # would hold the pin high with the rail off and draw through a closed reed.
        return (Pin(where, Pin.IN),)
    if how == "in_up":
        return (Pin(where, Pin.IN, Pin.PULL_UP),)
    if how == "in":
        return (Pin(where, Pin.IN),)
    if how == "out":
        return (Pin(where, Pin.OUT, value=0),)
    if how == "i2c":
        # The board file's pins, always: without them esp32 I2C(0) takes SCL 18 / SDA 19
        # (ports/esp32/machine_i2c.h), not where the sensors are wired.
        scl, sda = board.I2C[where]
        return (machine.I2C(where, scl=Pin(scl), sda=Pin(sda)),)
    if how == "ow":
        import onewire
        return (onewire.OneWire(Pin(where, Pin.OPEN_DRAIN, Pin.PULL_UP)),)
    adc = machine.ADC(Pin(where))
    atten = getattr(board, "ADC_ATTEN", None)
    if atten is None:
        return (adc, getattr(board, "ADC_VREF", 3.3))
    # ESP32: the board file names the attenuation that gives its range. Its read_u16() is the raw
    # code (offset, bent above ~2.45 V, gain varying from chip to chip); read_uv() is calibrated
    # from eFuse (ports/esp32/machine_adc.c, v1.22-v1.28): the drivers read volts with it (vref None).
    adc.atten(getattr(machine.ADC, atten))
    return (adc, None)


def _default(board, kind, key, default):
    """A parameter the config leaves out: the battery divider is the board file's."""
    if kind == "battery" and key == "ratio":
        return getattr(board, "BATTERY_DIVIDER", default)
    return default


def _build(board, cfg):
    kind = cfg["type"]
    module, cls, roles, params = _TYPES[kind]
    args = []
    for i in range(0, len(roles), 2):
        args.extend(_objects(board, cfg, roles[i], roles[i + 1]))
    args.append(cfg.get("index", 0))
    for i in range(0, len(params), 4):
        args.append(cfg.get(params[i], _default(board, kind, params[i], params[i + 1])))
    driver = getattr(__import__("firmware.drivers." + module, None, None, (cls,)), cls)
    return driver(*args)


def make(board, cfg, power=None):
    """The Sensor for one validated entry, on its power group (firmware/power.py) if it
    names one; ValueError listing the problems if it is not valid."""
    errors = validate(board, cfg)
    if errors:
        raise ValueError("; ".join(errors))
    driver = _build(board, cfg)
    limits = []
    for code in driver.CHANNELS:
        channel = channels.BY_CODE[code]
        limits.extend((code, channel.lo, channel.hi))
    cls = RainSensor if cfg["type"] == "rain_gauge" else Sensor
    sensor = cls(cfg["name"], cfg["interval_s"], cfg.get("index", 0), driver, tuple(limits))
    if power is not None:
        sensor.powered_by(power)
    return sensor
