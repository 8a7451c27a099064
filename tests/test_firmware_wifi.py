"""Wi-Fi as the ports really have it: the simulated `network`/`socket` (firmware/sim/network.py,
netsock.py) against the MicroPython port sources, and the firmware's MQTT transport on it.

The model, run under the real MicroPython unix port (the firmware's process with the
virtual clock; the clock's sleeps advance virtual time at once, no hardware process):
- WLAN.connect() returns at once and status() walks the port's states while association
  and DHCP take their measured time;
- the methods take each port's arguments and refuse the rest with the port's exception;
- esp32 loses the association in light sleep and rejoins by itself; the CYW43 does not,
  and refuses nothing but never rejoins either;
- getaddrinfo() of a name whose DNS upstream is dead blocks 1+1+2+3 s per server.

The firmware, on the simulated board with a real Mosquitto and a gateway peer that acks:
- a Pico W rejoins a network it lost;
- an ESP32 in light sleep and one in deep sleep join, report, get their acks and sleep;
- a broker given by name is refused at config time with one line;
- acks that take longer than the speed-up leaves for them still count (issue 9's flake).
"""
import json
import subprocess
import threading
import time

import pytest

from tests.fixtures.firmware import ROOT, micropython, run_sim, site_config
from tests.test_firmware_mqtt import GatewayPeer, SimBoard, assert_ring_emptied, rain_site, scenario

_MODEL = r"""
import json
import sys
sys.path.insert(0, %(root)r)
from firmware.sim import board, vtime
board.state["port"] = %(port)r
board.state["dns"] = %(dns)s


class Clock(vtime.Clock):
    # The hardware process is not here: a sleep advances virtual time at once.
    def idle(self, us, wake_on_irq):
        self.advance()
        self.v_us += us


vtime.install(Clock())
import firmware.sim.network as network
import firmware.sim.netsock as socket


def step(ms):
    vtime.clock.v_us += ms * 1000


def attempt(call):
    try:
        call()
    except Exception as exc:
        return type(exc).__name__ + ":" + str(exc.args[0] if exc.args else "")
    return "ok"


out = {}
%(body)s
print("RESULT " + json.dumps(out))
"""


def model(port, body, dns="{}"):
    """Run `body` against the simulated network of `port` ("rp2" or "esp32"); its `out` dict."""
    script = _MODEL % {"root": str(ROOT), "port": port, "dns": dns, "body": body}
    done = subprocess.run([micropython(), "-c", script], capture_output=True, text=True, timeout=60)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    return json.loads(lines[-1][7:])


_WALK = """
wlan = network.WLAN(network.STA_IF)
out["before_active"] = attempt(lambda: wlan.connect("site", "secret"))
wlan.active(True)
t0 = vtime.ticks_ms()
wlan.connect("site", "secret")
out["connect_ms"] = vtime.ticks_diff(vtime.ticks_ms(), t0)
walk = []
for _ in range(40):
    s = wlan.status()
    if not walk or walk[-1][1] != s:
        walk.append([vtime.ticks_diff(vtime.ticks_ms(), t0), s])
    step(100)
out["walk"] = walk
out["connected"] = wlan.isconnected()
out["consts"] = [network.STAT_IDLE, network.STAT_CONNECTING, network.STAT_GOT_IP]
"""


@pytest.mark.parametrize("port, states", [("rp2", [1, 2, 3]), ("esp32", [1001, 1010])])
def test_wlan_connect_returns_at_once_and_status_walks_the_ports_states(port, states):
    out = model(port, _WALK)
    assert out["before_active"].startswith("OSError"), out  # connect() before active(True)
    assert out["connect_ms"] < 50, out  # connect() only starts the join
    assert [s for _, s in out["walk"]] == states, out
    got_ip_at = out["walk"][-1][0]
    assert 1500 <= got_ip_at <= 1800, out  # the measured DHCP join: 1626 ms
    assert out["connected"]
    assert out["consts"] == ([0, 1, 3] if port == "rp2" else [1000, 1001, 1010])


_ARGS = """
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
out["wlan_kw"] = attempt(lambda: network.WLAN(interface=network.STA_IF))
out["active_kw"] = attempt(lambda: wlan.active(on=True))
out["connect_kw"] = attempt(lambda: wlan.connect(ssid="site", key="secret"))
wlan.disconnect()
out["channel"] = attempt(lambda: wlan.connect("site", "secret", channel=6))
wlan.disconnect()
out["bssid"] = attempt(lambda: wlan.connect("site", "secret", bssid=b"\\x00\\x11\\x22\\x33\\x44\\x55"))
out["again_while_joining"] = attempt(lambda: wlan.connect("site", "secret"))
out["config_reconnects"] = attempt(lambda: wlan.config(reconnects=3))
out["config_antenna"] = attempt(lambda: wlan.config(antenna=0))
out["status_bad"] = attempt(lambda: wlan.status("bogus"))
"""


