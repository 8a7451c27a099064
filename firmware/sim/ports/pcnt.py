"""esp32.PCNT's counter, in the hardware process: one pulse-counter unit as ports/esp32/esp32_pcnt.c drives it.

The keyword rules and their errors are esp32_pcnt.c's (v1.26.0-v1.28.0, unchanged since it
first came in v1.26.0; firmware/sim/ports/esp32.py pcnt_unit checks the unit id). What the
counter does is the ESP32 PCNT's (ESP32 TRM, "Pulse Count Controller"): each channel adds or
subtracts on the edges of its pin, and the glitch filter drops pulses shorter than `filter`
APB cycles at 80 MHz, at most 1023 (12.79 us). The unit counts only once start() was called
(the port pauses it at PCNT(id) and deinit()), and not while the chip is in light sleep:
"digital peripherals ... are clock-gated" there (ESP-IDF Sleep Modes), and the PCNT runs from
APB_CLK. At `max` (or `min`) the counter returns to 0; with neither it wraps as the 16-bit counter.
A unit is one per id, as the port's singleton is, until the next boot.
"""
from firmware.sim import bus, hwclock, io

_APB_HZ = 80000000
_KEYS = ("channel", "pin", "rising", "falling", "mode_pin", "mode_low", "mode_high", "min", "max", "filter",
         "threshold0", "threshold1", "value")
_COUNT_MAX = 3  # PCNT_COUNT_DIS, _INC, _DEC
_MODE_MAX = 3  # PCNT_MODE_KEEP, _REVERSE, _DISABLE


def _int(value):
    # mp_obj_get_int: an int (a bool is one), else TypeError.
    if not isinstance(value, int):
        raise TypeError("can't convert %s to int" % type(value).__name__)
    return value


def _pin_id(pin):
    return pin.id if isinstance(pin, io.Pin) else _int(pin)


def _unbound():
    """Both channels with no pin, ignoring edges: [pin, rising, falling, mode pin, mode_low, mode_high]."""
    return [[None, 0, 0, None, 0, 0], [None, 0, 0, None, 0, 0]]


def PCNT(unit, **kwargs):
    """esp32.PCNT(id, **kwargs): the unit, made at its first use, (re)initialised with kwargs."""
    for made in io.counters:
        if made.unit == unit:
            made.init(kwargs)
            return made
    made = _Unit(unit)
    io.counters.append(made)
    made.init(kwargs)
    return made


class _Unit:
    def __init__(self, unit):
        self.unit = unit
        self.channels = _unbound()
        self.filter_us = 0
        self.limits = [0, 0]
        self.count = 0
        self.running = False
        self.last = {}  # pin id -> [scenario us of its last edge, that edge's step]

    def init(self, kwargs):
        for key in kwargs:
            if key not in _KEYS:
                raise TypeError("extra keyword arguments given")
        channel = _int(kwargs.get("channel", 0))
        if not 0 <= channel < 2:
            raise ValueError("channel")  # PCNT_CHANNEL_MAX
        ch = self.channels[channel]
        if "pin" in kwargs or "mode_pin" in kwargs:
            if "pin" not in kwargs:
                raise ValueError("pin")
            ch[0] = None if kwargs["pin"] is None else _pin_id(kwargs["pin"])
            mode_pin = kwargs.get("mode_pin")
            ch[3] = None if mode_pin is None else _pin_id(mode_pin)
        if any(k in kwargs for k in ("rising", "falling", "mode_low", "mode_high")):
            values = [_int(kwargs.get(k, 0)) for k in ("rising", "falling", "mode_low", "mode_high")]
            for name, v, top in zip(("rising", "falling", "mode_low", "mode_high"), values,
                                    (_COUNT_MAX, _COUNT_MAX, _MODE_MAX, _MODE_MAX)):
                if not 0 <= v < top:  # mp_uint_t: a negative one is huge
                    raise ValueError(name)
            ch[1], ch[2], ch[4], ch[5] = values
        if "filter" in kwargs:
            ticks = _int(kwargs["filter"])
            if not 0 <= ticks <= 1023:
                raise ValueError("filter")
            self.filter_us = ticks * 1000000 / _APB_HZ
        clear = False
        if "value" in kwargs:
            if _int(kwargs["value"]) != 0:
                raise ValueError("value")
            clear = True
        for key, low, high, name in (("min", -32768, 0, "minimum"), ("max", 0, 32767, "maximum"),
                                     ("threshold0", -32768, 32767, "threshold0"),
                                     ("threshold1", -32768, 32767, "threshold1")):
            if key in kwargs:
                v = _int(kwargs[key])
                if not low <= v <= high:
                    raise ValueError(name)
                if key in ("min", "max"):
                    self.limits[key == "max"] = v
                clear = True
        if clear:
            self.count = 0

    def value(self, v=None):
        if v is not None and _int(v) != 0:
            raise ValueError("value")
        now = self.count
        if v is not None:
            self.count = 0
        return now

    def start(self):
        self.running = True

    def stop(self):
        self.running = False

    def deinit(self):
        self.channels = _unbound()
        self.filter_us = 0
        self.running = False
        self.count = 0

    def edge(self, pin_id, level):
        """Pin pin_id changed to level (io.fire): count it, unless the chip sleeps or it is a glitch."""
        if not self.running or io.gated[0]:
            return
        at = bus.edge_us[0]
        at = hwclock.now_us() if at is None else at
        last = self.last.get(pin_id)
        if last is not None and at - last[0] < self.filter_us:
            # The pulse that this edge ends was shorter than the filter: neither edge counts.
            self._add(-last[1])
            self.last[pin_id] = [at, 0]
            return
        step = 0
        for ch in self.channels:
            if ch[0] == pin_id:
                step += self._step(ch, level)
        self.last[pin_id] = [at, step]
        self._add(step)

    def _step(self, ch, level):
        step = (0, 1, -1)[ch[1] if level else ch[2]]
        if ch[3] is not None:
            mode = ch[5] if io.level(ch[3]) else ch[4]
            step = (step, -step, 0)[mode]
        return step

    def _add(self, step):
        count = self.count + step
        low, high = self.limits
        if (high and count >= high) or (low and count <= low):
            count = 0
        elif count > 32767:
            count = -32768
        elif count < -32768:
            count = 32767
        self.count = count
