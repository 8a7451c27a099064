"""Issue 11, faults 1 and 2: times from boards and from the gateway's own clock.

A frame from the future must not silence a device's rules (restamped at
ingest; trackers unpinned from readings beyond the trusted clock, also
after a restart), and a gateway whose clock is not trusted gives boards no
time, takes the GSM network's time from the modem (the emulator on a pty,
speaking AT+CLTS / AT+CCLK?) and says so in its saved state, `status` and
`doctor`. The real SQLite writer and rule engine throughout.
"""
import datetime

from huaico import clock as clock_mod
from huaico.ops import doctor, status
from huaico.rules.engine import Rule, RuleEngine
from huaico.sms.modem import Modem, parse_cclk
from huaico.sms.modem_emulator import ModemEmulator
from huaico.store import db
from huaico.store.writer import Writer

NOW = 1_800_000_000.0
DAY = 86400
LIMA = datetime.timezone(datetime.timedelta(hours=-5))


def add_rule(home, **levels):
    rule = Rule("river-high", "above", levels or {"warning": 2.0, "emergency": 2.5},
                channel="water_level", place="Puente Huaycoloro")
    row = rule.to_row()
    row["created"] = row["updated"] = NOW - DAY
    with db.transaction(home.database) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)" % (", ".join(row), ", ".join("?" * len(row))),
                     list(row.values()))


class Gateway:
    """A writer and rule engine on the home's database; restart() makes new
    ones, as a new process would (trackers rebuilt from the database)."""

    def __init__(self, home, clock=None):
        self.home = home
        self.time = [NOW]
        self.clock = clock
        self.restart()

    def restart(self):
        clock = self.clock if self.clock is not None else (lambda: self.time[0])
        engine = RuleEngine(self.home.database, self.home.config,
                            clock=self.clock)
        self.writer = Writer(self.home.database, engine=engine, clock=clock)

    def send(self, board, level_mm, at, stamped=None):
        """A water level reading received at `at`, stamped `stamped` (default: at) by the board."""
        self.time[0] = at
        raw = board.frame([(4, 0, 0, level_mm, 0)], time=int(at if stamped is None else stamped))
        return self.writer.process([("test", raw, at, None)])

    def alerts(self):
        return [(r["level"], r["status"]) for r in self.home.open().query(
            "SELECT level, status FROM alerts ORDER BY id")]


def test_a_frame_from_the_future_is_restamped_and_later_readings_raise_after_a_restart(
        gateway_home):
    add_rule(gateway_home)
    board = gateway_home.add("river1")
    gateway = Gateway(gateway_home)
    assert gateway.send(board, 800, NOW, stamped=NOW + 30 * DAY) == ["stored"]
    row = gateway_home.readings(board)[0]
    # Stored at its receive time, flagged as not the board's time, counted.
    assert (row["time"], row["unsynced"]) == (int(NOW), 1)
    assert gateway_home.counters()["restamped_future"] == 1
    gateway.restart()
    for minute, level in enumerate((2600, 3100, 3500), 1):
        assert gateway.send(board, level, NOW + 60 * minute) == ["stored"]
    assert gateway.alerts() == [("emergency", "active")]


def test_a_future_reading_stored_by_an_older_gateway_does_not_pin_the_rules(gateway_home):
    """The database of a gateway from before the check holds a reading 30
    days ahead: a restarted engine's trackers must not take it as newest."""
    add_rule(gateway_home)
    board = gateway_home.add("river1")
    gateway = Gateway(gateway_home)
    assert gateway.send(board, 800, NOW) == ["stored"]
    with db.transaction(gateway_home.database) as conn:
        conn.execute("INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, "
                     "received, unsynced) VALUES (?, 99, 4, 0, ?, 900, 0, ?, 0)",
                     [board.row["id"], int(NOW + 30 * DAY), NOW])
    gateway.restart()
    for minute, level in enumerate((2600, 3100, 3500), 1):
        assert gateway.send(board, level, NOW + 60 * minute) == ["stored"]
    assert gateway.alerts() == [("emergency", "active")]


def test_readings_within_the_tolerance_keep_the_boards_time(gateway_home):
    board = gateway_home.add("river1")
    gateway = Gateway(gateway_home)
    ahead = NOW + clock_mod.FUTURE_TOLERANCE_S
    assert gateway.send(board, 800, NOW, stamped=ahead) == ["stored"]
    assert [(r["time"], r["unsynced"]) for r in gateway_home.readings(board)] == [(int(ahead), 0)]


