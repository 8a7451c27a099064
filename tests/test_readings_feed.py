"""Stored readings reach MQTT as SenML, in order, and none is lost while the
broker is away (a real Mosquitto, a real SQLite file, the real writer)."""
import json
import queue
import time

import pytest

from huaico.mqtt.link import MqttLink
from huaico.mqtt.readings_feed import CURSOR, ReadingsFeed
from huaico.store import db
from huaico.store.writer import Counters, Writer


def store(home, board, frames):
    writer = Writer(home.database)
    for n in range(frames):
        writer.process([("test", board.frame([(1, 0, 0, n, 0), (4, 0, 0, 1000 + n, 0)],
                                             time=1_800_000_000 + n), time.time(), None)])


def received(link, want, timeout=15):
    """SenML records received until `want` of them came, as (name, value) pairs."""
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < want and time.monotonic() < deadline:
        try:
            event = link.events.get(timeout=0.2)
        except queue.Empty:
            continue
        if event[0] == "message":
            out.extend((r["n"], r["v"]) for r in json.loads(event[2]))
    return out


@pytest.fixture
def watcher(mosquitto_broker):
    link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "feed-watcher", clean=False)
    link.subscribe("huaico/+/senml")
    link.start()
    assert link.wait_connected(10)
    yield link
    link.stop()


def test_readings_are_published_as_senml_in_order(gateway_home, mosquitto_broker, watcher):
    board = gateway_home.add("gauge")
    store(gateway_home, board, 5)
    link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gateway")
    link.start()
    assert link.wait_connected(10)
    feed = ReadingsFeed(gateway_home.config.database_path, link, "huaico", Counters(), poll_s=0.05)
    feed.start()
    try:
        records = received(watcher, 10)
    finally:
        feed.stop()
        link.stop()
    assert records == [pair for n in range(5)
                       for pair in (("rain", n / 10000), ("water_level", (1000 + n) / 1000))]
    assert db.cursor(gateway_home.open(), CURSOR) == 10


def test_nothing_is_lost_while_the_broker_is_down(gateway_home, mosquitto_broker, watcher):
    board = gateway_home.add("gauge")
    link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gateway")
    link.start()
    assert link.wait_connected(10)
    feed = ReadingsFeed(gateway_home.config.database_path, link, "huaico", Counters(),
                        poll_s=0.05, ack_timeout_s=1)
    feed.start()
    try:
        store(gateway_home, board, 2)
        assert len(received(watcher, 4)) == 4
        mosquitto_broker.stop()
        store(gateway_home, board, 3)
        time.sleep(1)
        assert db.cursor(gateway_home.open(), CURSOR) == 4
        mosquitto_broker.start()
        assert link.wait_connected(20)
        assert watcher.wait_connected(20)
        records = received(watcher, 6, timeout=30)
    finally:
        feed.stop()
        link.stop()
    # The three frames stored during the outage, each reading once at least.
    assert [value for name, value in records if name == "rain"][-3:] == [0.0, 0.0001, 0.0002]  # 0.1 mm steps, in metres
    assert db.cursor(gateway_home.open(), CURSOR) == 10


def test_a_restarted_feed_resumes_after_its_cursor(gateway_home, mosquitto_broker, watcher):
    board = gateway_home.add("gauge")
    store(gateway_home, board, 2)
    for run in range(2):
        link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gateway")
        link.start()
        assert link.wait_connected(10)
        feed = ReadingsFeed(gateway_home.config.database_path, link, "huaico", Counters(),
                            poll_s=0.05)
        feed.start()
        try:
            records = received(watcher, 4 if run == 0 else 2, timeout=3 if run else 15)
        finally:
            feed.stop()
            link.stop()
        if run == 0:
            assert len(records) == 4
            store(gateway_home, board, 1)
    # The second run published only the frame stored after the first stopped.
    assert records == [("rain", 0.0), ("water_level", 1.0)]
