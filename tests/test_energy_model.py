"""The simulated board's energy model (firmware/sim/energy_model.py): its arithmetic against an
independent microsecond-by-microsecond count, and the states real firmware runs show.

The property test replays random state changes and bursts on a model and on a
plain per-microsecond timeline built here, and wants the same seconds per
state, each part's seconds adding up to the run, and the charge equal to the
sum of current x time. The firmware runs are the real firmware on the
MicroPython unix port (tests/fixtures/firmware.py), one per sleep mode.
"""
import json
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware.sim import currents, energy, energy_model
from tests.fixtures.firmware import ROOT, micropython, run_sim, site_config, smallest_claimed_heap

TABLE = {"a": 1.0, "b": 7.5, "c": 120.0}
PARTS = ("p", "q")
END = 400  # us: small, so the oracle can count every microsecond

_op = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(PARTS), st.sampled_from(sorted(TABLE)), st.integers(0, END)),
    st.tuples(st.just("burst"), st.sampled_from(PARTS), st.sampled_from(sorted(TABLE)), st.integers(0, END),
              st.integers(0, END)),
    # the hardware's settle at a sleep: every part counted up to a minute before it
    st.tuples(st.just("settle"), st.just(None), st.just(None), st.integers(0, END)),
)


def _oracle(ops, part):
    """Seconds per state of `part`, counted one microsecond at a time: the base state set last
    (from the later of its time and every earlier set's), under the bursts, each of which starts
    no earlier than that and than the end of the one before."""
    timeline = ["a"] * END
    since = 0
    free = 0
    for op in ops:
        if op[0] == "settle":
            since = max(since, op[3])
            continue
        if op[1] != part:
            continue
        if op[0] == "set":
            since = max(since, op[3])
            for u in range(since, END):
                if not isinstance(timeline[u], tuple):  # a burst placed ahead stays
                    timeline[u] = op[2]
        elif op[4] > 0:
            start = max(op[3], since, free)
            free = start + op[4]
            for u in range(start, min(free, END)):
                timeline[u] = ("burst", op[2])
    counts = {}
    for state in timeline:
        state = state[1] if isinstance(state, tuple) else state
        counts[state] = counts.get(state, 0) + 1
    return counts


@settings(max_examples=300, deadline=None)
@given(st.lists(_op, max_size=25))
def test_totals_equal_the_sum_of_state_times(ops):
    e = energy_model.Energy("pico", "light")
    for name in PARTS:
        e.add(name, TABLE, "a")
    for op in ops:
        if op[0] == "set":
            e.set(op[1], op[2], op[3])
        elif op[0] == "settle":
            e.settle(op[3] + energy_model._SETTLE_US)
        else:
            e.burst(op[1], op[2], op[3], op[4])
    report = e.report(END)
    charge = 0.0
    for name in PARTS:
        expected = _oracle(ops, name)
        got = {key.split(":")[1]: round(s * 1e6) for key, s in report["states"].items()
               if key.startswith(name + ":") and s > 0}
        assert got == expected
        assert sum(got.values()) == END
        charge += sum(TABLE[state] * us / 1e6 for state, us in expected.items())
    assert report["avg_ma"] == pytest.approx(charge / (END / 1e6), rel=1e-3, abs=1e-4)
    assert report["mah_per_day"] == pytest.approx(report["avg_ma"] * 24, rel=1e-3, abs=1e-3)


def test_a_state_without_a_current_is_refused():
    e = energy_model.Energy("pico", "light")
    e.add("p", TABLE, "a")
    with pytest.raises(ValueError, match="p:z"):
        e.set("p", "z", 10)


_HOOKS = r"""
import json
import sys
sys.path.insert(0, %(root)r)
from firmware.sim import bus, energy, energy_model, hwclock
now = [0]
hwclock.follow(lambda: now[0])  # the hardware process's clock, moved by hand
bus.reset()
energy.model = energy_model.for_site(json.loads(%(site)r))
%(body)s
print("RESULT " + json.dumps(energy.model.report(%(end_us)d)))
"""


