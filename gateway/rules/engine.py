"""The rule engine: turns readings into alert levels, inside the writer's transaction.

A rule watches one channel of one device, of every device of a site, or of
every device, and has up to four levels (advisory < watch < warning <
emergency) with thresholds in physical units (mm, m, V ...; converted with
the channel's decimal exponent). Kinds:

    above / below   the newest reading against the thresholds
    accumulation    sum of the readings in the last `window_s` (rain: each
                    reading is the amount fallen in its interval)
    rise            newest value minus the lowest in the last `window_s`
    battery         `below` on the battery channel (volts)
    quality         a reading flagged stuck / no_return / ... (value 1) or ok (0)
    silent          seconds since the device was last heard (checked by tick)
    intensity-duration
                    the largest ratio of the mean rain intensity over a set of
                    durations to a curve alpha * D^-beta (gateway/rules/rain_thresholds.py),
                    lowered on wet days by an antecedent precipitation index
                    over daily totals; levels are multipliers of the curve
    k-of-n          over the gauges of a site (or every device): the k-th
                    highest accumulation in `window_s` among the gauges
                    known, so k gauges must reach a level (gateway/rules/basin.py)
    basin-mean      the mean accumulation of the known gauges

A gauge of a k-of-n or basin-mean rule is unknown when its newest reading
of the channel is flagged or older than `stale_s` (default: the window);
when fewer than k are known the rule holds its level (silence must not
clear an evacuation) and raises a quality-style alert at advisory level,
kind "quality", so that the groups whose min_level is advisory (the
operators) hear that the basin is not watched; it clears when enough gauges
are heard again.

A level is entered when its threshold has been met for `min_duration_s`
(reading time) and left when the value falls below threshold - hysteresis
(above threshold + hysteresis for below/battery). Windows hold only readings
whose quality is ok, except for `quality` rules which look at nothing else.

Order: the rules see a writer batch's readings of a device sorted by reading
time (arrival order for equal times), batches in the order they were
committed. A point rule (above, below, battery, quality)
acts on the newest reading by reading time; an older one that comes later
(a backlog) goes into windows but does not move a point rule back in time.
No reading can pin a tracker: the store restamps readings from the future
(gateway/store/writer.py), and a tracker whose newest time lies beyond the
gateway's trusted clock plus clock.FUTURE_TOLERANCE_S (stored before that
check existed, or by a gateway whose clock was wrong) forgets those
readings before it takes the next one (Tracker.unpin, logged).

Each (rule, device, index) has a Tracker: its window (kept incrementally:
a running sum and a monotonic deque for the minimum) and level state. The
level, its alert and the minimum-duration clocks are stored in alert_state in
the same transaction as the readings, so after a restart an active alert is
neither sent again nor forgotten, and a minimum duration that runs out
without a new reading fires at the next tick (tick loads the trackers
whose clocks are due); the window itself is rebuilt from the readings
table on first use, since the readings are the record anyway.
"""
import bisect
import collections
import difflib
import json
import logging
import re
import types

from huaico.clock import FUTURE_TOLERANCE_S
from huaico.protocol import channels
from huaico.protocol.frame import MAX_INDEX, Q_OK
from huaico.rules import basin, rain_thresholds, store as engine_store

LEVELS = ("advisory", "watch", "warning", "emergency")
KINDS = ("above", "below", "accumulation", "rise", "battery", "quality", "silent",
         "intensity-duration", "k-of-n", "basin-mean")
WINDOW_KINDS = ("accumulation", "rise", "intensity-duration")
BASIN_KINDS = ("k-of-n", "basin-mean")
_DESCENDING = ("below", "battery")
_DEFAULT_CHANNEL = {"battery": "battery", "intensity-duration": "rain"}
# Days of daily totals behind the antecedent precipitation index: with k at
# 0.9 a day 30 days back weighs 0.04, beyond which the index forgets.
ANTECEDENT_DAYS = 30
DAY_S = 86400
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}

log = logging.getLogger("huaico.rules")


class RuleError(ValueError):
    """A rule definition that cannot work; the message names the field."""


def parse_duration(text):
    """Seconds from "90", "90s", "10m", "1h", "24h", "2d"."""
    if isinstance(text, (int, float)):
        return int(text)
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(s|m|min|h|d)?\s*", str(text))
    if not match:
        raise RuleError("duration %r: use e.g. 90s, 10m, 1h, 24h" % (text,))
    return int(float(match.group(1)) * _UNITS[match.group(2) or "s"])


def parse_levels(text, kind):
    """{"watch": 20.0, ...} from "watch=20,warning=40" (silent: durations)."""
    levels = {}
    for part in filter(None, (p.strip() for p in str(text).split(","))):
        name, sep, value = part.partition("=")
        name = name.strip()
        if name not in LEVELS:
            raise RuleError("level %r: one of %s" % (name, ", ".join(LEVELS)))
        if not sep:
            if kind != "quality":
                raise RuleError("level %r needs a threshold (%s=NUMBER)" % (name, name))
            value = "1"
        try:
            levels[name] = float(parse_duration(value) if kind == "silent" else value)
        except ValueError:
            raise RuleError("level %s: %r is not a number" % (name, value)) from None
    return levels