class KernelSays:
    """The system's sync state as a test sets it (huaico.clock.SystemSync's interface)."""

    def __init__(self, synced, detail):
        self.synced = synced
        self.detail = detail

    def state(self):
        return self.synced, self.detail


def test_an_untrusted_clock_gives_boards_no_time_and_says_so(gateway_home):
    # A Pi that booted at 1970 without NTP or a modem.
    clock = clock_mod.GatewayClock(system=KernelSays(False, "kernel: not synchronised"),
                                   wall=lambda: 3 * DAY)
    clock.check()
    assert not clock.trusted and clock.ack_time() is None
    board = gateway_home.add("rg1")
    acks = []
    writer = Writer(gateway_home.database, clock=clock)
    raw = board.frame(flags=1)  # a board that has never been synced
    assert writer.process([("test", raw, 3 * DAY, acks.append)]) == ["stored"]
    kid, seq, gateway_time = board.ack(acks[0])
    assert (seq, gateway_time) == (1, None)
    # Its rows are stamped with the gateway's (untrusted) time and flagged.
    assert gateway_home.readings(board)[0]["unsynced"] == 1
    check = gateway_home.open()
    assert clock_mod.saved_state(check)[:2] == (False, "none")
    shown = status.render(status.collect(check, 900, now=3 * DAY))
    assert any("Gateway clock NOT trusted" in line for line in shown), shown
    lines = {c.name: c for c in doctor.check_clock(now=3 * DAY, system=KernelSays(False, "x"),
                                                   database=check)}
    assert lines["clock"].level == doctor.FAIL and "1970" in lines["clock"].detail
    assert lines["gateway clock"].level == doctor.WARN
    assert "NOT trusted" in lines["gateway clock"].detail


def test_a_clock_behind_stored_data_is_not_trusted_even_when_synced():
    clock = clock_mod.GatewayClock(system=KernelSays(True, "kernel: synchronised"),
                                   wall=lambda: NOW - 3 * DAY)
    clock.note_data(NOW)
    clock.check()
    assert not clock.trusted and "behind data already stored" in clock.detail
    clock.wall = lambda: NOW + 10
    assert clock.check()["trusted"] and clock.source == "system"


def test_the_modems_network_time_stands_in_for_ntp(gateway_home):
    emulator = ModemEmulator()
    modem = Modem(emulator.path, command_timeout=2.0)
    try:
        wall = [NOW - 5 * DAY]  # fake-hwclock restored a time five days old
        clock = clock_mod.GatewayClock(system=KernelSays(False, "kernel: not synchronised"),
                                       wall=lambda: wall[0], network=modem.network_time)
        clock.note_data(NOW - DAY)
        # A modem that has heard no network time answers its power-up clock (2004).
        clock.check()
        assert not clock.trusted and "network time 2004-01-01" in clock.detail, clock.detail
        assert emulator.clts == 1  # the gateway asked the modem to take the network's time
        # The network gives its time (Lima, UTC-5): the gateway runs on it.
        emulator.network_time = lambda: datetime.datetime.fromtimestamp(NOW, LIMA)
        clock.check()
        assert clock.trusted and clock.source == "network"
        assert abs(clock.now() - NOW) <= 2
        wall[0] += 60
        assert abs(clock.now() - (NOW + 60)) <= 2
        board = gateway_home.add("rg1")
        acks = []
        writer = Writer(gateway_home.database, clock=clock)
        writer.process([("test", board.frame(flags=1), wall[0], acks.append)])
        assert abs(board.ack(acks[0])[2] - (NOW + 60)) <= 2
        # Readers stamp frames with the system clock; the writer corrects them.
        assert abs(gateway_home.readings(board)[0]["received"] - (NOW + 60)) <= 2
        # The modem goes away: the network's time is held, not dropped for the wrong clock.
        modem.close()
        clock.check()
        assert clock.trusted and "held" in clock.detail and abs(clock.now() - (NOW + 60)) <= 2
    finally:
        modem.close()
        emulator.close()


def test_cclk_answers_are_read_as_utc():
    assert parse_cclk('+CCLK: "27/01/15,03:00:00-20"') == parse_cclk('+CCLK: "27/01/15,08:00:00+00"')
    assert parse_cclk('+CCLK: "27/01/15,08:00:00+00"') == int(
        datetime.datetime(2027, 1, 15, 8, tzinfo=datetime.timezone.utc).timestamp())
    assert parse_cclk('+CCLK: "27/01/15,13:30:00+22"') == parse_cclk('+CCLK: "27/01/15,08:00:00+00"')
    assert parse_cclk('+CCLK: "garbage"') is None


