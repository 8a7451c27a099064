"""The city tier when gateways and the central broker die, every part real
(tests/fixtures/city.py). tests/test_city_tier.py kills hub workers and the
central broker for a few seconds; here `kill -9` hits the `huaico run`
gateways at random moments of a storm, the central broker stays dead for a
minute, and a gateway cut off from the hub for a simulated day catches up.
Afterwards every frame a gateway committed (so every frame acked at the
edge) is at the hub exactly once, and each gateway delivered all of its own.

HUAICO_CITY_SEED replays a failing run.
"""
import json
import os
import random
import time

from huaico.hub import upstream
from huaico.mqtt.link import MqttLink
from tests.fixtures.city import PREFIX, READINGS, UdpBoards, three_gateways

WAIT = 90.0  # upper bound on a loaded machine, not a measurement
SEED = int(os.environ.get("HUAICO_CITY_SEED", random.randrange(1 << 30)))


def _storm_step(feeder, pause=0.05):
    feeder.send_new()
    feeder.resend()
    feeder.take_acks(pause)


def _check_every_committed_frame_at_the_hub(city, feeder):
    """Each gateway's committed frames are at the hub, brought by that
    gateway; the hub holds each frame once, and nothing else. The gateways
    run on: they are the ones that deliver."""
    committed = {gateway.id: {row[1:] for row in gateway.committed()}
                 for gateway in city.gateways}
    everything = set().union(*committed.values())
    assert set(feeder.acked) <= everything
    stored = city.wait_at_hub(everything, WAIT)
    missing = everything - set(stored)
    assert not missing, "seed %d: %d of %d committed frames not at the hub, e.g. %s\n%s" % (
        SEED, len(missing), len(everything), sorted(missing)[:5], city.logs())
    assert len(stored) == len(set(stored)) == len(everything)
    assert city.query("SELECT count(*) FROM readings") == [(len(everything) * len(READINGS),)]
    for gateway_id, frames in committed.items():
        heard = city.wait_heard(gateway_id, frames, WAIT)
        assert frames <= heard, "seed %d: %s's frames %s not heard from it" % (
            SEED, gateway_id, sorted(frames - heard)[:5])
    return everything


def test_kill_gateways_during_a_storm(city):
    rng = random.Random(SEED)
    feeder = three_gateways(city)
    started = time.monotonic()
    kills = 0
    next_kill = started + rng.uniform(0.5, 2.0)
    while time.monotonic() - started < 25:
        _storm_step(feeder)
        if time.monotonic() >= next_kill:
            gateway = rng.choice(city.gateways)
            gateway.stop(crash=True)
            kills += 1
            down_until = time.monotonic() + rng.uniform(0.0, 2.0)
            while time.monotonic() < down_until:
                _storm_step(feeder)
            gateway.start()
            next_kill = time.monotonic() + rng.uniform(0.5, 2.5)
    assert feeder.settle(WAIT), city.logs()
    everything = _check_every_committed_frame_at_the_hub(city, feeder)
    assert kills >= 5 and len(everything) > 1000


def test_central_broker_dead_for_a_minute(city):
    """kill -9 of the central broker (it loses what it held in memory) for
    60 s of storm, during which a gateway is killed too, so that it comes
    back with a backlog and no hub to send it to."""
    rng = random.Random(SEED)
    feeder = three_gateways(city)
    for _ in range(20):
        _storm_step(feeder)
    city.central.stop(crash=True)
    down_since = time.monotonic()
    victim = rng.choice(city.gateways)
    kill_at = down_since + rng.uniform(5, 50)
    while time.monotonic() - down_since < 60:
        _storm_step(feeder, pause=0.1)
        if victim is not None and time.monotonic() >= kill_at:
            victim.stop(crash=True)
            _storm_step(feeder, pause=rng.uniform(0.0, 1.0))
            victim.start()
            victim = None
    at_hub_before = city.query("SELECT count(*) FROM frames")[0][0]
    city.central.start()
    for _ in range(20):
        _storm_step(feeder)
    assert feeder.settle(WAIT), city.logs()
    everything = _check_every_committed_frame_at_the_hub(city, feeder)
    assert len(everything) - at_hub_before > 500  # the outage's backlog went through


class _Observer:
    """A persistent MQTT session on the central broker that sees one
    gateway's forwarded frames in the order the broker got them. Made while
    the broker runs; the broker keeps it (and queues for it) across a clean
    restart."""

    def __init__(self, broker, gateway_id):
        self.link = MqttLink("127.0.0.1", broker.port, "observer-%s" % gateway_id, clean=False,
                             session_expiry=3600, reconnect_delay=(0.2, 1))
        self.topic = upstream.topic(PREFIX, gateway_id)
        self.numbers = []  # envelope `n`s as they came, copies included
        self.link.start()
        assert self.link.wait_connected(10)
        self.link.subscribe(self.topic)
        self.link.subscribe("observer/probe")
        # SUBSCRIBEs are handled in order: the probe back means both hold.
        while not self._probe_back():
            time.sleep(0.05)

    def _probe_back(self):
        assert self.link.publish("observer/probe", b"1").wait(10)
        deadline = time.monotonic() + 1
        while time.monotonic() < deadline:
            if any(topic == "observer/probe" for topic in self.take()):
                return True
            time.sleep(0.05)
        return False

    def take(self):
        """Topics of the messages that arrived; frames' numbers kept in order."""
        topics = []
        while not self.link.events.empty():
            event = self.link.events.get()
            if event[0] == "message":
                topics.append(event[1])
                if event[1] == self.topic:
                    self.numbers.append(json.loads(event[2])["n"])
        return topics