class Rule:
    """One rule as stored in the rules table, checked."""

    FIELDS = ("id", "name", "kind", "device", "site", "channel", "idx", "window_s", "levels",
              "hysteresis", "min_duration_s", "bucket_mm", "place", "enabled", "params",
              "updated")

    def __init__(self, name, kind, levels, device=None, site=None, channel=None, idx=None,
                 window_s=0, hysteresis=0.0, min_duration_s=0, bucket_mm=None, place=None,
                 enabled=1, params=None, id=None, updated=None):
        self.id = id
        self.name = name
        self.kind = kind
        self.device = device or None
        self.site = site or None
        self.channel = channel or _DEFAULT_CHANNEL.get(kind)
        self.idx = idx
        self.window_s = int(window_s or 0)
        self.levels = dict(levels)
        self.hysteresis = float(hysteresis or 0)
        self.min_duration_s = int(min_duration_s or 0)
        self.bucket_mm = bucket_mm
        self.place = place or None
        self.enabled = 1 if enabled else 0
        self.updated = updated
        self.params = dict(params or {})
        self._check()
        self._check_params()
        if self.kind != "silent":
            self._channel = channels.get(self.channel)
            self.code = self._channel.code
            if self.channel == "rain_tips":
                self.unit = "mm"
                self._factor = float(self.bucket_mm)
            else:
                self.unit = self._channel.unit
                self._factor = 10.0 ** self._channel.scale
            if self.kind == "intensity-duration":
                self.unit = "x curve"
        else:
            self.code = None
            self.unit = "s"
            self._factor = 1.0
        # Levels in order with thresholds negated for descending kinds, so
        # that the state machine only ever asks "value >= threshold".
        sign = -1.0 if self.kind in _DESCENDING else 1.0
        self.sign = sign
        self.thresholds = [(LEVELS.index(name), sign * value)
                           for name, value in sorted(self.levels.items(),
                                                     key=lambda item: LEVELS.index(item[0]))]

    def _check(self):
        if not self.name or not re.fullmatch(r"[A-Za-z0-9_.:-]+", self.name):
            raise RuleError("name %r: letters, digits and _ . : - only" % (self.name,))
        if self.kind not in KINDS:
            raise RuleError("kind %r: one of %s" % (self.kind, ", ".join(KINDS)))
        if self.device and self.site:
            raise RuleError("give --device or --site, not both")
        if not self.levels:
            raise RuleError("levels: at least one, e.g. watch=20,warning=40")
        if self.kind != "silent":
            if not self.channel:
                raise RuleError("channel: required for a %s rule" % self.kind)
            try:
                channels.get(self.channel)
            except KeyError as exc:
                raise RuleError(exc.args[0] + closest(self.channel, channels.BY_NAME)) from None
            if self.channel == "rain_tips" and not self.bucket_mm:
                raise RuleError("bucket_mm: rain_tips counts need the bucket size in mm")
        if self.kind in ("accumulation", "rise") and self.window_s <= 0:
            raise RuleError("window: a %s rule needs one, e.g. 1h" % self.kind)
        if self.hysteresis < 0 or self.min_duration_s < 0:
            raise RuleError("hysteresis and min-duration must not be negative")
        if self.idx is not None and not 0 <= int(self.idx) <= MAX_INDEX:
            raise RuleError("index must be 0..%d" % MAX_INDEX)
        ordered = [self.levels[name] for name in LEVELS if name in self.levels]
        rising = self.kind not in _DESCENDING
        if any((b <= a) if rising else (b >= a) for a, b in zip(ordered, ordered[1:])):
            raise RuleError("levels: thresholds must %s from advisory to emergency"
                            % ("rise" if rising else "fall"))

    def _check_params(self):
        """The parameters of intensity-duration and basin kinds; sets
        alpha, beta, durations, antecedent, k and stale_s, and window_s for
        an intensity-duration rule (its longest duration)."""
        params = self.params
        allowed = {"intensity-duration": ("preset", "alpha", "beta", "durations", "antecedent"),
                   "k-of-n": ("k", "stale_s"), "basin-mean": ("k", "stale_s")}.get(self.kind, ())
        unknown = sorted(set(params) - set(allowed))
        if unknown:
            raise RuleError("%s: not a parameter of a %s rule%s" % (
                ", ".join(unknown), self.kind, " (%s)" % ", ".join(allowed) if allowed else ""))
        self.history_s = self.window_s
        if self.kind == "intensity-duration":
            preset = params.get("preset")
            if preset is not None:
                if preset not in rain_thresholds.PRESETS:
                    raise RuleError("preset %r: one of %s"
                                    % (preset, ", ".join(sorted(rain_thresholds.PRESETS))))
                alpha, beta, _ = rain_thresholds.PRESETS[preset]
                if "alpha" in params or "beta" in params:
                    raise RuleError("give a preset or alpha and beta, not both")
            else:
                if "alpha" not in params or "beta" not in params:
                    raise RuleError("alpha and beta (or a preset such as caine1980) are needed")
                alpha, beta = params["alpha"], params["beta"]
            try:
                self.durations = rain_thresholds.check(float(alpha), float(beta),
                                                       params.get("durations") or ())
            except (rain_thresholds.ThresholdError, TypeError, ValueError) as exc:
                raise RuleError(str(exc)) from None
            self.alpha, self.beta = float(alpha), float(beta)
            self.window_s = self.durations[-1]
            self.history_s = self.window_s
            self.antecedent = params.get("antecedent")
            if self.antecedent is not None:
                try:
                    k = float(self.antecedent["k"])
                    saturation = float(self.antecedent["saturation_mm"])
                    floor = float(self.antecedent.get("floor", 0.5))
                except (KeyError, TypeError, ValueError):
                    raise RuleError("antecedent: needs k, saturation_mm and optionally floor, "
                                    "e.g. k=0.9,saturation_mm=150,floor=0.5") from None
                if not (0 < k < 1 and saturation > 0 and 0 < floor <= 1):
                    raise RuleError("antecedent: 0 < k < 1, saturation_mm > 0, 0 < floor <= 1")
                self.antecedent = {"k": k, "saturation_mm": saturation, "floor": floor}
                self.history_s = max(self.window_s, (ANTECEDENT_DAYS + 1) * DAY_S)
        elif self.kind in BASIN_KINDS:
            if self.device:
                raise RuleError("a %s rule watches the gauges of a site (--site) or of every "
                                "device, not one device" % self.kind)
            if self.window_s <= 0:
                raise RuleError("window: a %s rule needs one, e.g. 1h" % self.kind)
            k = params.get("k", 1)
            if isinstance(k, bool) or not isinstance(k, int) or k < 1:
                raise RuleError("k %r: how many gauges must agree, 1 or more" % (k,))
            self.k = k
            self.stale_s = int(params.get("stale_s") or self.window_s)
            self.history_s = max(self.window_s, self.stale_s)

    def weight(self, daily, latest):
        """The factor (<= 1) wet ground puts on the curve at `latest`, from
        `daily` (UTC day -> scaled rain total); 1 without an antecedent term."""
        if self.antecedent is None:
            return 1.0
        day = latest // DAY_S
        api = rain_thresholds.antecedent_index(
            [self.physical(daily.get(d, 0)) for d in range(day - ANTECEDENT_DAYS, day)],
            self.antecedent["k"])
        return rain_thresholds.wet_factor(api, self.antecedent["saturation_mm"],
                                          self.antecedent["floor"])

    def physical(self, value):
        """A scaled integer (or a sum of them) in the rule's unit."""
        return value * self._factor

    def matches(self, device):
        if self.device is not None:
            return device.get("name") == self.device or device.get("id") == self.device
        if self.site is not None:
            return site_key(device.get("site")) == site_key(self.site)
        return True

    def to_row(self):
        row = {name: getattr(self, name) for name in self.FIELDS if name not in ("id", "updated")}
        row["levels"] = json.dumps(self.levels)
        row["params"] = json.dumps(self.params, sort_keys=True)
        return row

    @classmethod
    def from_row(cls, row):
        row = dict(row)
        row["levels"] = json.loads(row["levels"])
        row["params"] = json.loads(row.get("params") or "{}")
        row.pop("created", None)
        return cls(**row)

    def describe(self):
        """One line for people: what the rule watches and when it fires."""
        where = ("device %s" % self.device if self.device else
                 "site %s" % self.site if self.site else "every device")
        what = self.channel or "last heard"
        if self.idx is not None:
            what += "[%d]" % self.idx
        op = "<=" if self.kind in _DESCENDING else ">="
        window = " over %ss" % self.window_s if self.kind in WINDOW_KINDS + BASIN_KINDS else ""
        if self.kind == "intensity-duration":
            window = " I >= %g D^-%g over %s%s" % (
                self.alpha, self.beta, ",".join("%ds" % d for d in self.durations),
                " wet-day term k=%(k)g saturation %(saturation_mm)g mm floor %(floor)g"
                % self.antecedent if self.antecedent else "")
        elif self.kind in BASIN_KINDS:
            window += " (%d gauge(s) known at least, stale after %ds)" % (self.k, self.stale_s)
        levels = ", ".join("%s %s %g" % (name, op, self.levels[name])
                           for name in LEVELS if name in self.levels)
        return "%s %s of %s%s: %s" % (self.kind, what, where, window, levels)