def test_run_logs_the_clock_and_acks_with_the_time_it_trusts(gateway_home, caplog):
    """`huaico run`'s Service wires the clock: [clock] trust = "system" is the
    operator's word for a gateway with an RTC; the log and the acks follow it."""
    import logging
    import socket
    import time

    from huaico import config as config_mod
    from huaico.service.process import Service

    path = gateway_home.path / "huaico.toml"
    path.write_text(path.read_text().replace('trust = "auto"', 'trust = "system"'))
    config = config_mod.load(gateway_home.path)
    board = gateway_home.add("rg1")
    caplog.set_level(logging.INFO, logger="huaico")
    service = Service(config, udp="127.0.0.1:0", rules=False)
    service.start()
    try:
        address = service.readers[0].address
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sender.settimeout(10)
        sender.sendto(board.frame(flags=1), address)
        _, seq, gateway_time = board.ack(sender.recvfrom(1024)[0])
        sender.close()
    finally:
        service.stop()
    assert seq == 1 and abs(gateway_time - time.time()) < 5
    started = [r.getMessage() for r in caplog.records if "event=started" in r.getMessage()]
    assert "clock=trusted clock_source=system" in started[0], started
    assert clock_mod.saved_state(gateway_home.open())[:2] == (True, "system")


def test_a_future_rain_reading_does_not_empty_an_accumulation_window(gateway_home):
    """A window trimmed to 10 minutes before a reading a month ahead holds
    nothing real: after a restart the tracker drops the future reading and
    the rain of the last 10 minutes raises."""
    rule = Rule("rain-10min", "accumulation", {"warning": 10.0}, channel="rain", window_s=600)
    row = rule.to_row()
    row["created"] = row["updated"] = NOW - DAY
    with db.transaction(gateway_home.database) as conn:
        conn.execute("INSERT INTO rules (%s) VALUES (%s)" % (", ".join(row), ", ".join("?" * len(row))),
                     list(row.values()))
        board = gateway_home.add("pluvio")
        conn.execute("INSERT INTO readings (device_id, seq, channel, idx, time, value, quality, "
                     "received, unsynced) VALUES (?, 99, 1, 0, ?, 1, 0, ?, 0)",
                     [board.row["id"], int(NOW + 30 * DAY), NOW - 60])
    gateway = Gateway(gateway_home)
    for minute in range(1, 5):  # 4 x 3.0 mm in four minutes
        gateway.time[0] = NOW + 60 * minute
        raw = board.frame([(1, 0, 0, 30, 0)], time=int(NOW + 60 * minute))
        assert gateway.writer.process([("test", raw, NOW + 60 * minute, None)]) == ["stored"]
    assert gateway.alerts() == [("warning", "active")]


def test_the_dispatcher_reads_the_gateways_clock(gateway_home):
    """The writer stamps the outbox with the gateway's clock; when that clock
    runs on the network's time, days away from the system clock, the
    dispatcher must read the same clock or it holds every message for days."""
    import socket
    import time

    from huaico import config as config_mod
    from huaico.service.process import Service

    emulator = ModemEmulator()
    try:
        path = gateway_home.path / "huaico.toml"
        path.write_text(path.read_text().replace('backend = "none"', 'backend = "modem"')
                        .replace('port = ""', 'port = "%s"' % emulator.path, 1)
                        .replace("numbers = []", 'numbers = ["+51987654321"]'))
        config = config_mod.load(gateway_home.path)
        assert config["sms"]["port"] == emulator.path
        add_rule(gateway_home, emergency=2.5)
        board = gateway_home.add("river1")
        ahead = 5 * DAY  # the network's time, five days after the system clock
        clock = clock_mod.GatewayClock(system=KernelSays(True, "test"),
                                       wall=lambda: time.time() + ahead)
        service = Service(config, udp="127.0.0.1:0", clock=clock)
        service.start()
        try:
            sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sender.sendto(board.frame([(4, 0, 0, 3100, 0)], time=int(clock.now())),
                          service.readers[0].address)
            sender.close()
            deadline = time.monotonic() + 20
            while not emulator.sent and time.monotonic() < deadline:
                time.sleep(0.1)
        finally:
            service.stop()
        assert emulator.sent, "the EMERGENCY SMS was held: the dispatcher read another clock"
    finally:
        emulator.close()