def hooks(site, body, end_s):
    """Run `body` in the hardware process's modules (MicroPython, as run.py runs them) with the
    board's energy model for `site`; the model's report at end_s."""
    script = _HOOKS % {"root": str(ROOT), "site": json.dumps(site), "body": body, "end_us": end_s * 1000000}
    done = subprocess.run([micropython(), "-c", script], capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    return json.loads(lines[-1][7:])


def test_power_group_follows_its_enable_pin():
    """A sensor named in a `power` group is off until its pin is driven to `on`, powered while
    it is, and a sensor with no group is powered all the time (issue 12's shared schema)."""
    site = site_config("pico")
    site["power"] = {"probe": {"pin": 15, "on": 1, "settle_ms": 20}}
    site["sensors"].append({"type": "ultrasonic_level", "name": "level0", "interval_s": 300,
                            "mount_height_m": 3.0, "power": "probe"})
    report = hooks(site, """
from firmware.sim import io
pin = io.Pin(15, io.Pin.OUT, value=0)
now[0] = 100000000
pin.value(1)
now[0] = 130000000
pin.value(0)
""", 200)
    states = report["states"]
    assert states["level0:powered"] == pytest.approx(30)
    assert states["level0:off"] == pytest.approx(170)
    assert states["batt:powered"] == pytest.approx(200)


def test_rs485_driver_transmits_while_bytes_cross_the_line():
    site = site_config("pico")
    site["transport"]["phy"] = "rs485"
    report = hooks(site, """
from firmware.sim.uart import UART
UART(0, baudrate=9600).write(b"x" * 96)  # 960 bits at 9600 baud: 100 ms
""", 10)
    assert report["states"]["rs485:tx"] == pytest.approx(0.1)
    assert report["states"]["rs485:idle"] == pytest.approx(9.9)
    assert report["radio_on_pct"] == pytest.approx(100)  # its receiver listens all the time


def test_lora_module_transmits_for_its_air_time():
    """The board's LoRa module is on the air for AN1200.13's time (firmware/lora.py) and
    receives the rest of the time, having no power group."""
    site = site_config("pico")
    site["transport"]["radio"] = {"region": "EU868", "sf": 10}
    site["transport"]["baud"] = 9600
    report = hooks(site, """
from boards import load
from firmware.sim.devices import wire
from firmware.sim.uart import UART
wire(load("pico"), json.loads(%r))
uart = UART(0, baudrate=9600)
uart.write(b"y" * 20)
now[0] = 5000000
uart.any()
""" % json.dumps(site), 60)
    from firmware import lora

    sf, bw, cr, preamble, _, _ = lora.settings(site["transport"]["radio"])
    air = lora.airtime_us(20, sf, bw, cr, preamble) / 1e6
    assert report["states"]["lora:tx"] == pytest.approx(air, abs=1e-5)
    assert report["states"]["lora:rx"] == pytest.approx(60 - air, abs=1e-5)


def _energy(events):
    found = [e for e in events if e.get("ev") == "energy"]
    assert len(found) == 1, events[-5:]
    return found[0]


def _check_totals(figures, duration_s, board):
    mcu = sum(s for key, s in figures["states"].items() if key.startswith("mcu:"))
    assert mcu == pytest.approx(duration_s, abs=1e-3)
    charge = sum(s * _current(board, key) for key, s in figures["states"].items())
    assert figures["avg_ma"] == pytest.approx(charge / duration_s, rel=1e-3)


def _current(board, key):
    part, state = key.split(":")
    if part == "mcu":
        return currents.BOARDS[board][state]
    return currents.SENSORS["battery" if part == "batt" else "rain_gauge"][state]


DRY = {"duration_s": 900, "world": {"battery_v": 4.0}}


def test_a_board_in_lightsleep_is_awake_a_small_share(tmp_path, uart_peer, compiled_runner):
    """Dry weather, one 15-minute report: the pico sleeps light between its wakes."""
    site = site_config("pico", report_s=900)
    code, events, output = run_sim(tmp_path, site, DRY, speed=300, uart=uart_peer.spec,
                                   runner=compiled_runner, heap=166 * 1024)
    assert code == 0, output[-2000:]
    figures = _energy(events)
    _check_totals(figures, 900, "pico")
    assert figures["states"]["mcu:light"] > 0.98 * 900
    assert figures["awake_pct"] < 2
    assert figures["radio_on_pct"] == 0  # a UART cable: no radio
    assert figures["floor_ma"] == currents.BOARDS["pico"]["light"]
    assert figures["floor_ma"] <= figures["avg_ma"] < 1.1 * currents.BOARDS["pico"]["light"] + 0.5


def test_a_board_that_never_sleeps_is_awake_all_the_time(tmp_path, uart_peer, compiled_runner):
    site = site_config("pico", report_s=900, sleep={"mode": "none", "max_ms": 2000})
    code, events, output = run_sim(tmp_path, site, {"duration_s": 120, "world": {"battery_v": 4.0}},
                                   speed=20, uart=uart_peer.spec, runner=compiled_runner, heap=166 * 1024)
    assert code == 0, output[-2000:]
    figures = _energy(events)
    _check_totals(figures, 120, "pico")
    assert "mcu:light" not in figures["states"]
    assert figures["awake_pct"] == pytest.approx(100)
    assert figures["avg_ma"] == pytest.approx(currents.BOARDS["pico"]["idle"], rel=0.01)


def test_a_board_in_deepsleep_counts_deep_sleep_and_boots(tmp_path, uart_peer, compiled_runner):
    """esp32 deep sleep: each wake is a boot (a reset), the time between them deep sleep."""
    site = site_config("esp32", sensors=[{"type": "battery", "name": "batt", "interval_s": 60, "ratio": 2.0}],
                       thresholds=[], report_s=60, sleep={"mode": "deep", "max_ms": 60000},
                       watchdog={"timeout_ms": 30000})
    code, events, output = run_sim(tmp_path, site, {"duration_s": 600, "world": {"battery_v": 4.0}},
                                   speed=100, uart=uart_peer.spec, runner=compiled_runner, heap=100 * 1024)
    assert code == 0, output[-2000:]
    figures = _energy(events)
    _check_totals(figures, 600, "esp32")
    resets = [e for e in events if e.get("ev") == "board_reset" and e.get("cause") == 4]
    assert len(resets) >= 5  # a wake from deep sleep each minute or so
    assert figures["states"]["mcu:deep"] > 0.9 * 600
    assert figures["awake_pct"] < 10


MQTT = {"type": "mqtt", "ssid": "site", "password": "secret", "mtu": 255, "connect_timeout_ms": 1500,
        "io_timeout_ms": 250, "ack_timeout_ms": 1500, "burst": 4}


@pytest.mark.parametrize("board", ["pico_w", "esp32"])
def test_wifi_states_follow_the_join_the_association_and_the_sends(tmp_path, mosquitto_broker, compiled_runner,
                                                                     board):
    """The radio's states from the simulated network: one join of the measured 1.626 s, then
    associated; each socket write a transmit burst. The CYW43 keeps its association through
    lightsleep; an esp32's radio is off while it sleeps (ESP-IDF "Sleep Modes")."""
    from tests.test_firmware_mqtt import GatewayPeer

    peer = GatewayPeer(mosquitto_broker)
    # The Pico W reports every 20 s, sooner than firmware/mqttlink.py's _STAY_MS (30 s): it stays
    # joined between reports (at 30 s it leaves and joins again, the join-report-leave of
    # tests/test_firmware_power.py).
    site = site_config(board, report_s=20 if board == "pico_w" else 30, thresholds=[],
                       transport=dict(MQTT, host=mosquitto_broker.host, port=mosquitto_broker.port))
    try:
        code, events, output = run_sim(tmp_path, site, {"duration_s": 120, "world": {"battery_v": 4.0}},
                                       speed=20, mqtt="%s:%d" % (mosquitto_broker.host, mosquitto_broker.port),
                                       runner=compiled_runner, heap=smallest_claimed_heap(board))
    finally:
        peer.close()
    assert code == 0, output[-2000:]
    assert len(peer.store.frames) >= 2  # it reported each sampling round, and the gateway acked
    states = _energy(events)["states"]
    packets = states["wifi:tx"] / 0.02  # currents.WIFI_TX_US each, one after another
    assert packets >= 4 and packets == pytest.approx(round(packets), abs=1e-3)
    radio = states.get("wifi:join", 0) + states.get("wifi:idle", 0) + states["wifi:tx"]
    assert _energy(events)["radio_on_pct"] == pytest.approx(100 * radio / _energy(events)["seconds"], rel=1e-3)
    if board == "pico_w":
        assert states["wifi:join"] == pytest.approx(1.626, abs=0.01)
        assert states["wifi:idle"] > 110
    else:
        assert states["wifi:off"] > 100  # asleep most of the time, its radio with it
        assert states["mcu:light"] > 100


def test_a_long_run_keeps_few_bursts_and_the_same_totals():
    """A month of sensor conversions and packets: what the hardware process holds stays small
    (it counts each part up to a minute ago at every sleep), and nothing is lost in the count."""
    e = energy_model.Energy("pico", "light")
    e.add("mcu", currents.BOARDS["pico"], "active")
    e.add("probe", currents.SENSORS["ds18b20"], "powered")
    step = 30 * 1000000
    end = 30 * 24 * 3600 * 1000000
    for t in range(0, end, step):
        e.settle(t)
        e.set("mcu", "light", t + 100000)
        e.set("mcu", "active", t + step - 1)
        e.burst("probe", "converting", t + 200000, 750000)
        assert len(e.parts["probe"].bursts) <= 3
    states = e.report(end)["states"]
    conversions = end // step
    assert states["probe:converting"] == pytest.approx(conversions * 0.75)
    assert states["probe:powered"] + states["probe:converting"] == pytest.approx(end / 1e6)


def test_the_hardware_settles_the_model_at_each_sleep():
    """The hardware process's own sleeps (hardware.py idle) keep the model's pending bursts few:
    a day of 30 s sleeps, a JSN-SR04T ping in each, as the demo's river board makes them."""
    site = site_config("pico")
    site["sensors"].append({"type": "ultrasonic_level", "name": "level0", "interval_s": 30,
                            "mount_height_m": 3.0})
    report = hooks(site, """
from firmware.sim.hardware import Hardware
from firmware.sim.scenario import Scenario


class Chip:
    pass


hw = Hardware(Scenario({"duration_s": 90000}), 1e12, Chip())
most = 0
for i in range(2880):
    t = i * 30000000
    hw.idle(t, t + 29000000, None)
    energy.charge("level0", "converting", t + 29500000, 50000)
    most = max(most, len(energy.model.parts["level0"].bursts))
print("MOST", most)
assert most <= 3, most
""", 86400)
    assert report["states"]["level0:converting"] == pytest.approx(2880 * 0.05)
