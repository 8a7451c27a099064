"""The simulated board's energy bookkeeping: each part's state over virtual time, and its charge.

Why: a site runs on a cell and a small panel, and only the time each part
spends in each state says how long that lasts. The hardware process
(firmware/sim/hardware.py) owns one Energy for the board; its hooks tell
it when the MCU sleeps and wakes (hardware.py idle), when the Wi-Fi radio
joins, idles, sends or stops (sim/network.py and netsock.py, over the
RPC), when a UART line driver or a LoRa module transmits (sim/uart.py,
devices/lora_uart.py), when a sensor converts (device models) and when a
power group's enable pin changes (sim/io.py). Currents per state come
from firmware/sim/currents.py. At the run's end report() gives the
"energy" event: mAh per simulated day, average mA, awake and radio-on
shares, and seconds per "part:state".

A part's state holds from the time it was set; a burst (a conversion, a
packet on the air) overrides it for its length, and may lie ahead of the
hardware's clock (bytes queued on a UART reach the line later). A part
does one burst at a time: one that comes while another runs starts when
that one ends, as packets leave a radio one after another. Times given
out of order are clamped to the part's last one: each part's seconds
always add up to the time the run lasted. The hardware counts every part
up to a minute ago at each sleep (settle), so that a board's week of
bursts does not pile up in its heap; a hook may tell a state up to that
late (the simulated network learns that a join ended at its next poll).
"""
_US = 1000000.0
_SETTLE_US = 60 * 1000000
RADIOS = ("wifi", "lora", "rs485")
_RADIO_OFF = ("off", "sleep", "standby")
_POWERED = {"lora": "rx", "rs485": "idle"}  # what a radio does once its group powers it


class Part:
    def __init__(self, table, state):
        self.table = table  # state -> mA
        self.state = state
        self.since = 0  # us up to which the part's time is counted
        self.bursts = []  # [start, end, state], one after another
        self.free = 0  # when the last burst ends
        self.seconds = {}  # state -> us spent

    def _count(self, state, start, end):
        if end > start:
            self.seconds[state] = self.seconds.get(state, 0) + (end - start)

    def advance(self, t):
        """Count the time up to t: the bursts that fall before it, the state between them."""
        if t <= self.since:
            return
        bursts = self.bursts
        while bursts and bursts[0][0] < t:
            start, end, state = bursts[0]
            self._count(self.state, self.since, start)
            stop = min(end, t)
            self._count(state, start, stop)
            self.since = stop
            if end <= t:
                bursts.pop(0)
            else:
                bursts[0][0] = t
                break
        self._count(self.state, self.since, t)
        self.since = t


class Energy:
    def __init__(self, board, sleep_mode):
        self.board = board
        self.sleep_mode = sleep_mode
        self.parts = {}
        self.groups = {}  # power group -> [gpio, on level, [part names]]
        self.resumed = {}  # part -> the state it goes back to after a sleep that stopped it

    def add(self, name, table, state):
        self.parts[name] = Part(table, state)

    def settle(self, now_us):
        """Count every part up to a minute before now_us: its bursts until then are done with."""
        for name in self.parts:
            self.parts[name].advance(now_us - _SETTLE_US)

    def set(self, name, state, at_us):
        part = self.parts[name]
        if state not in part.table:
            raise ValueError("no current for %s:%s" % (name, state))
        part.advance(at_us)
        part.state = state

    def burst(self, name, state, start_us, length_us):
        part = self.parts[name]
        if state not in part.table:
            raise ValueError("no current for %s:%s" % (name, state))
        length = int(length_us)
        if length <= 0:
            return
        start = max(int(start_us), part.since, part.free)
        part.free = start + length
        part.bursts.append([start, part.free, state])

    def group(self, name, gpio, on, members, at_us=0):
        """Power group `name`: its members are powered while GPIO `gpio` is at `on`; off until then."""
        self.groups[name] = [gpio, on, list(members)]
        for member in members:
            self.set(member, "off", at_us)

    def pin(self, gpio, level, at_us):
        for name in self.groups:
            g = self.groups[name]
            if g[0] == gpio:
                on = (1 if level else 0) == g[1]
                for member in g[2]:
                    self.set(member, _POWERED.get(member, "powered") if on else "off", at_us)

    def release_pins(self, at_us):
        """A reset or an esp32 deep sleep: GPIOs float, and every power group is off."""
        for name in self.groups:
            for member in self.groups[name][2]:
                self.set(member, "off", at_us)

    def pause(self, name, at_us):
        """The part is off while the chip sleeps (esp32 Wi-Fi in light sleep)."""
        if name in self.parts and name not in self.resumed:
            self.resumed[name] = self.parts[name].state
            self.set(name, "off", at_us)

    def resume(self, at_us):
        for name in self.resumed:
            self.set(name, self.resumed[name], at_us)
        self.resumed = {}

    def report(self, end_us):
        """The "energy" event's figures over [0, end_us]: every part counted up to end_us."""
        from firmware.sim import currents
        states = {}
        charge_mas = 0.0
        awake = 0
        radio_on = 0
        for name in self.parts:
            part = self.parts[name]
            part.advance(end_us)
            for state in part.seconds:
                us = part.seconds[state]
                states[name + ":" + state] = us / _US
                charge_mas += part.table[state] * us / _US
                if name == "mcu" and state in currents.AWAKE:
                    awake += us
                if name in RADIOS and state not in _RADIO_OFF:
                    radio_on += us
        seconds = end_us / _US
        avg = charge_mas / seconds if seconds > 0 else 0.0
        return {"mah_per_day": round(avg * 24, 3), "avg_ma": round(avg, 4),
                "awake_pct": round(100.0 * awake / end_us, 3) if end_us else 0.0,
                "radio_on_pct": round(100.0 * radio_on / end_us, 3) if end_us else 0.0,
                "floor_ma": currents.floor_ma(self.board, self.sleep_mode),
                "seconds": seconds, "states": states}


def for_site(raw):
    """The parts of the board a site config describes: MCU, radio, sensors and power groups.
    Read from the site JSON itself, so a `power` section the firmware's config does not know
    yet is honoured here; a sensor or radio with no group is powered all the time.
    The currents' tables are loaded here, not at import: the hooks in sim/io.py and the
    device models also run in the driver checks (tests/mp_drivers), where no model is kept."""
    from firmware.sim import currents

    board = raw["board"]
    e = Energy(board, (raw.get("sleep") or {}).get("mode", "light"))
    e.add("mcu", currents.BOARDS[board], "active")
    t = raw.get("transport") or {}
    if t.get("type") == "mqtt":
        e.add("wifi", currents.WIFI[currents.WIFI_CHIP[board]], "off")
    elif t.get("radio"):
        e.add("lora", currents.LORA, "rx")
    elif t.get("phy") == "rs485":
        e.add("rs485", currents.RS485, "idle")
    members = {}
    for s in raw.get("sensors", ()):
        e.add(s["name"], currents.SENSORS.get(s["type"], currents.UNKNOWN_SENSOR), "powered")
        if s.get("power"):
            members.setdefault(s["power"], []).append(s["name"])
    radio = [name for name in ("lora", "rs485") if name in e.parts]
    if t.get("power") and radio:
        members.setdefault(t["power"], []).append(radio[0])
    power = raw.get("power") or {}
    for name in members:
        g = power.get(name)
        if g is not None:
            e.group(name, g["pin"], g.get("on", 1), members[name])
    return e
