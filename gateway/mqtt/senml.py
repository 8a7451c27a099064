"""Readings as SenML JSON (RFC 8428), the open format city platforms read.

One pack per device and batch: the first record carries the base name
`urn:dev:huaico:<device_id>:` and the base time (the earliest reading, in
seconds since the Unix epoch); each record then has a name (`rain`,
`water_level`, and `water_level/1` for the second sensor of a quantity),
a SenML unit, the value and its time relative to the base time.

Values travel from the boards as integers with the channel's fixed decimal
exponent (rain in 0.1 mm is value_int=123, scale=-1). They are turned into
the float nearest to the decimal value (`float("123e-1")` = 12.3), not
multiplied (`123 * 10**-1` = 12.300000000000001), so the JSON shows what
the sensor said.

A reading whose quality is not ok is still sent, with a `q` field holding
the quality code. `q` is a plain extension label, not `q_`: RFC 8428 §4.4
reserves labels ending in "_" for must-understand extensions, which a
receiver that does not know them MUST reject the whole pack for; a quality
hint must not make a platform drop good readings of the same pack, so `q`
is one that receivers ignore when they do not know it (§12.3.1, §4.4). It
is not registered in the IANA SenML Labels registry (§12.2).

The base name uses an unregistered `urn:dev` subtype (RFC 9039 registers
mac, ow, org, os, ops); `urn:dev:org:<PEN>-...` needs an IANA private
enterprise number that the project does not have.

Units go out as primary SenML units only, so that a pack needs no version
above the default 10: RFC 8798's secondary units (mm, mm/h, m/h, dBm,
"/100") are allowed only in packs with bver 26 or later (RFC 9100 §4), and
"%" is in neither registry ("/" is the ratio unit). The registry's
millimetres become metres, rates metres per second, percentages ratios and
dBm dBW, each converted in decimal so the JSON shows the exact value. NTU is
a registered primary unit (IANA SenML Units, from ISO 7027-1:2016).

Channels are looked up through a mapping or a callable, code ->
(name, unit, scale), so this module does not depend on the channel
registry's module.
"""
import json
import math
import re
from decimal import Decimal

BASE_PREFIX = "urn:dev:huaico:"
CONTENT_TYPE = "application/senml+json"
# SenML reads a time below 2**28 as relative to "now" (RFC 8428 §4.5.3), so
# an absolute time that small (before mid-1978) would be misread.
_MIN_ABSOLUTE_TIME = 2 ** 28
_QUALITY_OK = (0, None, "ok")
# RFC 8428 §4.5.1: what a resolved name (base name + name) may contain.
_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9:./_-]*\Z")


class SenMLError(ValueError):
    """A reading that cannot be expressed; names the device and the cause."""

    def __init__(self, device_id, reason):
        ValueError.__init__(self, "device %s: %s" % (device_id, reason))
        self.device_id = device_id
        self.reason = reason


# Registry unit -> (primary SenML unit, decimal shift, divisor, offset):
# primary = value * 10**shift / divisor + offset.
_PRIMARY = {
    "mm": ("m", -3, 1, 0),
    "mm/h": ("m/s", -3, 3600, 0),
    "m/h": ("m/s", 0, 3600, 0),
    "%": ("/", -2, 1, 0),
    "dBm": ("dBW", 0, 1, -30),
}


def scaled(value_int, scale):
    """The float nearest to value_int * 10**scale, computed in decimal."""
    return float("%de%d" % (value_int, scale))


def primary(unit, value_int, scale):
    """(SenML primary unit, float value) for a scaled integer in a registry unit."""
    if unit not in _PRIMARY:
        return unit, scaled(value_int, scale)
    unit, shift, divisor, offset = _PRIMARY[unit]
    if divisor == 1 and offset == 0:
        return unit, scaled(value_int, scale + shift)
    return unit, float(Decimal(value_int).scaleb(scale + shift) / divisor + offset)


def _lookup(channels):
    if callable(channels) and not hasattr(channels, "__getitem__"):
        return channels
    return channels.__getitem__


def readings_pack(device_id, rows, channels):
    """SenML pack (a list of dicts) for rows of
    (channel_code, index, time, value_int, quality); `channels` maps or
    returns code -> (name, unit, scale). Raises SenMLError."""
    rows = list(rows)
    if not rows:
        return []
    lookup = _lookup(channels)
    base_time = min(row[2] for row in rows)
    if isinstance(base_time, bool) or not isinstance(base_time, (int, float)) \
            or base_time < _MIN_ABSOLUTE_TIME:
        raise SenMLError(device_id, "time %r is not an absolute epoch time" % (base_time,))
    base_name = "%s%s:" % (BASE_PREFIX, device_id)
    pack = []
    for code, index, time, value_int, quality in rows:
        try:
            name, unit, scale = lookup(code)
        except (KeyError, LookupError, TypeError, ValueError):
            raise SenMLError(device_id, "unknown channel %r" % (code,)) from None
        if isinstance(value_int, bool) or not isinstance(value_int, int):
            raise SenMLError(device_id, "channel %s value %r is not an integer" % (name, value_int))
        record = {"n": name if not index else "%s/%d" % (name, index)}
        if not _NAME.match(base_name + record["n"]):
            raise SenMLError(device_id, "name %r has characters SenML does not allow"
                             % (base_name + record["n"]))
        unit, value = primary(unit, value_int, scale)
        if unit:
            record["u"] = unit
        record["v"] = value
        if math.isinf(record["v"]):
            raise SenMLError(device_id, "channel %s value %de%d overflows a float"
                             % (name, value_int, scale))
        if time != base_time:
            record["t"] = time - base_time
        if quality not in _QUALITY_OK:
            record["q"] = quality
        pack.append(record)
    pack[0] = dict({"bn": base_name, "bt": base_time}, **pack[0])
    return pack


def senml_json(pack):
    """The pack as compact UTF-8 JSON bytes (media type application/senml+json)."""
    return json.dumps(pack, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