def closest(name, choices):
    """"; did you mean ...?" with the nearest of `choices`, or ""."""
    near = difflib.get_close_matches(str(name), sorted(map(str, choices)), n=3, cutoff=0.5)
    return "; did you mean %s?" % " or ".join(repr(c) for c in near) if near else ""


def check_targets(conn, rule):
    """Refuse a rule that points at nothing: an unknown device or site
    (closest names suggested). Sites compare by site_key(); the rule's site
    is then spelled as its devices spell it, for messages and listings."""
    devices = [(d["id"], d["name"], d["site"]) for d in engine_store.of(conn).devices()]
    if rule.device is not None:
        if not any(rule.device in (ident, name) for ident, name, _ in devices):
            raise RuleError("no device %r%s (see `huaico device list`)" % (
                rule.device, closest(rule.device, [name for _, name, _ in devices])))
    if rule.site is not None:
        sites = {site_key(site): site for _, _, site in devices if site}
        if site_key(rule.site) not in sites:
            raise RuleError("no device at site %r%s" % (
                rule.site, closest(site_key(rule.site), sites) or
                (" (sites: %s)" % ", ".join(sorted(sites.values())) if sites else
                 " (no device has a site yet)")))
        rule.site = sites[site_key(rule.site)]
    if rule.kind in BASIN_KINDS:
        gauges = sum(1 for ident, name, site in devices
                     if rule.matches({"id": ident, "name": name, "site": site}))
        if rule.k > gauges:
            raise RuleError("k %d: %s has only %d device(s); k of n needs k <= n" % (
                rule.k, "site %s" % rule.site if rule.site else "the gateway", gauges))


def site_key(site):
    """A site name as rules match it: case and spacing do not count
    ("San Antonio", "san  antonio " and "SAN ANTONIO" are one site)."""
    return " ".join(str(site).split()).casefold() if site else None


