"""The firmware's MQTT transport, run for real: the simulated board (the real
firmware under the MicroPython unix port, `firmware/sim/run.py --mqtt`)
publishes its frames to a real Mosquitto, and a frame leaves its ring only on
the gateway's own signed ack, never on the broker's PUBACK.

(a) the real gateway (`huaico run` with [mqtt] enabled) stores every tip once
    and the board's ring empties;
(b) a gateway-side peer in the test withholds its acks for a while: the board
    keeps its frames through the broker's PUBACKs and resends them;
(c) the broker goes down mid-run and comes back: nothing is lost, the board
    reconnects;
(d) the board's connection goes silent without an error (a proxy in the
    test swallows it, as an access point or NAT that lost its state does):
    the board notices the broker owes it replies, opens a new session and
    loses nothing.
No run may end in a watchdog reset: every network call is bounded.
"""
import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from huaico.mqtt.link import MqttLink
from huaico.protocol.cose import MacKey
from huaico.protocol.frame import EPOCH_SHIFT, MAX_COUNTER, encode_ack
from tests.fixtures.firmware import HARDWARE_HEAP, KEY_HEX, KID_HEX, ROOT, RUNNER, Store, micropython

CLI = [sys.executable, "-c", "from huaico.cli.main import main; main()"]
RAIN_TIPS = 2  # protocol/channels.py "rain_tips"
WAIT = 60.0  # upper bound on a loaded machine, not a measurement
SPEED = 60


def rain_site(site, host, port):
    """A site config with a rain gauge reporting every minute over MQTT."""
    site = dict(site)
    site["sensors"] = [
        {"type": "rain_gauge", "name": "rain0", "index": 0, "interval_s": 60,
         "mm_per_tip": 0.2, "debounce_ms": 20},
        {"type": "battery", "name": "battery", "interval_s": 300},
    ]
    site["report_s"] = 60
    site["transport"] = dict(site["transport"], type="mqtt", host=host, port=port)
    return site


def scenario(duration_s, rain_to_s, every_s=4.0):
    return {"duration_s": duration_s, "world": {"battery_v": 4.0},
            "rain": [{"from_s": 0, "to_s": rain_to_s, "every_s": every_s}]}


