"""A scenario: what happens to the simulated board and its world over scenario time.

JSON, all times in scenario seconds from the first power-on:
{"duration_s": 720,
 "world": {"battery_v": 4.0, "water_level_m": 0.4},        initial bus.world values
 "flash_ballast_kb": 500,                                    other files on a newly formatted board (optional)
 "ring_seq": [16777200, [7]],                                a new board's store: next seq, its epochs (optional)
 "flash_time": false,                                        erases and programs take no time (default true: their
                                                             typical datasheet time; "max": the maxima, sim/flashchip.py)
 "rain": [{"from_s": 0, "to_s": 600, "every_s": 1.0}],       tips at from+every, from+2*every, ... <= to
 "ramps": [{"key": "water_level_m", "from_s": 0, "to_s": 600, "start": 0.4, "end": 2.1, "step_s": 5}],
 "link_down": [{"from_s": 120, "to_s": 420}],
 "dns": {"servers": 1, "upstream": "dead"},                  what DHCP hands out (sim/netsock.py)
 "events": [{"at_s": 300.5, "reset": "watchdog"},            soft | hard | watchdog | power_cut
            {"at_s": 100, "fail": "level0"}, {"at_s": 200, "heal": "level0"},
            {"at_s": 50, "world": {"battery_v": 3.3}},
            {"at_s": 400, "cut_at_write": 3}]}                 power cut at the 3rd flash erase/program after 400 s
                                                         ("cut": "watchdog": a watchdog reset there instead)
Tips are generated one at a time (no list of them), so a long storm costs
no heap. Every delivered event is printed as a JSON line ("vt": scenario s).
"""
import json

from firmware.sim import board, bus

_US = 1000000
_RESETS = {"soft": board.SOFT_RESET, "hard": board.HARD_RESET, "watchdog": board.WDT_RESET}


def emit(name, vt, *pairs):
    parts = ['{"ev":"', name, '","vt":', "%.3f" % vt]
    for i in range(0, len(pairs) - 1, 2):
        parts.append(',"%s":%s' % (pairs[i], json.dumps(pairs[i + 1])))
    parts.append("}")
    print("".join(parts))


