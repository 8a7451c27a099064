"""The gateway's own clock: whether it can be trusted, and the time it gives out.

Boards without a battery-backed clock take their time from the gateway's
acks, and the gateway stamps every unsynced frame with its own time, so a
wrong gateway clock spreads to every reading. A Raspberry Pi has no RTC:
after a power cut without network it boots at the time fake-hwclock saved
at shutdown (hours or days behind) or at 1970. So the clock is trusted only
when a source vouches for it:

1. the system clock, when the kernel says it is synchronised: NTP daemons
   (systemd-timesyncd, chrony, ntpd) clear STA_UNSYNC in adjtimex(2) once
   they discipline the clock, and timesyncd also creates
   /run/systemd/timesync/synchronized; or, with `[clock] trust = "system"`,
   the operator's word (a gateway with an RTC the kernel does not report);
2. else the GSM network's time (NITZ), which the modem's own clock holds
   after AT+CLTS=1 and gives on AT+CCLK? (huaico.sms.modem.Modem.network_time):
   kept as an offset to the system clock, so the gateway's time runs on
   the system clock's ticks;
3. else nothing: the clock is not trusted.

A source's time must also be plausible: not before FLOOR (this release did
not exist then: a 1970 boot or a modem's power-up default of 2004 or 1980),
and not behind the newest data this gateway has stored by more than
`BEHIND_SLACK_S` (a clock restored from a stale save).

While the clock is not trusted the gateway acks with no time (SPEC.md 2),
so no board sets its clock from it; it does not restamp frames from the
future (it cannot tell); frames it stamps itself stay flagged unsynced. The
state is logged when it changes and shown by the status line, `huaico
status` and `huaico doctor`.

Tests inject the parts: `system` (an object whose state() gives
(synced, detail)), `wall` (a callable giving seconds since 1970) and
`network` (a callable giving the network's time, e.g. a real Modem's
network_time over the modem emulator).
"""
import ctypes
import ctypes.util
import logging
import os
import threading
import time

log = logging.getLogger("huaico.clock")

FLOOR = 1767225600  # 2026-01-01T00:00:00Z: no clock reading before it is right
BEHIND_SLACK_S = 300
# A network time stays good this long after the modem last gave one (a
# Pi's crystal drifts a few seconds a day), so a modem that goes away for
# a while does not throw the gateway back onto a clock known to be wrong.
HOLDOVER_S = 86400
FUTURE_TOLERANCE_S = 120  # how far ahead of a trusted gateway clock a board's reading may be
_TIMESYNCD_FLAG = "/run/systemd/timesync/synchronized"
_STA_UNSYNC = 0x0040  # include/uapi/linux/timex.h
_TIME_ERROR = 5  # adjtimex(2): the clock is not synchronised


class _Timex(ctypes.Structure):
    """The head of struct timex (include/uapi/linux/timex.h) and room for the rest."""
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long),
                ("status", ctypes.c_int), ("rest", ctypes.c_char * 256)]


class SystemSync:
    """The kernel's word on whether the system clock is synchronised."""

    def __init__(self, flag_path=_TIMESYNCD_FLAG):
        self.flag_path = flag_path
        name = ctypes.util.find_library("c")
        self._libc = ctypes.CDLL(name, use_errno=True) if name else None

    def state(self):
        """(True, detail) when synchronised, (False, detail) when not, (None,
        detail) when this system cannot say."""
        if os.path.exists(self.flag_path):
            return True, "systemd-timesyncd synchronized"
        if self._libc is None or not hasattr(self._libc, "adjtimex"):
            return None, "no adjtimex on this system"
        timex = _Timex()  # modes 0: read only
        result = self._libc.adjtimex(ctypes.byref(timex))
        if result < 0:
            return None, "adjtimex failed: %s" % os.strerror(ctypes.get_errno())
        if result == _TIME_ERROR or timex.status & _STA_UNSYNC:
            return False, "kernel: clock not synchronised (no NTP)"
        return True, "kernel: synchronised, max error %d us" % timex.maxerror


class OperatorSync:
    """`[clock] trust = "system"`: the operator vouches for the system clock."""

    def state(self):
        return True, "trusted by configuration ([clock] trust = \"system\")"


class TrustedClock:
    """A clock taken as right (tests and tools that give the writer a plain
    callable): the writer's interface of GatewayClock with nothing to check."""

    trusted = True
    offset = 0.0
    source = "given"
    detail = "a time given by the caller"

    def __init__(self, wall):
        self.now = wall

    def ack_time(self):
        return int(self.now())