class Window:
    """Readings (time, value) in (latest - span, latest], kept sorted by
    time (equal times in arrival order), with their sum and, for rises, a
    monotonic deque of candidates for the minimum."""

    def __init__(self, span):
        self.span = span
        self.items = collections.deque()
        self.total = 0
        self._mins = collections.deque()

    def add(self, t, v):
        self.total += v
        if not self.items or t >= self.items[-1][0]:
            self.items.append((t, v))
            while self._mins and self._mins[-1][1] >= v:
                self._mins.pop()
            self._mins.append((t, v))
            return
        # A late reading (a board's backlog after an outage): rare, so the
        # O(n) insert and rebuild are fine.
        items = list(self.items)
        items.insert(bisect.bisect_right([item[0] for item in items], t), (t, v))
        self.items = collections.deque(items)
        self._rebuild_mins()

    def _rebuild_mins(self):
        self._mins.clear()
        for item in self.items:
            while self._mins and self._mins[-1][1] >= item[1]:
                self._mins.pop()
            self._mins.append(item)

    def trim(self, latest):
        edge = latest - self.span
        while self.items and self.items[0][0] <= edge:
            self.total -= self.items.popleft()[1]
        while self._mins and self._mins[0][0] <= edge:
            self._mins.popleft()

    def drop_after(self, limit):
        """Forget the readings stamped after limit; returns them."""
        dropped = []
        while self.items and self.items[-1][0] > limit:
            dropped.append(self.items.pop())
            self.total -= dropped[-1][1]
        self._rebuild_mins()
        return dropped

    def newest(self):
        return self.items[-1][1]

    def minimum(self):
        return self._mins[0][1]


