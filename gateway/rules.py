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

A level is entered when its threshold has been met for `min_duration_s`
(reading time) and left when the value falls below threshold - hysteresis
(above threshold + hysteresis for below/battery). Windows hold only readings
whose quality is ok, except for `quality` rules which look at nothing else.

Each (rule, device, index) has a Tracker: its window (kept incrementally:
a running sum and a monotonic deque for the minimum) and level state. The
level, its alert and the minimum-duration clocks are stored in alert_state in
the same transaction as the readings, so after a restart an active alert is
neither sent again nor forgotten; the window itself is rebuilt from the
readings table on first use, since the readings are the record anyway.
"""
import bisect
import collections
import json
import re

from protocol import channels
from protocol.frame import MAX_INDEX, Q_OK

LEVELS = ("advisory", "watch", "warning", "emergency")
KINDS = ("above", "below", "accumulation", "rise", "battery", "quality", "silent")
WINDOW_KINDS = ("accumulation", "rise")
_DESCENDING = ("below", "battery")
_DEFAULT_CHANNEL = {"battery": "battery"}
_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}


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
              "hysteresis", "min_duration_s", "bucket_mm", "place", "enabled", "updated")

    def __init__(self, name, kind, levels, device=None, site=None, channel=None, idx=None,
                 window_s=0, hysteresis=0.0, min_duration_s=0, bucket_mm=None, place=None,
                 enabled=1, id=None, updated=None):
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
        self._check()
        if self.kind != "silent":
            self._channel = channels.get(self.channel)
            self.code = self._channel.code
            if self.channel == "rain_tips":
                self.unit = "mm"
                self._factor = float(self.bucket_mm)
            else:
                self.unit = self._channel.unit
                self._factor = 10.0 ** self._channel.scale
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
                raise RuleError(str(exc)) from None
            if self.channel == "rain_tips" and not self.bucket_mm:
                raise RuleError("bucket_mm: rain_tips counts need the bucket size in mm")
        if self.kind in WINDOW_KINDS and self.window_s <= 0:
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

    def physical(self, value):
        """A scaled integer (or a sum of them) in the rule's unit."""
        return value * self._factor

    def matches(self, device):
        if self.device is not None:
            return device.get("name") == self.device or device.get("id") == self.device
        if self.site is not None:
            return device.get("site") == self.site
        return True

    def to_row(self):
        row = {name: getattr(self, name) for name in self.FIELDS if name not in ("id", "updated")}
        row["levels"] = json.dumps(self.levels)
        return row

    @classmethod
    def from_row(cls, row):
        row = dict(row)
        row["levels"] = json.loads(row["levels"])
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
        window = " over %ss" % self.window_s if self.kind in WINDOW_KINDS else ""
        levels = ", ".join("%s %s %g" % (name, op, self.levels[name])
                           for name in LEVELS if name in self.levels)
        return "%s %s of %s%s: %s" % (self.kind, what, where, window, levels)


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
        self._mins.clear()
        for item in items:
            while self._mins and self._mins[-1][1] >= item[1]:
                self._mins.pop()
            self._mins.append(item)

    def trim(self, latest):
        edge = latest - self.span
        while self.items and self.items[0][0] <= edge:
            self.total -= self.items.popleft()[1]
        while self._mins and self._mins[0][0] <= edge:
            self._mins.popleft()

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

    def add(self, t, v):
        """Take a reading (scaled integer, or 0/1 for quality rules) without
        evaluating; returns the rule's value now, or None when a point
        reading was older than the newest seen (it changes nothing)."""
        newest = self.latest is None or t >= self.latest
        if newest:
            self.latest = t
        if self.window is not None:
            self.window.add(t, v)
            self.window.trim(self.latest)
            if self.rule.kind == "accumulation":
                self.value = self.rule.physical(self.window.total)
            else:
                self.value = self.rule.physical(self.window.newest() - self.window.minimum())
        elif newest:
            self.value = float(v) if self.rule.kind == "quality" else self.rule.physical(v)
        else:
            return None
        return self.value

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