class GatewayClock:
    """now(), trusted, source and detail; check() re-evaluates (see the module
    docstring). note_data(t) raises the plausibility floor to data stored."""

    def __init__(self, system=None, wall=time.time, network=None, floor=FLOOR,
                 behind_slack_s=BEHIND_SLACK_S):
        self.system = system if system is not None else SystemSync()
        self.wall = wall
        self.network = network
        self.floor = floor
        self.behind_slack_s = behind_slack_s
        self.newest_data = None
        self._network_at = None  # (monotonic time, offset) of the last good network time
        self.offset = 0.0
        self.trusted = False
        self.source = "none"
        self.detail = "not checked yet"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def now(self):
        return self.wall() + self.offset

    def ack_time(self):
        """The time for an ack: None while the clock is not trusted."""
        return int(self.now()) if self.trusted else None

    def note_data(self, newest):
        """The newest time of data stored by this gateway (received), which
        a right clock cannot be behind."""
        if newest is not None and (self.newest_data is None or newest > self.newest_data):
            self.newest_data = newest

    def implausible(self, t):
        """Why time t cannot be right, or None."""
        if t < self.floor:
            return "before %s" % _iso(self.floor)
        if self.newest_data is not None and t < self.newest_data - self.behind_slack_s:
            return "%s behind data already stored (%s)" % (
                _span(self.newest_data - t), _iso(self.newest_data))
        return None

    def check(self):
        """Look at the sources again; returns state()."""
        with self._lock:
            trusted, source, detail, offset = self._evaluate()
            changed = (trusted, source) != (self.trusted, self.source)
            self.trusted, self.source, self.detail, self.offset = trusted, source, detail, offset
        if changed:
            log.log(logging.INFO if trusted else logging.WARNING,
                    "event=clock trusted=%s source=%s offset_s=%.1f detail=%r",
                    "yes" if trusted else "no", source, offset, detail)
        return self.state()

    def _evaluate(self):
        wall = self.wall()
        synced, why = self.system.state()
        if synced:
            bad = self.implausible(wall)
            if bad is None:
                return True, "system", why, 0.0
            why = "system clock %s, %s" % (_iso(wall), bad)
        if self.network is not None:
            try:
                network = self.network()
            except Exception as exc:  # a modem away or failing: no network time now
                network, why = None, "%s; network time: %s" % (why, exc)
            if network is None:
                why += "; no network time"
            else:
                bad = self.implausible(network)
                if bad is None:
                    offset = network - self.wall()
                    self._network_at = (time.monotonic(), offset)
                    return True, "network", "GSM network time (NITZ)", offset
                why += "; network time %s, %s" % (_iso(network), bad)
            if self._network_at is not None:
                age = time.monotonic() - self._network_at[0]
                if age < HOLDOVER_S:
                    return True, "network", "GSM network time of %s ago, held (%s)" % (
                        _span(age), why), self._network_at[1]
        return False, "none", why, 0.0

    def state(self):
        return {"trusted": self.trusted, "source": self.source, "detail": self.detail,
                "offset_s": round(self.offset, 3), "time": self.now()}

    def describe(self):
        """One line for logs, status and doctor."""
        if self.trusted:
            return "clock trusted (%s: %s)" % (self.source, self.detail)
        return "clock NOT trusted: %s; acks carry no time" % self.detail

    # A thread that checks again every check_s seconds (huaico run).

    def start(self, check_s):
        self.check()
        self._thread = threading.Thread(target=self._run, args=(check_s,), name="clock",
                                        daemon=True)
        self._thread.start()

    def _run(self, check_s):
        while not self._stop.wait(check_s):
            try:
                self.check()
            except Exception:
                log.exception("event=clock_check_failed")

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None


def from_config(config, network=None, wall=time.time):
    """The GatewayClock `[clock]` asks for; network: the modem's network_time or None."""
    system = OperatorSync() if config["clock"]["trust"] == "system" else SystemSync()
    return GatewayClock(system=system, wall=wall, network=network)


def save_state(conn, clock, now):
    """Record the clock's state in gateway_state (in the caller's
    transaction), for `huaico status` and `huaico doctor` in other processes."""
    value = "%s %s %s" % ("trusted" if clock.trusted else "untrusted", clock.source, clock.detail)
    conn.execute("INSERT INTO gateway_state (name, value, updated) VALUES ('clock', ?, ?) "
                 "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
                 "updated = excluded.updated", [value, now])


def saved_state(database):
    """(trusted, source, detail, updated) as the running gateway last saved
    it, or None when no gateway has run."""
    row = database.execute("SELECT value, updated FROM gateway_state WHERE name = 'clock'"
                           ).fetchone()
    if row is None:
        return None
    state, source, detail = (row[0].split(" ", 2) + ["", ""])[:3]
    return state == "trusted", source, detail, row[1]


def newest_stored(database):
    """The newest receive time of a stored frame (devices.last_seen), or None.
    Read through devices_live (huaico.store.db m010); `doctor` may look at a
    database whose migrations are still to run, where the rows say it all."""
    source = "devices_live" if "devices_live" in database.view_names() else "devices"
    return database.execute("SELECT max(last_seen) FROM %s" % source).fetchone()[0]


def _iso(t):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))


def _span(seconds):
    for name, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return "%.1f %s" % (seconds / size, name)
    return "%d s" % seconds