class Tracker:
    """One rule on one subject (device, index): window and level state.

    level is an index into LEVELS, -1 when nothing is raised; since maps a
    level index to the time its threshold began to be met continuously."""

    def __init__(self, rule, level=-1, since=None, alert_id=None):
        self.rule = rule
        self.level = level
        self.since = dict(since or {})
        self.alert_id = alert_id
        self.latest = None
        self.value = None
        self.window = Window(rule.window_s) if rule.kind in WINDOW_KINDS else None
        # intensity-duration: one running window per duration (the last is
        # self.window), so that a reading costs O(durations), not a pass
        # over a day of readings (measured here with 1-minute rain and
        # durations up to 24 h: 15 us a reading against 204 us).
        self.spans = ([Window(d) for d in rule.durations[:-1]] + [self.window]
                      if rule.kind == "intensity-duration" else [])
        # Daily rain totals (UTC day -> scaled sum) for the antecedent index,
        # and the curve's factor for the day it was worked out for.
        self.daily = {}
        self._weight = None

    def _window_value(self):
        rule = self.rule
        window = self.window
        if rule.kind == "accumulation":
            return rule.physical(window.total)
        if rule.kind == "rise":
            return rule.physical(window.newest() - window.minimum())
        day = self.latest // DAY_S
        if self._weight is None or self._weight[0] != day:
            self._weight = (day, rule.weight(self.daily, self.latest))
        factor = self._weight[1]
        # The ratio is linear in the rain: over scaled integers, times the
        # unit, it is the ratio over millimetres (as rain_thresholds.exceedance).
        return rule.physical(max(span.total / (span.span / 3600.0)
                                 / (rain_thresholds.curve(rule.alpha, rule.beta,
                                                          span.span / 3600.0) * factor)
                                 for span in self.spans))

    def _count_day(self, t, v):
        if self.rule.kind != "intensity-duration" or self.rule.antecedent is None:
            return
        day = t // DAY_S
        self.daily[day] = self.daily.get(day, 0) + v
        if day < self.latest // DAY_S:
            self._weight = None  # a late reading of an earlier day
        horizon = self.latest // DAY_S - ANTECEDENT_DAYS
        for old in [d for d in self.daily if d < horizon]:
            del self.daily[old]

    def add(self, t, v):
        """Take a reading (scaled integer, or 0/1 for quality rules) without
        evaluating; returns the rule's value now, or None when a point
        reading was older than the newest seen (it changes nothing)."""
        newest = self.latest is None or t >= self.latest
        if newest:
            self.latest = t
        if self.window is not None:
            self._count_day(t, v)
            for span in self.spans[:-1]:
                span.add(t, v)
                span.trim(self.latest)
            self.window.add(t, v)
            self.window.trim(self.latest)
            self.value = self._window_value()
        elif newest:
            self.value = float(v) if self.rule.kind == "quality" else self.rule.physical(v)
        else:
            return None
        return self.value

    def unpin(self, limit):
        """Forget readings stamped after `limit` (the gateway's trusted time
        plus the tolerance), which would otherwise outrank every real
        reading; True when there were any."""
        if self.latest is None or self.latest <= limit:
            return False
        if self.window is None:
            self.latest = None
            return True
        # The daily totals lose the days after limit's and what the window
        # still held of its day (a reading pinned years ahead had pushed
        # the rest of them out of the window long before).
        for span in self.spans[:-1]:
            span.drop_after(limit)
        for t, v in self.window.drop_after(limit):
            if t // DAY_S in self.daily:
                self.daily[t // DAY_S] -= v
        for day in [d for d in self.daily if d > limit // DAY_S]:
            del self.daily[day]
        self._weight = None
        items = self.window.items
        self.latest = items[-1][0] if items else None
        self.value = self._window_value() if items else None
        return True

    def feed(self, t, v):
        """add() then evaluate at the newest time; returns transitions."""
        if self.add(t, v) is None:
            return []
        return self.step(self.value, self.latest)

    def step(self, value, t):
        """Move the level for `value` at time `t`; returns [(old, new)] (one
        pair or none), level indexes with -1 for none."""
        rule = self.rule
        signed = rule.sign * value
        held = -1
        up = -1
        for level, threshold in rule.thresholds:
            if signed >= threshold:
                start = self.since.setdefault(level, t)
                if t - start >= rule.min_duration_s:
                    up = level
            else:
                self.since.pop(level, None)
            if level <= self.level and signed >= threshold - rule.hysteresis:
                held = level
        new = max(up, held)
        if new == self.level:
            return []
        old, self.level = self.level, new
        return [(old, new)]

    def due(self, now):
        """A level whose minimum duration has passed by wall-clock `now`
        while no reading came (tick); returns transitions like step()."""
        if self.value is None or not self.since:
            return []
        return self.step(self.value, max(now, self.latest or now))


class Basin:
    """The gauges of a k-of-n or basin-mean rule: per gauge (device id) a
    window of its ok readings and its newest reading of any quality, and
    the basin's time `latest`, the newest reading time of any gauge (or the
    gateway's time at a tick), to which every window is trimmed.

    The level state lives in `tracker` (a Tracker without a window, fed the
    basin's value) and the coverage state in `cover` (a Tracker whose level
    is advisory while fewer than k gauges are known)."""

    def __init__(self, rule, members, tracker, cover):
        self.rule = rule
        self.members = list(members)
        self.tracker = tracker
        self.cover = cover
        self.windows = {}
        self.newest = {}
        self.latest = None
        self.known = 0

    def add(self, device_id, t, v, ok):
        """Take one reading of a gauge (scaled integer; ok: quality is ok)."""
        if device_id not in self.members:
            self.members.append(device_id)
        seen = self.newest.get(device_id)
        if seen is None or t >= seen[0]:
            self.newest[device_id] = (t, ok)
        if ok:
            window = self.windows.get(device_id)
            if window is None:
                window = self.windows[device_id] = Window(self.rule.window_s)
            window.add(t, v)
        if self.latest is None or t > self.latest:
            self.latest = t

    def totals(self, at):
        """Each member's accumulation (rule unit) at `at`, None when unknown."""
        rule = self.rule
        out = []
        for device_id in self.members:
            seen = self.newest.get(device_id)
            window = self.windows.get(device_id)
            if window is not None:
                window.trim(at)
            if seen is None or not seen[1] or seen[0] <= at - rule.stale_s or seen[0] > at:
                out.append(None)
            else:
                out.append(rule.physical(window.total if window is not None else 0))
        return out

    def value(self, at):
        """(value, known) at time `at`: the k-th highest known accumulation
        (k-of-n) or the known gauges' mean (basin-mean); value is None when
        fewer than k gauges are known."""
        rule = self.rule
        totals = self.totals(at)
        if rule.kind == "basin-mean":
            mean, known = basin.basin_mean(totals)
            return (mean if known >= rule.k else None), known
        # A gauge's level by its own total, for basin.k_of_n; the value
        # that the state machine (hysteresis, minimum duration) follows is
        # the k-th highest total, which meets a threshold exactly when k
        # gauges do.
        levels = [None if total is None else
                  max([level for level, threshold in rule.thresholds if total >= threshold],
                      default=-1) for total in totals]
        _, short = basin.k_of_n(levels, rule.k)
        known = sorted((total for total in totals if total is not None), reverse=True)
        return (None if short else known[rule.k - 1]), len(known)

    def unpin(self, limit):
        """Forget readings stamped after `limit`; True when there were any."""
        if self.latest is None or self.latest <= limit:
            return False
        for window in self.windows.values():
            window.drop_after(limit)
        self.newest = {key: seen for key, seen in self.newest.items() if seen[0] <= limit}
        self.latest = max((seen[0] for seen in self.newest.values()), default=None)
        return True


def level_name(index):
    return LEVELS[index] if index >= 0 else ""


def level_index(name):
    return LEVELS.index(name) if name else -1


class RuleEngine:
    """Evaluates the stored rules; see the module docstring.

    on_frames() is called by the writer inside its transaction with the
    batch's new frames, before their readings are inserted (later in the
    same transaction); on_readings() is the same for one frame whose rows
    are in the table already. Both write alert_state, alerts and outbox
    rows on that same connection and never commit."""

    def __init__(self, database, config, observer=None, clock=None):
        from huaico.alerts import lifecycle as alerts  # alerts imports LEVELS from here
        self._alerts = alerts
        self.database = database
        self.config = config
        self.observer = observer
        # The gateway's clock (huaico.clock): trackers are unpinned only
        # against a time it trusts; without one, `now` is taken as right.
        self.clock = clock
        self._rules = []
        self._stamp = None
        self._trackers = {}

    # -- rules ---------------------------------------------------------------

    def rules(self, conn):
        """The enabled rules, reloaded when the rules table has changed."""
        store = engine_store.of(conn)
        stamp = store.rules_stamp()
        if stamp != self._stamp:
            fresh = [Rule.from_row(row) for row in store.enabled_rules()]
            known = {rule.id: rule.updated for rule in fresh}
            # Trackers of a changed or removed rule start again from history.
            self._trackers = {key: tracker for key, tracker in self._trackers.items()
                              if known.get(key[0]) == tracker.rule.updated}
            self._rules = fresh
            self._stamp = stamp
        return self._rules

    # -- readings ------------------------------------------------------------

    def on_readings(self, conn, device, rows, now):
        """Evaluate a new frame's rows (channel, index, time, value, quality)
        for `device` (a dict with id, name, site), already inserted into
        readings; returns outbox ids."""
        conn = engine_store.of(conn)
        try:
            return self._on_readings(conn, self.rules(conn), dict(device), rows, now, True)
        except BaseException:
            # Trackers may be ahead of a transaction that will not commit.
            self.rolled_back()
            raise

    def on_frames(self, conn, frames, now):
        """Evaluate a batch of new frames [(device, rows)], whose rows are
        not in readings yet; returns outbox ids. A device's rows of the whole
        batch are evaluated together, in reading-time order (frames in the
        order they arrived for equal times), so how frames fell into writer
        batches does not change what the rules see. The rules are looked up
        once for the batch: nobody else can change them while the writer
        holds the write lock."""
        conn = engine_store.of(conn)
        try:
            rules = self.rules(conn)
            outbox = []
            if rules:
                merged = {}
                for device, rows in frames:
                    entry = merged.get(device["id"])
                    if entry is None:
                        merged[device["id"]] = [device, list(rows)]
                    else:
                        entry[0] = device  # its newest state (battery, last seen)
                        entry[1] += rows
                for device, rows in merged.values():
                    outbox += self._on_readings(conn, rules, device, rows, now, False)
            return outbox
        except BaseException:
            self.rolled_back()
            raise

    def rolled_back(self):
        """The writer's transaction was rolled back: in-memory windows and
        levels are rebuilt from the database (alert_state, readings)."""
        self._trackers.clear()

    def forget(self, subjects):
        """Another writer moved these subjects (device ids, basin subjects)
        in the store: their trackers, and the basins they are gauges of, are
        rebuilt from it on next use; the others stay as they are."""
        subjects = set(subjects)
        if not subjects:
            return
        self._trackers = {
            key: tracker for key, tracker in self._trackers.items()
            if key[1] not in subjects and not (isinstance(tracker, Basin)
                                               and subjects.intersection(tracker.members))}

    def _on_readings(self, conn, rules, device, rows, now, stored):
        outbox = []
        limit = now + FUTURE_TOLERANCE_S if self.clock is None or self.clock.trusted else None
        for rule in rules:
            if not rule.matches(device):
                continue
            if rule.kind == "silent":
                outbox += self._silent(conn, rule, device, 0.0, now)
                continue
            if rule.kind in BASIN_KINDS:
                outbox += self._basin_readings(conn, rule, device, rows, now, stored, limit)
                continue
            by_index = {}
            for row in rows:
                if row[0] != rule.code or (rule.idx is not None and row[1] != rule.idx):
                    continue
                if rule.kind == "quality":
                    by_index.setdefault(row[1], []).append((row[2], 1 if row[4] != Q_OK else 0))
                elif row[4] == Q_OK:
                    by_index.setdefault(row[1], []).append((row[2], row[3]))
            for index, readings in by_index.items():
                readings.sort(key=lambda item: item[0])
                tracker = self._tracker(conn, rule, device["id"], index, readings, stored)
                if limit is not None and tracker.unpin(limit):
                    log.warning("event=rule_unpinned rule=%s device=%s idx=%d limit=%d",
                                rule.name, device["id"], index, limit)
                before = (tracker.level, dict(tracker.since))
                for t, v in readings:
                    for old, new in tracker.feed(t, v):
                        outbox += self._transition(conn, rule, device, index, tracker,
                                                   old, new, now)
                    if self.observer is not None:
                        self.observer(rule, device["id"], index, t, tracker)
                if (tracker.level, tracker.since) != before:
                    self._save(conn, rule, device["id"], index, tracker, now)
        return outbox

    def tick(self, conn, now):
        """Timers: silent devices, minimum durations met without a new
        reading, escalation of unacknowledged alerts. Returns outbox ids."""
        conn = engine_store.of(conn)
        try:
            return self._tick(conn, now)
        except BaseException:
            self.rolled_back()
            raise

    def _tick(self, conn, now):
        outbox = []
        rules = self.rules(conn)
        silent = [rule for rule in rules if rule.kind == "silent"]
        if silent:
            for device in conn.devices():
                seen = device.get("last_seen") or device.get("created")
                if seen is None:
                    continue
                for rule in silent:
                    if rule.matches(device):
                        outbox += self._silent(conn, rule, device, now - seen, now)
        trusted = self.clock is None or self.clock.trusted
        for rule in rules:
            if rule.kind in BASIN_KINDS and trusted:
                basin_ = self._basin(conn, rule, None, (), True, now)
                if basin_.latest is None or now > basin_.latest:
                    basin_.latest = now
                outbox += self._evaluate_basin(conn, basin_, now)
        self._load_timers(conn, rules, now)
        for (rule_id, device_id, index), tracker in list(self._trackers.items()):
            if not isinstance(tracker, Tracker) or tracker.rule.kind == "silent" \
                    or not tracker.since:
                continue
            for old, new in tracker.due(now):
                device = self._device(conn, device_id)
                outbox += self._transition(conn, tracker.rule, device, index, tracker,
                                           old, new, now)
                self._save(conn, tracker.rule, device_id, index, tracker, now)
        outbox += self._alerts.escalate_due(conn, self.config, now)
        return outbox

    def _load_timers(self, conn, rules, now):
        """Trackers whose minimum duration has run out by `now` but that are
        not in memory (a restart; at the hub, another worker evaluated them
        last): the clocks are in alert_state, so whoever ticks fires them."""
        by_id = {rule.id: rule for rule in rules
                 if rule.min_duration_s > 0 and rule.kind not in BASIN_KINDS + ("silent",)}
        if not by_id:
            return
        for rule_id, subject, index, level, since in conn.timers():
            rule = by_id.get(rule_id)
            if rule is None or (rule_id, subject, index) in self._trackers:
                continue
            current = level_index(level)
            if any(at > current and start + rule.min_duration_s <= now
                   for at, start in since.items()):
                self._tracker(conn, rule, subject, index, ())

    # -- several gauges -------------------------------------------------------

    def _basin_readings(self, conn, rule, device, rows, now, stored, limit):
        index = rule.idx or 0
        readings = sorted(((row[2], row[3], row[4] == Q_OK) for row in rows
                           if row[0] == rule.code and row[1] == index), key=lambda r: r[0])
        if not readings:
            return []
        basin_ = self._basin(conn, rule, device["id"], readings, stored, None)
        if limit is not None and basin_.unpin(limit):
            log.warning("event=rule_unpinned rule=%s basin=%s limit=%d",
                        rule.name, basin_subject(rule), limit)
        outbox = []
        for t, v, ok in readings:
            basin_.add(device["id"], t, v, ok)
            outbox += self._evaluate_basin(conn, basin_, now)
            if self.observer is not None:
                self.observer(rule, basin_subject(rule), 0, t, basin_)
        return outbox

    def _evaluate_basin(self, conn, basin_, now):
        """Move the basin's level and coverage at its time; returns outbox ids."""
        rule = basin_.rule
        subject = {"id": basin_subject(rule), "name": rule.place or rule.site or "all gauges",
                   "site": None}
        tracker, cover = basin_.tracker, basin_.cover
        before = (tracker.level, dict(tracker.since), cover.level)
        value, basin_.known = basin_.value(basin_.latest)
        outbox = []
        if value is None:
            # Not enough gauges to tell: hold the level, restart the
            # minimum-duration clocks (the condition was not seen to hold).
            tracker.value = None
            tracker.since.clear()
        else:
            tracker.value = value
            tracker.latest = basin_.latest
            for old, new in tracker.step(value, basin_.latest):
                outbox += self._transition(conn, rule, subject, 0, tracker, old, new, now)
        cover.value = float(basin_.known)
        for old, new in cover.step(1.0 if value is None else 0.0, basin_.latest):
            outbox += self._transition(conn, cover.rule, subject, 1, cover, old, new, now)
            log.warning("event=basin_%s rule=%s known=%d k=%d", "short" if new >= 0 else
                        "covered", rule.name, basin_.known, rule.k)
        if (tracker.level, tracker.since, cover.level) != before:
            self._save(conn, rule, subject["id"], 0, tracker, now)
            self._save(conn, rule, subject["id"], 1, cover, now)
        return outbox

    def _basin(self, conn, rule, device_id, batch, stored, start):
        """The rule's Basin, rebuilt from alert_state and the readings of
        its gauges on first use (batch: the rows of device_id about to be
        fed, taken out of the history when stored)."""
        key = (rule.id, basin_subject(rule), 0)
        found = self._trackers.get(key)
        if found is not None:
            return found
        subject = basin_subject(rule)
        trackers = []
        for index, level_rule in ((0, rule), (1, coverage_rule(rule))):
            state = conn.state(rule.id, subject, index)
            if state is None:
                trackers.append(Tracker(level_rule))
            else:
                trackers.append(Tracker(level_rule, level_index(state[0]), state[1], state[2]))
        members = [device["id"] for device in conn.devices() if rule.matches(device)]
        basin_ = Basin(rule, members, trackers[0], trackers[1])
        for gauge, t, v, ok in basin_history(conn, rule, members, device_id, batch, stored,
                                             start):
            basin_.add(gauge, t, v, ok)
        self._trackers[key] = basin_
        return basin_

    # -- state ---------------------------------------------------------------

    def _silent(self, conn, rule, device, quiet_for, now):
        tracker = self._tracker(conn, rule, device["id"], 0, ())
        before = (tracker.level, dict(tracker.since))
        tracker.value = quiet_for
        outbox = []
        for old, new in tracker.step(quiet_for, now):
            outbox += self._transition(conn, rule, device, 0, tracker, old, new, now)
        if (tracker.level, tracker.since) != before:
            self._save(conn, rule, device["id"], 0, tracker, now)
        return outbox

    def _tracker(self, conn, rule, device_id, index, batch, stored=True):
        key = (rule.id, device_id, index)
        tracker = self._trackers.get(key)
        if tracker is not None:
            return tracker
        state = conn.state(rule.id, device_id, index)
        if state is None:
            tracker = Tracker(rule)
        else:
            tracker = Tracker(rule, level_index(state[0]), state[1], state[2])
        if rule.kind != "silent":
            for t, v in history(conn, rule, device_id, index, batch, stored):
                tracker.add(t, v)
        self._trackers[key] = tracker
        return tracker

    def _save(self, conn, rule, device_id, index, tracker, now):
        conn.save_state(rule.id, device_id, index, level_name(tracker.level), tracker.alert_id,
                        tracker.since, tracker.value, tracker.latest, now)

    def _transition(self, conn, rule, device, index, tracker, old, new, now):
        alerts = self._alerts
        at = tracker.latest  # the reading's time: a backlog is told as such
        if old == -1:
            tracker.alert_id, ids = alerts.raise_alert(
                conn, self.config, rule, device, index, LEVELS[new], tracker.value, now, at)
            return ids
        if tracker.alert_id is None:
            return []
        if new == -1:
            ids = alerts.clear_alert(conn, self.config, tracker.alert_id, tracker.value, now, at)
            tracker.alert_id = None
            return ids
        return alerts.update_alert(conn, self.config, tracker.alert_id, LEVELS[new],
                                   tracker.value, now, at)

    @staticmethod
    def _device(conn, device_id):
        return conn.device(device_id) or {"id": device_id, "name": device_id, "site": None}


def history(conn, rule, device_id, index, batch=(), stored=True):
    """The stored readings a fresh tracker needs before `batch` (the rows
    of the frame being evaluated, fed one by one after): for windows
    everything newer than the batch's start minus the window, for point
    rules the newest few. stored: the batch's rows are in the table already
    (inserted in this transaction) and are taken out again; when they are
    not, nothing of this writer batch is (the writer inserts after the
    engine ran, and an earlier frame of the batch with rows for this
    tracker would have made it), so the table is exactly the history."""
    store = engine_store.of(conn)
    if rule.kind in WINDOW_KINDS:
        start = min((t for t, _ in batch), default=None)
        if start is None:
            start = store.newest_time([device_id], rule.code, index, rule.kind)
            if start is None:
                return []
        rows = store.readings_after(device_id, rule.code, index, start - rule.history_s,
                                    rule.kind)
    else:
        rows = store.newest_readings(device_id, rule.code, index,
                                     len(batch) + 1 if stored else 1, rule.kind)
    if not stored:
        return rows
    pending = collections.Counter(batch)
    kept = []
    for item in reversed(rows):  # the batch's rows are the newest inserted
        if pending[item]:
            pending[item] -= 1
        else:
            kept.append(item)
    kept.reverse()
    return kept


def basin_subject(rule):
    """The alert_state / alerts subject of a basin rule: its site, or "*"."""
    return "basin:%s" % (site_key(rule.site) or "*")


def coverage_rule(rule):
    """What a basin rule's coverage alert is: quality-style, advisory while
    fewer than k gauges are known (Tracker and alerts need these fields)."""
    return types.SimpleNamespace(
        id=rule.id, name=rule.name, kind="quality", channel=rule.channel, unit="gauges known",
        place=rule.place or rule.site, window_s=rule.window_s, sign=1.0,
        thresholds=[(0, 1.0)], hysteresis=0.0, min_duration_s=0)


def basin_history(conn, rule, members, device_id, batch, stored, start):
    """(device id, time, value, ok) of the gauges' stored readings a fresh
    Basin needs, in time order: those after start - history_s, where start
    is the batch's first time (or `start`, or the newest stored). The batch's
    own rows (time, value, ok) of device_id are taken out when stored."""
    store = engine_store.of(conn)
    index = rule.idx or 0
    if not members:
        return []
    if batch:
        start = min(t for t, _, _ in batch)
    elif start is None:
        # Every reading, flagged or not: a flagged newest reading makes a gauge unknown.
        start = store.newest_time(members, rule.code, index, "quality")
        if start is None:
            return []
    rows = store.gauge_readings(members, rule.code, index, start - rule.history_s)
    if not stored or not batch:
        return rows
    pending = collections.Counter((device_id,) + tuple(item) for item in batch)
    kept = []
    for item in reversed(rows):
        if pending[item]:
            pending[item] -= 1
        else:
            kept.append(item)
    kept.reverse()
    return kept


def replay(database, rule, since, until=None, trace=None):
    """What `rule` would have done over the stored readings in [since,
    until): a list of (time, device_id, index, event, level, value) with
    event "raise", "update" or "clear". Writes nothing. trace(t, subject,
    index, value) is called with the rule's value after each reading."""
    conn = engine_store.of(database)
    devices = [d for d in conn.devices(active=False) if rule.matches(d)]
    if rule.kind == "silent":
        raise RuleError("silent rules depend on when frames arrived; replay has only readings")
    events = []
    until = until if until is not None else 2 ** 62
    if rule.kind in BASIN_KINDS:
        return _replay_basin(conn, rule, [d["id"] for d in devices if not d.get("retired")],
                             since, until, trace)
    for device in devices:
        # The window's worth before `since` primes the window without events.
        rows = conn.readings_between(device["id"], rule.code, rule.idx,
                                     since - rule.history_s, until, rule.kind)
        trackers = {}
        for index, t, v in rows:
            tracker = trackers.get(index) or trackers.setdefault(index, Tracker(rule))
            if t < since:
                tracker.add(t, int(v))
                continue
            for old, new in tracker.feed(t, int(v)):
                event = "raise" if old == -1 else "clear" if new == -1 else "update"
                events.append((t, device["id"], index, event,
                               level_name(new if new >= 0 else old), tracker.value))
            if trace is not None:
                trace(t, device["id"], index, tracker.value)
    events.sort(key=lambda e: e[0])
    return events


def _replay_basin(conn, rule, members, since, until, trace):
    basin_ = Basin(rule, members, Tracker(rule), Tracker(coverage_rule(rule)))
    events = []
    subject = basin_subject(rule)
    for gauge, t, v, ok in basin_history(conn, rule, members, None, (), False, since):
        if t >= until:
            break
        basin_.add(gauge, t, v, ok)
        value, basin_.known = basin_.value(basin_.latest)
        if t < since:
            continue
        if trace is not None:
            trace(t, subject, 0, value)
        if value is None:
            basin_.tracker.since.clear()
            continue
        basin_.tracker.value = value
        for old, new in basin_.tracker.step(value, basin_.latest):
            event = "raise" if old == -1 else "clear" if new == -1 else "update"
            events.append((t, subject, 0, event, level_name(new if new >= 0 else old), value))
    return events