def test_wlan_methods_take_each_ports_arguments_only():
    rp2 = model("rp2", _ARGS)
    esp32 = model("esp32", _ARGS)
    # extmod/network_cyw43.c (v1.28.0): ssid/key may be keywords, channel and bssid are keyword-only
    assert rp2["connect_kw"] == rp2["channel"] == rp2["bssid"] == "ok", rp2
    assert rp2["again_while_joining"] == "ok", rp2  # cyw43_wifi_join starts over
    assert rp2["config_antenna"] == "ok" and rp2["config_reconnects"].startswith("ValueError"), rp2
    # ports/esp32/network_wlan.c (v1.28.0): ssid/key positional only, bssid the one keyword
    assert esp32["connect_kw"].startswith("TypeError"), esp32
    assert esp32["channel"].startswith("TypeError"), esp32
    assert esp32["bssid"] == "ok", esp32
    assert esp32["again_while_joining"] == "OSError:Wifi Internal Error", esp32  # micropython #17661
    assert esp32["config_reconnects"] == "ok" and esp32["config_antenna"].startswith("ValueError"), esp32
    for out in (rp2, esp32):
        assert out["wlan_kw"].startswith("TypeError") and out["active_kw"].startswith("TypeError"), out
        assert out["status_bad"].startswith("ValueError"), out


_LOSS = """
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("site", "secret")
step(2000)
out["joined"] = wlan.isconnected()
sock = socket.socket()
network.slept()  # what machine.lightsleep() tells the model at the wake
out["after_sleep"] = wlan.isconnected()
out["old_socket"] = attempt(lambda: sock.send(b"x"))
step(2000)
out["rejoined_after_sleep"] = wlan.isconnected()
board.state["link_down"] = True
out["status_down"] = wlan.status()
step(30000)
board.state["link_down"] = False
step(30000)
out["status_back"] = wlan.status()
out["rejoined_after_outage"] = wlan.isconnected()
"""


def test_esp32_loses_wifi_in_light_sleep_and_rejoins_itself_the_cyw43_does_not():
    esp32 = model("esp32", _LOSS)
    assert esp32["joined"] and not esp32["after_sleep"], esp32
    assert esp32["old_socket"] == "OSError:113", esp32  # the TCP session died with the association
    assert esp32["rejoined_after_sleep"] and esp32["rejoined_after_outage"], esp32
    assert esp32["status_down"] == 201, esp32  # STAT_NO_AP_FOUND while the port keeps trying
    rp2 = model("rp2", _LOSS)
    assert rp2["joined"] and rp2["after_sleep"], rp2  # the CYW43 is a chip of its own
    # The AP came back 30 s ago, and the CYW43 still says "connecting" but does nothing.
    assert rp2["status_back"] == 1 and not rp2["rejoined_after_outage"], rp2


_DNS = """
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("site", "secret")
step(2000)
t0 = vtime.ticks_ms()
out["literal"] = attempt(lambda: socket.getaddrinfo("127.0.0.1", 1883))
out["literal_ms"] = vtime.ticks_diff(vtime.ticks_ms(), t0)
t0 = vtime.ticks_ms()
out["name"] = attempt(lambda: socket.getaddrinfo("gateway.lan", 1883))
out["name_ms"] = vtime.ticks_diff(vtime.ticks_ms(), t0)
"""


@pytest.mark.parametrize("port", ["rp2", "esp32"])
def test_dns_to_a_dead_upstream_blocks_past_the_watchdog(port):
    one = model(port, _DNS, dns='{"servers": 1, "upstream": "dead"}')
    assert one["literal"] == "ok" and one["literal_ms"] < 50, one  # an address needs no lookup
    assert one["name"] == "OSError:-2", one
    assert 7000 <= one["name_ms"] < 7100, one  # lwIP: 1 + 1 + 2 + 3 s per server
    two = model(port, _DNS, dns='{"servers": 2, "upstream": "dead"}')
    assert two["name_ms"] >= 14000 > 8388, two  # past the largest rp2 watchdog timeout


# The firmware on the simulated board.

def wifi_site(board, broker, **changes):
    site = rain_site(site_config(board, thresholds=[], sleep={"mode": "light", "max_ms": 500}),
                     broker.host, broker.port)
    site["transport"].update(io_timeout_ms=250, burst=4)
    site.update(changes)
    return site


def finish(board, peer):
    try:
        board.finish()
    finally:
        board.stop()
        peer.close()


def resets(board, cause):
    return [e for e in board.of("board_reset") if e["cause"] == cause]


@pytest.mark.parametrize("name", ["pico_w", "pico2_w"])
def test_pico_w_rejoins_a_lost_network_itself(tmp_path, mosquitto_broker, name):
    """The access point is gone for two minutes while the board has frames to send: its
    join during the outage finds no network, and the CYW43 would never try again."""
    peer = GatewayPeer(mosquitto_broker)
    site = wifi_site(name, mosquitto_broker)
    raw = scenario(600, 240)
    raw["link_down"] = [{"from_s": 100, "to_s": 220}]
    board = SimBoard(tmp_path, site, raw, mosquitto_broker)
    finish(board, peer)
    acks_after = [e for e in board.of("ack") if e["ms"] > 220000]
    assert acks_after, "no ack after the network came back:\n" + board.tail()
    assert_ring_emptied(board)
    assert peer.store.tips() == board.tips() > 0