def level_name(index):
    return LEVELS[index] if index >= 0 else ""


def level_index(name):
    return LEVELS.index(name) if name else -1


def _raw(conn):
    return getattr(conn, "conn", conn)


class RuleEngine:
    """Evaluates the stored rules; see the module docstring.

    on_frames() is called by the writer inside its transaction with the
    batch's new frames, before their readings are inserted (later in the
    same transaction); on_readings() is the same for one frame whose rows
    are in the table already. Both write alert_state, alerts and outbox
    rows on that same connection and never commit."""

    def __init__(self, database, config, observer=None):
        from gateway import alerts  # alerts imports LEVELS from here
        self._alerts = alerts
        self.database = database
        self.config = config
        self.observer = observer
        self._rules = []
        self._stamp = None
        self._trackers = {}

    # -- rules ---------------------------------------------------------------

    def rules(self, conn):
        """The enabled rules, reloaded when the rules table has changed."""
        conn = _raw(conn)
        stamp = conn.execute("SELECT count(*), max(updated), max(id) FROM rules").fetchone()
        if stamp != self._stamp:
            rows = conn.execute("SELECT * FROM rules WHERE enabled = 1 ORDER BY id")
            names = [column[0] for column in rows.description]
            fresh = [Rule.from_row(dict(zip(names, row))) for row in rows]
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
        conn = _raw(conn)
        try:
            return self._on_readings(conn, self.rules(conn), dict(device), rows, now, True)
        except BaseException:
            # Trackers may be ahead of a transaction that will not commit.
            self.rolled_back()
            raise

    def on_frames(self, conn, frames, now):
        """Evaluate a batch of new frames [(device, rows)] in arrival order,
        whose rows are not in readings yet; returns outbox ids. The rules
        are looked up once for the batch: nobody else can change them while
        the writer holds the write lock."""
        conn = _raw(conn)
        try:
            rules = self.rules(conn)
            outbox = []
            if rules:
                for device, rows in frames:
                    outbox += self._on_readings(conn, rules, device, rows, now, False)
            return outbox
        except BaseException:
            self.rolled_back()
            raise

    def rolled_back(self):
        """The writer's transaction was rolled back: in-memory windows and
        levels are rebuilt from the database (alert_state, readings)."""
        self._trackers.clear()

    def _on_readings(self, conn, rules, device, rows, now, stored):
        outbox = []
        for rule in rules:
            if not rule.matches(device):
                continue
            if rule.kind == "silent":
                outbox += self._silent(conn, rule, device, 0.0, now)
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
        conn = _raw(conn)
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
            cursor = conn.execute("SELECT * FROM devices WHERE retired = 0")
            names = [column[0] for column in cursor.description]
            for row in cursor.fetchall():
                device = dict(zip(names, row))
                seen = device.get("last_seen") or device.get("created")
                if seen is None:
                    continue
                for rule in silent:
                    if rule.matches(device):
                        outbox += self._silent(conn, rule, device, now - seen, now)
        for (rule_id, device_id, index), tracker in list(self._trackers.items()):
            if tracker.rule.kind == "silent" or not tracker.since:
                continue
            for old, new in tracker.due(now):
                device = self._device(conn, device_id)
                outbox += self._transition(conn, tracker.rule, device, index, tracker,
                                           old, new, now)
                self._save(conn, tracker.rule, device_id, index, tracker, now)
        outbox += self._alerts.escalate_due(conn, self.config, now)
        return outbox

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
        row = conn.execute("SELECT level, since, alert_id FROM alert_state "
                           "WHERE rule_id = ? AND device_id = ? AND idx = ?",
                           [rule.id, device_id, index]).fetchone()
        if row is None:
            tracker = Tracker(rule)
        else:
            since = {int(k): v for k, v in json.loads(row[1]).items()}
            tracker = Tracker(rule, level_index(row[0]), since, row[2])
        if rule.kind != "silent":
            for t, v in history(conn, rule, device_id, index, batch, stored):
                tracker.add(t, v)
        self._trackers[key] = tracker
        return tracker

    def _save(self, conn, rule, device_id, index, tracker, now):
        conn.execute(
            "INSERT INTO alert_state (rule_id, device_id, idx, level, alert_id, since, value, "
            "last_time, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(rule_id, device_id, idx) DO UPDATE SET level = excluded.level, "
            "alert_id = excluded.alert_id, since = excluded.since, value = excluded.value, "
            "last_time = excluded.last_time, updated = excluded.updated",
            [rule.id, device_id, index, level_name(tracker.level), tracker.alert_id,
             json.dumps(tracker.since), tracker.value, tracker.latest, now])

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
        cursor = conn.execute("SELECT * FROM devices WHERE id = ?", [device_id])
        row = cursor.fetchone()
        if row is None:
            return {"id": device_id, "name": device_id, "site": None}
        return dict(zip([column[0] for column in cursor.description], row))


