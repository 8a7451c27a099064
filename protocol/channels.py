"""The channel registry: what each integer code on the wire measures.

Values travel as integers scaled by the channel's decimal exponent (rain in
0.1 mm, level in mm, pH in 0.01), so they are exact and small on the wire.
Codes below 24 encode in one CBOR byte; the common quantities sit there.
A reading's key on the wire is `code + 64 * index` (see SPEC.md), so codes
stay below 64; 24..63 are free for new quantities, which append here and
never renumber. Units are SenML's (RFC 8428, RFC 8798). The limits on codes
and sensor indices are the wire format's: protocol.frame.MAX_CHANNEL and
MAX_INDEX (kept there, so a board checking its config loads no extra module).
"""

# code, name, SenML unit, decimal exponent, lowest and highest valid value
# (scaled integers, i.e. as sent).
_TABLE = (
    (1, "rain", "mm", -1, 0, 5000),
    (2, "rain_tips", "count", 0, 0, 10000),
    (3, "rain_rate", "mm/h", -1, 0, 5000),
    (4, "water_level", "m", -3, -1000, 50000),
    (5, "water_temp", "Cel", -2, -1000, 6000),
    (6, "air_temp", "Cel", -2, -5000, 6000),
    (7, "ph", "pH", -2, 0, 1400),
    (8, "turbidity", "NTU", -1, 0, 40000),
    (9, "conductivity", "S/m", -4, 0, 200000),
    (10, "dissolved_oxygen", "kg/m3", -5, 0, 5000),
    (11, "soil_moisture", "%", -1, 0, 1000),
    (12, "tilt_x", "deg", -2, -9000, 9000),
    (13, "tilt_y", "deg", -2, -9000, 9000),
    (14, "crack_width", "m", -5, -10000, 10000),
    (15, "displacement", "m", -4, -100000, 100000),
    (16, "vibration_rms", "m/s2", -3, 0, 200000),
    (17, "vibration_peak", "m/s2", -3, 0, 200000),
    (18, "strain", "/", -6, -100000, 100000),
    (19, "battery", "V", -3, 0, 20000),
    (20, "rssi", "dBm", 0, -150, 0),
    (21, "uptime", "s", 0, 0, 4294967295),
    (22, "load", "kg", -2, -1000000, 1000000),
    (23, "water_level_rate", "m/h", -3, -10000, 10000),
)


class Channel:
    """One quantity: wire code, name, SenML unit, decimal exponent, valid range."""

    def __init__(self, code, name, unit, scale, lo, hi):
        self.code = code
        self.name = name
        self.unit = unit
        self.scale = scale
        self.lo = lo
        self.hi = hi

    def to_float(self, value):
        """The physical value, in `unit`, of a scaled integer as sent."""
        return value * 10.0 ** self.scale

    def to_int(self, physical):
        """The scaled integer to send for a physical value, rounded half away from zero."""
        scaled = physical / 10.0 ** self.scale
        return int(scaled + 0.5) if scaled >= 0 else -int(-scaled + 0.5)

    def valid(self, value):
        return self.lo <= value <= self.hi

    def __repr__(self):
        return "Channel(%d, %r, %r, %d)" % (self.code, self.name, self.unit, self.scale)


BY_CODE = {}
BY_NAME = {}
for _row in _TABLE:
    _ch = Channel(*_row)
    BY_CODE[_ch.code] = _ch
    BY_NAME[_ch.name] = _ch
del _row, _ch


def get(code_or_name):
    """The Channel for a wire code or a name; KeyError names what was asked."""
    table = BY_NAME if isinstance(code_or_name, str) else BY_CODE
    try:
        return table[code_or_name]
    except KeyError:
        raise KeyError("unknown channel %r" % (code_or_name,))