class SimBoard:
    """The simulated board as a process whose JSON event lines the test can watch while it runs."""

    def __init__(self, tmp_path, site, scenario_raw, broker, speed=SPEED):
        """`broker`: anything with .host and .port (the fixture broker, or a proxy to it)."""
        site_path = tmp_path / "site.json"
        site_path.write_text(json.dumps(site))
        scenario_path = tmp_path / "scenario.json"
        scenario_path.write_text(json.dumps(scenario_raw))
        self.events = []
        self.output = []
        self.cond = threading.Condition()
        # The heaps as run_sim gives them: the hardware process the PC's side, the firmware the
        # same 190000 B free at start (plus the simulator's own modules beside it, runner.py).
        self.process = subprocess.Popen(
            [micropython(), "-X", "heapsize=%d" % HARDWARE_HEAP, str(RUNNER), "--site", str(site_path),
             "--scenario", str(scenario_path), "--flash", str(tmp_path / "flash"),
             "--speed", str(speed), "--mqtt", "%s:%d" % (broker.host, broker.port), "--free-heap", "190000"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.process.stdout:
            with self.cond:
                self.output.append(line)
                if line.startswith("{"):
                    try:
                        self.events.append(json.loads(line))
                    except ValueError:
                        pass
                self.cond.notify_all()

    def of(self, name):
        with self.cond:
            return [e for e in self.events if e["ev"] == name]

    def wait_for(self, predicate, what, timeout=WAIT):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None and not self.reader.is_alive():
                    raise AssertionError("board never showed %s:\n%s" % (what, self.tail()))
                self.cond.wait(min(left, 0.2))

    def finish(self, timeout=WAIT * 3):
        try:
            code = self.process.wait(timeout=timeout)
        finally:
            self.stop()
        self.reader.join(timeout=5)
        assert code == 0, self.tail()
        return code

    def stop(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tail(self, lines=60):
        return "".join(self.output[-lines:])

    def tips(self):
        ends = self.of("sim_end")
        assert ends, self.tail()
        return ends[-1]["tips"]


def eventually(predicate, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "never happened: " + what
        time.sleep(0.02)


def assert_ring_emptied(board):
    """Every frame the board committed was acked by the gateway, and the ring is empty."""
    made = {e["seq"] for e in board.of("frame")}
    acked = {e["seq"] for e in board.of("ack")}
    assert made, board.tail()
    assert made == acked, "frames never acked: %s\n%s" % (sorted(made - acked), board.tail())
    assert board.of("ack")[-1]["ring"] == 0, board.tail()
    assert not board.of("board_reset"), "a network call outlived the watchdog:\n" + board.tail()


class GatewayPeer:
    """The gateway's MQTT end, in the test: paho (huaico.mqtt.link.MqttLink) subscribed to
    huaico/+/up, frames decoded with huaico.ingest.decoder, acks sent on the device's ack
    topic while `holding` is clear."""

    def __init__(self, broker):
        self.key = MacKey(bytes.fromhex(KEY_HEX))
        self.store = Store()
        self.holding = threading.Event()
        self.withheld = 0
        self.acks = 0
        self.link = MqttLink(broker.host, broker.port, "test-gateway", protocol="3.1.1",
                             clean=False, reconnect_delay=(0.1, 0.5))
        self.link.subscribe("huaico/+/up", qos=1)
        self.link.start()
        assert self.link.wait_connected(10), "the test's gateway peer could not reach the broker"
        self.stopping = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        import queue

        while not self.stopping:
            try:
                event = self.link.events.get(timeout=0.2)
            except queue.Empty:
                continue
            if event[0] != "message" or not event[1].endswith("/up"):
                continue
            frame = self.store.take(event[2], self.key)
            if frame is None:
                continue
            if self.holding.is_set():
                self.withheld += 1
                continue
            ack = encode_ack(frame.kid, self.key, frame.seq, int(time.time()))
            self.link.publish("huaico/%s/ack" % bytes(frame.kid).hex(), ack, qos=1)
            self.acks += 1

    def close(self):
        self.stopping = True
        self.thread.join(timeout=5)
        self.link.stop()


def test_board_keeps_frames_through_pubacks_until_the_gateway_acks(tmp_path, mosquitto_broker):
    from tests.fixtures.firmware import site_config

    peer = GatewayPeer(mosquitto_broker)
    peer.holding.set()
    site = rain_site(site_config("pico_w", thresholds=[], sleep={"mode": "light", "max_ms": 500}),
                     mosquitto_broker.host, mosquitto_broker.port)
    site["transport"].update(io_timeout_ms=250, burst=4)
    board = SimBoard(tmp_path, site, scenario(600, 240), mosquitto_broker)
    try:
        # Withheld: the broker took each publish (PUBACK), the ring kept it.
        board.wait_for(lambda: len([e for e in board.events if e["ev"] == "sent" and e["seq"] == 0]) >= 3,
                       "seq 0 resent while its acks are withheld")
        held_ring = board.of("retry")[-1]["ring"]
        assert not board.of("ack"), board.tail()
        assert held_ring >= 1
        mosquitto_broker.wait_log("Sending PUBACK to huaico-%s" % KID_HEX)
        eventually(lambda: peer.store.arrivals >= 3 and 0 in peer.store.frames,
                   "the peer receiving the resends")
        peer.holding.clear()
        board.finish()
    finally:
        board.stop()
        peer.close()
    assert peer.withheld >= 3
    assert_ring_emptied(board)
    assert not peer.store.rejects and not peer.store.reused
    assert peer.store.tips() == board.tips() > 0
    assert peer.store.arrivals > len(peer.store.frames)  # resends reached the gateway


# The real gateway.

def huaico(home, *args):
    env = dict(os.environ, HUAICO_HOME=str(home), PYTHONPATH=str(ROOT))
    done = subprocess.run(CLI + list(args), env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def gateway_home(tmp_path, broker):
    """A HUAICO_HOME made by `huaico init`, [mqtt] on the fixture broker, one pico_w on MQTT."""
    import tomllib

    home = tmp_path / "home"
    huaico(home, "init")
    toml = home / "huaico.toml"
    text = toml.read_text()
    text = text.replace("enabled = false", "enabled = true", 1)
    text = text.replace("port = 1883", "port = %d" % broker.port, 1)
    toml.write_text(text)
    mqtt = tomllib.loads(text)["mqtt"]
    assert mqtt["enabled"] and mqtt["port"] == broker.port
    huaico(home, "device", "add", "ladera", "--board", "pico_w", "--site", "x", "--transport", "mqtt")
    site = json.loads((home / "sites" / "ladera.json").read_text())
    return home, rain_site(site, broker.host, broker.port)


class Gateway:
    def __init__(self, home):
        env = dict(os.environ, HUAICO_HOME=str(home), PYTHONPATH=str(ROOT))
        self.log = open(home / "run.log", "w+")
        self.process = subprocess.Popen(CLI + ["run", "--status-every", "3600"], env=env,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.home = home
        deadline = time.monotonic() + WAIT
        while "event=mqtt_connected" not in self.text():
            assert self.process.poll() is None, self.text()
            assert time.monotonic() < deadline, self.text()
            time.sleep(0.05)

    def text(self):
        return (self.home / "run.log").read_text()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


def stored(home, site):
    import sqlite3

    conn = sqlite3.connect(str(home / "huaico.db"))
    try:
        rows = conn.execute("SELECT seq, channel, idx, time, value FROM readings WHERE device_id = ?",
                            (site["device_id"],)).fetchall()
    finally:
        conn.close()
    return rows


def check_stored(home, site, board):
    rows = stored(home, site)
    tips = [row for row in rows if row[1] == RAIN_TIPS]
    assert sum(row[4] for row in tips) == board.tips() > 0
    # One row per (seq, channel, index, time): no frame stored twice, every frame there.
    assert len(rows) == len(set(rows))
    # The gateway stores the wire seq, the board logs its counter (SPEC.md 1.3: one epoch here).
    assert len({row[0] >> EPOCH_SHIFT for row in rows}) == 1
    assert {row[0] & MAX_COUNTER for row in rows} == {e["seq"] for e in board.of("frame")}


def test_real_gateway_stores_every_tip_once(tmp_path, mosquitto_broker):
    home, site = gateway_home(tmp_path, mosquitto_broker)
    gateway = Gateway(home)
    try:
        board = SimBoard(tmp_path, site, scenario(420, 240), mosquitto_broker)
        try:
            board.finish()
        finally:
            board.stop()
    finally:
        gateway.stop()
    assert_ring_emptied(board)
    check_stored(home, site, board)


def test_broker_down_mid_run_loses_nothing(tmp_path, mosquitto_broker):
    home, site = gateway_home(tmp_path, mosquitto_broker)
    gateway = Gateway(home)
    try:
        board = SimBoard(tmp_path, site, scenario(900, 360), mosquitto_broker)
        try:
            board.wait_for(lambda: len(board.of("ack")) >= 2, "acks before the broker goes down")
            mosquitto_broker.stop()
            down_at = len(board.events)
            board.wait_for(lambda: len([e for e in board.events[down_at:] if e["ev"] == "retry"
                                        and e["why"] == "link_down"]) >= 2,
                           "the board finding the broker gone")
            mosquitto_broker.start()
            board.finish()
        finally:
            board.stop()
    finally:
        gateway.stop()
    after = board.events[down_at:]
    assert [e for e in after if e["ev"] == "ack"], "no ack after the broker came back:\n" + board.tail()
    assert_ring_emptied(board)
    check_stored(home, site, board)


class SilentProxy:
    """A TCP relay between the board and the broker. `silence()` makes every
    connection open at that moment swallow all bytes both ways while staying
    open (no FIN, no RST), as a Wi-Fi access point or NAT that rebooted does;
    connections made afterwards relay normally."""

    host = "127.0.0.1"

    def __init__(self, broker):
        self.broker = broker
        self.server = socket.socket()
        self.server.bind((self.host, 0))
        self.server.listen(4)
        self.server.settimeout(0.2)
        self.port = self.server.getsockname()[1]
        self.pairs = []
        self.silenced = 0
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping:
            try:
                conn, _ = self.server.accept()
            except OSError:
                continue
            upstream = socket.create_connection((self.broker.host, self.broker.port), timeout=5)
            pair = {"sockets": (conn, upstream), "silent": False}
            self.pairs.append(pair)
            for a, b in ((conn, upstream), (upstream, conn)):
                thread = threading.Thread(target=self._pump, args=(pair, a, b), daemon=True)
                thread.start()
                self.threads.append(thread)

    def _pump(self, pair, src, dst):
        src.settimeout(0.2)
        while not self.stopping:
            try:
                data = src.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                break
            if not data:
                break
            if pair["silent"]:
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        if not pair["silent"]:
            for sock in pair["sockets"]:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def silence(self):
        for pair in self.pairs:
            if not pair["silent"]:
                pair["silent"] = True
                self.silenced += 1

    def close(self):
        self.stopping = True
        for thread in self.threads:
            thread.join(timeout=5)
        for pair in self.pairs:
            for sock in pair["sockets"]:
                sock.close()
        self.server.close()


def test_a_silent_connection_is_dropped_and_nothing_lost(tmp_path, mosquitto_broker):
    home, site = gateway_home(tmp_path, mosquitto_broker)
    # Reports 20 s apart: the board stays on the network between them (firmware/mqttlink.py
    # _STAY_MS), so one session lives long enough to go silent.
    site["report_s"] = 20
    proxy = SilentProxy(mosquitto_broker)
    site["transport"]["port"] = proxy.port
    gateway = Gateway(home)
    try:
        board = SimBoard(tmp_path, site, scenario(900, 360), proxy)
        try:
            board.wait_for(lambda: len(board.of("ack")) >= 2, "acks before the connection goes silent")
            proxy.silence()
            board.finish()
        finally:
            board.stop()
    finally:
        gateway.stop()
        proxy.close()
    assert proxy.silenced == 1 and len(proxy.pairs) >= 2, "the board never opened a new session"
    assert "broker silent" in "".join(board.output), board.tail()
    assert_ring_emptied(board)
    check_stored(home, site, board)