class Scenario:
    def __init__(self, raw):
        self.duration_us = int(raw.get("duration_s", 60) * _US)
        self.flash_ballast_kb = raw.get("flash_ballast_kb", 0)
        self.ring_seq = raw.get("ring_seq")
        self.flash_time = raw.get("flash_time", True)
        if self.flash_time not in (True, False, "max"):
            raise ValueError('scenario flash_time: true, false or "max", not %r' % (self.flash_time,))
        self.initial_world = raw.get("world", {})
        self.rain = raw.get("rain", [])
        self._tip_k = [0] * len(self.rain)
        self.ramps = raw.get("ramps", [])
        self._ramp_k = [0] * len(self.ramps)
        self.link = raw.get("link_down", [])
        self.dns = raw.get("dns", {})
        self.events = sorted(raw.get("events", []), key=lambda e: e["at_s"])
        self._event_at = 0
        self.rain_models = []  # the rain gauge models of the current boot
        self.chip = None  # the flash chip (firmware/sim/flashchip.py): cut_at_write arms it
        self.tips = 0
        self.lost_tips = 0  # tips while no gauge was wired (none expected)
        self._link_down = False
        self._now = 0

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f))

    def start(self):
        bus.world.update(self.initial_world)
        for ramp in self.ramps:
            bus.world[ramp["key"]] = ramp["start"]

    # Next event of each kind.
    def _next_tip(self):
        best = None
        which = -1
        for i in range(len(self.rain)):
            seg = self.rain[i]
            t = int((seg["from_s"] + seg["every_s"] * (self._tip_k[i] + 1)) * _US)
            if t <= int(seg["to_s"] * _US) and (best is None or t < best):
                best = t
                which = i
        return best, which

    def _next_ramp(self):
        best = None
        which = -1
        for i in range(len(self.ramps)):
            r = self.ramps[i]
            t = int((r["from_s"] + r.get("step_s", 5) * (self._ramp_k[i] + 1)) * _US)
            if t <= int(r["to_s"] * _US) and (best is None or t < best):
                best = t
                which = i
        return best, which

    def next_us(self):
        times = [self.duration_us, self._next_tip()[0], self._next_ramp()[0]]
        if self._event_at < len(self.events):
            times.append(int(self.events[self._event_at]["at_s"] * _US))
        times.append(self._next_link_change())
        for model in self.rain_models:
            times.append(model.next_us())
        best = None
        for t in times:
            if t is not None and (best is None or t < best):
                best = t
        return best

    def next_edge_us(self):
        """When the next pin edge comes (a tip's closing, a reed's release and bounce), when
        nothing else is due before it or with it; else None (a flash step tells only edges)."""
        edge = self._next_tip()[0]
        for model in self.rain_models:
            t = model.next_us()
            if t is not None and (edge is None or t < edge):
                edge = t
        if edge is None:
            return None
        others = [self.duration_us, self._next_ramp()[0], self._next_link_change()]
        if self._event_at < len(self.events):
            others.append(int(self.events[self._event_at]["at_s"] * _US))
        for t in others:
            if t is not None and t <= edge:
                return None
        return edge

    def _next_link_change(self):
        best = None
        for w in self.link:
            for t, down in ((int(w["from_s"] * _US), True), (int(w["to_s"] * _US), False)):
                if down != self._link_down and (best is None or t < best) and t >= self._now:
                    best = t
        return best

    def link_down_at(self, us):
        for w in self.link:
            if int(w["from_s"] * _US) <= us < int(w["to_s"] * _US):
                return True
        return False

    def fire(self, now_us):
        """Deliver the events due at now_us; True when a pin IRQ fired (wakes a light sleep)."""
        self._now = now_us
        vt = now_us / _US
        down = self.link_down_at(now_us)
        if down != self._link_down:
            self._link_down = down
            board.state["link_down"] = down
            emit("link", vt, "up", not down)
        released = False
        for model in self.rain_models:
            released = model.due(now_us) or released
        if released:
            return True
        tip, which = self._next_tip()
        if tip is not None and tip <= now_us:
            self._tip_k[which] += 1
            self.tips += 1
            if self.rain_models:
                self.rain_models[0].close(now_us)
            else:
                self.lost_tips += 1
            emit("tip", vt, "n", self.tips)
            return True
        ramp, which = self._next_ramp()
        if ramp is not None and ramp <= now_us:
            self._ramp_k[which] += 1
            r = self.ramps[which]
            span = r["to_s"] - r["from_s"]
            frac = (vt - r["from_s"]) / span if span > 0 else 1.0
            bus.world[r["key"]] = r["start"] + (r["end"] - r["start"]) * min(frac, 1.0)
        if self._event_at < len(self.events) and int(self.events[self._event_at]["at_s"] * _US) <= now_us:
            e = self.events[self._event_at]
            self._event_at += 1
            self._apply(e, vt)
        if now_us >= self.duration_us:
            raise board.ScenarioEnd()
        return False

    def _apply(self, e, vt):
        if "world" in e:
            bus.world.update(e["world"])
            emit("world", vt, "set", e["world"])
        if "fail" in e:
            bus.faults.add(e["fail"])
            emit("fail", vt, "sensor", e["fail"])
        if "heal" in e:
            bus.faults.discard(e["heal"])
            emit("heal", vt, "sensor", e["heal"])
        if "cut_at_write" in e:
            kind = e.get("cut", "power_cut")
            self.chip.arm(e["cut_at_write"], _RESETS.get(kind, board.PWRON_RESET), kind == "power_cut")
            emit("cut_armed", vt, "at_write", e["cut_at_write"], "kind", kind)
        if "reset" in e:
            kind = e["reset"]
            emit("reset", vt, "kind", kind)
            if kind == "power_cut":
                board.power_cut()
                raise board.Reset(board.PWRON_RESET, True)
            raise board.Reset(_RESETS[kind])