def history(conn, rule, device_id, index, batch=(), stored=True):
    """The stored readings a fresh tracker needs before `batch` (the rows
    of the frame being evaluated, fed one by one after): for windows
    everything newer than the batch's start minus the window, for point
    rules the newest few. stored: the batch's rows are in the table already
    (inserted in this transaction) and are taken out again; when they are
    not, nothing of this writer batch is (the writer inserts after the
    engine ran, and an earlier frame of the batch with rows for this
    tracker would have made it), so the table is exactly the history."""
    conn = _raw(conn)
    quality = "" if rule.kind == "quality" else " AND quality = 0"
    value = "(quality != 0)" if rule.kind == "quality" else "value"
    where = "device_id = ? AND channel = ? AND idx = ?" + quality
    if rule.kind in WINDOW_KINDS:
        start = min((t for t, _ in batch), default=None)
        if start is None:
            top = conn.execute("SELECT max(time) FROM readings WHERE " + where,
                               [device_id, rule.code, index]).fetchone()[0]
            if top is None:
                return []
            start = top
        rows = conn.execute("SELECT time, %s FROM readings WHERE %s AND time > ? "
                            "ORDER BY time, rowid" % (value, where),
                            [device_id, rule.code, index, start - rule.window_s]).fetchall()
    else:
        rows = conn.execute("SELECT time, %s FROM readings WHERE %s "
                            "ORDER BY time DESC, rowid DESC LIMIT ?" % (value, where),
                            [device_id, rule.code, index,
                             len(batch) + 1 if stored else 1]).fetchall()
        rows.reverse()
    rows = [(t, int(v)) for t, v in rows]
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


def replay(database, rule, since, until=None):
    """What `rule` would have done over the stored readings in [since,
    until): a list of (time, device_id, index, event, level, value) with
    event "raise", "update" or "clear". Writes nothing."""
    conn = _raw(database)
    cursor = conn.execute("SELECT * FROM devices")
    names = [column[0] for column in cursor.description]
    devices = [dict(zip(names, row)) for row in cursor.fetchall()]
    devices = [d for d in devices if rule.matches(d)]
    if rule.kind == "silent":
        raise RuleError("silent rules depend on when frames arrived; replay has only readings")
    events = []
    until = until if until is not None else 2 ** 62
    for device in devices:
        value = "(quality != 0)" if rule.kind == "quality" else "value"
        quality = "" if rule.kind == "quality" else " AND quality = 0"
        args = [device["id"], rule.code]
        extra = ""
        if rule.idx is not None:
            extra = " AND idx = ?"
            args.append(rule.idx)
        # The window's worth before `since` primes the window without events.
        rows = conn.execute(
            "SELECT idx, time, %s FROM readings WHERE device_id = ? AND channel = ?%s%s "
            "AND time > ? AND time < ? ORDER BY time, rowid" % (value, extra, quality),
            args + [since - rule.window_s, until])
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
    events.sort(key=lambda e: e[0])
    return events