def test_a_day_offline_catches_up_in_commit_order(city):
    """A gateway cut off from the hub while its boards deliver a simulated
    day (12 boards, one frame each 5 min of board time, oldest first): when
    the central broker is back, and though the gateway is killed in the
    middle of its catch-up, its frames reach the hub in its commit order,
    none missing, none doubled."""
    rng = random.Random(SEED)
    city.start_postgres()
    city.start_central("max_queued_messages 0\n")
    names = ["day-%02d" % n for n in range(12)]
    boards = city.add_devices(names)
    gateway = city.add_gateway("gw-day", city.central, names)
    city.add_worker("hub-1")
    observer = _Observer(city.central, "gw-day")
    observer.link.stop()
    city.central.stop()  # the hub is out of reach (a clean stop keeps the observer's session)
    feeder = UdpBoards({name: (board, [gateway]) for name, board in boards.items()})
    day_start = int(time.time()) - 86400
    for step in range(288):
        feeder.send_new(time_s=day_start + 300 * step)
        feeder.take_acks(0.01)
    assert feeder.settle(WAIT), city.logs()
    assert city.query("SELECT count(*) FROM frames") == [(0,)]

    city.central.start()
    observer.link.start()
    total = len(feeder.acked)
    kill_after = rng.randrange(1, total // 2)
    deadline = time.monotonic() + WAIT
    while len(observer.numbers) < kill_after and time.monotonic() < deadline:
        observer.take()
        time.sleep(0.002)
    gateway.stop(crash=True)
    seen_at_kill = len(set(observer.numbers))
    gateway.start()
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        observer.take()
        stored = city.query("SELECT count(*) FROM frames")[0][0]
        if stored >= total and observer.numbers and max(observer.numbers) >= total:
            break
        time.sleep(0.2)
    gateway.stop()
    committed = gateway.committed()
    observer.take()
    observer.link.stop()

    assert len(committed) == total == 12 * 288
    assert kill_after <= seen_at_kill < total, "the kill came after the catch-up"
    assert {row[1:] for row in committed} == set(feeder.acked)
    stored = city.query("SELECT device_id, seq FROM frames")
    assert sorted(stored) == sorted(row[1:] for row in committed), city.logs()
    # The broker got each frame first in commit order; copies (the resend
    # after the crash) only go back to a frame sent before.
    first = list(dict.fromkeys(observer.numbers))
    assert first == [row[0] for row in committed], (
        "seed %d: first out of order at %s" % (SEED, next(
            (at for at, (a, b) in enumerate(zip(first, committed)) if a != b[0]), None)))
    # The hub's one worker committed them in that order too (transaction
    # start times never go back along the gateway's commit order).
    stamps = dict(((d, s), t) for d, s, t in city.query(
        "SELECT device_id, seq, extract(epoch FROM stored) FROM frames"))
    along = [stamps[row[1:]] for row in committed]
    assert along == sorted(along)


def test_a_gateway_killed_between_the_pubacks_and_the_receipts(city):
    """kill -9 of a gateway whose frames the central broker has PUBACKed but
    no hub worker has taken (none runs yet: the broker's PUBACK promised
    nothing more), so no receipt came and its durable cursor has not moved.
    The restarted gateway sends them again from that cursor, and the hub
    stores each once."""
    from huaico.store import db
    city.start_postgres()
    city.start_central()
    boards = city.add_devices(["solo"])
    gateway = city.add_gateway("gw-k", city.central, ["solo"])
    gateway.wait_ready()
    observer = _Observer(city.central, "gw-k")
    feeder = UdpBoards({"solo": (boards["solo"], [gateway])})
    feeder.send_new(count=20)
    assert feeder.settle(WAIT), city.logs()
    # Each frame forwarded, so PUBACKed: the broker had it for the observer.
    deadline = time.monotonic() + WAIT
    while len(set(observer.numbers)) < 20:
        assert time.monotonic() < deadline, (observer.numbers, city.logs())
        observer.take()
        time.sleep(0.05)
    gateway.stop(crash=True)
    database = gateway.home.open()
    try:
        assert db.cursor(database, upstream.CONFIRMED) == 0
    finally:
        database.conn.close()
    worker = city.add_worker("hub-1")
    while "event=hub_connected" not in worker.log():
        assert time.monotonic() < deadline, worker.log()
        time.sleep(0.05)
    time.sleep(0.5)
    assert city.query("SELECT count(*) FROM frames") == [(0,)]  # only the gateway has them
    gateway.start()
    expected = set(feeder.acked)
    stored = city.wait_at_hub(expected, WAIT)
    assert sorted(stored) == sorted(expected), city.logs()
    assert city.query("SELECT count(*) FROM readings") == [(20 * len(READINGS),)]
    observer.take()
    assert sorted(set(observer.numbers)) == list(range(1, 21))
    assert len(observer.numbers) >= 40, observer.numbers  # each sent again
    observer.link.stop()