@pytest.mark.parametrize("name", ["esp32", "esp32s3"])
def test_esp32_in_light_sleep_joins_and_reports(tmp_path, mosquitto_broker, name):
    """Each light sleep costs an ESP32 its association: a board that sleeps between
    looks at a join under way never gets on the air."""
    peer = GatewayPeer(mosquitto_broker)
    site = wifi_site(name, mosquitto_broker)
    board = SimBoard(tmp_path, site, scenario(420, 240), mosquitto_broker)
    finish(board, peer)
    assert_ring_emptied(board)
    assert peer.store.tips() == board.tips() > 0


@pytest.mark.parametrize("name", ["esp32", "esp32s3"])
def test_esp32_deep_sleep_with_mqtt_joins_reports_waits_for_acks_and_sleeps(tmp_path, mosquitto_broker, name):
    """Deep sleep is a reset that loses the association: every wake must join, report,
    take its acks and only then sleep again."""
    peer = GatewayPeer(mosquitto_broker)
    site = wifi_site(name, mosquitto_broker, report_s=60,
                     sensors=[{"type": "battery", "name": "battery", "interval_s": 60}],
                     sleep={"mode": "deep", "max_ms": 60000}, watchdog={"timeout_ms": 8000})
    board = SimBoard(tmp_path, site, {"duration_s": 600, "world": {"battery_v": 4.0}}, mosquitto_broker)
    finish(board, peer)
    wakes = resets(board, 4)  # machine.DEEPSLEEP_RESET
    assert len(wakes) >= 5, board.tail()
    made = {e["seq"] for e in board.of("frame")}
    acked = {e["seq"] for e in board.of("ack")}
    assert len(made) >= 5 and made - acked <= {max(made)}, board.tail()  # the last wake may end the run
    assert not resets(board, 3), "a watchdog reset:\n" + board.tail()
    assert len(peer.store.frames) == len(acked)


def test_a_broker_given_by_name_is_refused_at_config_time(tmp_path):
    site = site_config("pico_w", thresholds=[], sleep={"mode": "light", "max_ms": 500})
    site["transport"] = {"type": "mqtt", "host": "gateway.lan", "port": 1883, "ssid": "site", "password": "x",
                         "io_timeout_ms": 250, "burst": 4}
    code, events, output = run_sim(tmp_path, site, {"duration_s": 60, "dns": {"upstream": "dead"}})
    errors = [line for line in output.splitlines() if line.startswith("config error:")]
    assert code == 2, output
    assert len(errors) == 1 and "transport.host" in errors[0] and "IPv4 address" in errors[0], output


class SlowPeer(GatewayPeer):
    """A gateway peer whose acks take `delay` seconds of real time, as a busy gateway's do."""

    delay = 0.3

    def __init__(self, broker):
        self.sent = threading.Event()
        super().__init__(broker)

    def _serve(self):
        publish = self.link.publish

        def later(topic, payload, qos=0):
            threading.Timer(self.delay, publish, (topic, payload), {"qos": qos}).start()

        self.link.publish = later
        super()._serve()


def test_acks_slower_than_the_speedup_still_count(tmp_path, mosquitto_broker):
    """The board waits 1.5 s for the gateway's ack. A sim that spent that wait as sleep
    at K x speed gave a real gateway 1.5 s / K (25 ms at 60x): on a loaded machine the
    ack missed it, the board backed off, and the last frame was not acked by the end."""
    peer = SlowPeer(mosquitto_broker)
    site = wifi_site("pico_w", mosquitto_broker)
    board = SimBoard(tmp_path, site, scenario(300, 240), mosquitto_broker)
    finish(board, peer)
    no_ack = [e for e in board.of("retry") if e["why"] == "no_ack"]
    assert not no_ack, "acks 0.3 s late missed the 1.5 s wait:\n" + board.tail()
    assert_ring_emptied(board)


def test_a_deep_sleeping_boards_network_work_must_fit_the_watchdog(tmp_path):
    """Deep sleep restarts the watchdog at each wake, but the join, the sends and the ack
    wait between two sleeps run under it: MQTT's default timeouts (14 s) do not fit 8 s."""
    site = site_config("esp32", thresholds=[], sensors=[{"type": "battery", "name": "battery", "interval_s": 60}],
                       sleep={"mode": "deep", "max_ms": 60000})
    site["transport"] = {"type": "mqtt", "host": "127.0.0.1", "port": 1883, "ssid": "site", "password": "x"}
    code, events, output = run_sim(tmp_path, site, {"duration_s": 60})
    errors = [line for line in output.splitlines() if line.startswith("config error:")]
    assert code == 2, output
    assert len(errors) == 1 and "network 14000" in errors[0] and "watchdog" in errors[0], output
