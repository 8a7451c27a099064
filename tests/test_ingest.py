"""Readers end to end: frames over a pty (serial), loopback UDP and a real
Mosquitto reach the database once and come back acked."""
import os
import select
import socket
import time

import pytest

from huaico.ingest import readers as ingest
from huaico.mqtt.link import MqttLink
from huaico.protocol import link
from huaico.store.writer import Writer

WAIT = 10.0  # an upper bound on a loaded 2-core machine, not a measurement


def read_acks(pair, board, count, timeout=WAIT):
    """Acks read off the pty master until `count` arrived: [(seq, time)]."""
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < count:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError("only %d of %d acks arrived: %r" % (len(got), count, got))
        ready, _, _ = select.select([pair.master], [], [], left)
        if ready:
            for item in pair.decoder.feed(os.read(pair.master, 4096)):
                assert not isinstance(item, link.LinkError), item
                kid, seq, gateway_time = board.ack(item)
                assert kid == board.kid
                got.append((seq, gateway_time))
    return got


def wait_for(condition, what, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.01)


@pytest.fixture
def running_writer(gateway_home, recording_engine):
    writer = Writer(gateway_home.database, engine=recording_engine, batch_ms=2)
    writer.start()
    yield writer
    writer.stop()


@pytest.mark.parametrize("spy", [False, True], ids=["path", "spy"])
def test_serial_frames_over_a_pty_are_stored_and_acked(gateway_home, running_writer, pty_pair,
                                                       recording_engine, spy, tmp_path):
    board = gateway_home.add("rg1")
    url = "spy://%s?file=%s" % (pty_pair.path, tmp_path / "spy.txt") if spy else pty_pair.path
    reader = ingest.SerialReader(running_writer, url)
    reader.start()
    try:
        assert reader.opened.wait(WAIT)
        frames = [board.frame([(1, 0, 0, n, 0), (4, 0, 0, 100 + n, 0)]) for n in range(20)]
        # Noise first: a packet with a wrong CRC, and half a packet cut short.
        pty_pair.write(link.cobs_encode(frames[0] + b"\x00\x00") + b"\x00")
        pty_pair.write(link.encode(frames[0])[:9] + b"\x00")
        for raw in frames:
            pty_pair.send(raw)
        acks = read_acks(pty_pair, board, 20)
        assert [seq for seq, _ in acks] == list(range(1, 21))
        pty_pair.send(frames[3])  # its ack was "lost": resent
        assert read_acks(pty_pair, board, 1)[0][0] == 4
    finally:
        reader.stop()
        reader.join()
    running_writer.stop()
    assert len(gateway_home.readings(board)) == 40
    assert len(recording_engine.calls) == 20
    counters = gateway_home.counters()
    assert counters["frames_ok"] == 20
    assert counters["duplicates"] == 1
    # The cut packet is bad COBS or a bad CRC depending on the random key.
    assert counters["link_bad_crc"] >= 1
    assert sum(n for name, n in counters.items() if name.startswith("link_")) == 2
    if spy:
        assert (tmp_path / "spy.txt").stat().st_size > 0


def test_several_serial_ports_at_once(gateway_home, running_writer):
    from tests.fixtures.gateway import PtyPair
    pairs = [PtyPair() for _ in range(3)]
    boards = [gateway_home.add("b%d" % i) for i in range(3)]
    readers = [ingest.SerialReader(running_writer, pair.path) for pair in pairs]
    try:
        for reader in readers:
            reader.start()
            assert reader.opened.wait(WAIT)
        for _ in range(5):
            for pair, board in zip(pairs, boards):
                pair.send(board.frame())
        for pair, board in zip(pairs, boards):
            assert [seq for seq, _ in read_acks(pair, board, 5)] == [1, 2, 3, 4, 5]
    finally:
        for reader in readers:
            reader.stop()
            reader.join()
        for pair in pairs:
            pair.close()


def test_serial_port_that_goes_away_is_reopened(gateway_home, running_writer, tmp_path):
    from tests.fixtures.gateway import PtyPair
    board = gateway_home.add("rg1")
    first = PtyPair()
    path = tmp_path / "ttyUSB0"
    os.symlink(first.path, path)
    reader = ingest.SerialReader(running_writer, str(path))
    reader.start()
    try:
        assert reader.opened.wait(WAIT)
        first.close()  # the adapter is unplugged...
        wait_for(lambda: not reader.opened.is_set(), "the reader to notice")
        second = PtyPair()  # ...and plugged in again
        os.unlink(path)
        os.symlink(second.path, path)
        assert reader.opened.wait(WAIT)
        second.send(board.frame())
        assert read_acks(second, board, 1)[0][0] == 1
        second.close()
    finally:
        reader.stop()
        reader.join()


def test_udp_datagram_is_stored_and_acked_to_its_sender(gateway_home, running_writer):
    board = gateway_home.add("rg1")
    reader = ingest.UdpReader(running_writer, "127.0.0.1:0")
    reader.start()
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.settimeout(WAIT)
    try:
        for _ in range(3):
            sender.sendto(board.frame(), reader.address)
        seqs = [board.ack(sender.recvfrom(1024)[0])[1] for _ in range(3)]
        assert sorted(seqs) == [1, 2, 3]
        sender.sendto(b"\x00garbage", reader.address)
        wait_for(lambda: gateway_home.counters().get("rejected_structure") == 1,
                 "the garbage to be rejected")
    finally:
        sender.close()
        reader.stop()
        reader.join()
    assert len(gateway_home.readings(board)) == 3


def test_udp_address_is_checked():
    with pytest.raises(ingest.IngestConfigError):
        ingest.parse_address("nonsense")


def _board_link(broker, board):
    board_link = MqttLink(broker.host, broker.port, "board-" + board.name, clean=True,
                          reconnect_delay=(0.1, 0.5))
    board_link.subscribe("huaico/%s/ack" % board.row["id"])
    board_link.start()
    assert board_link.wait_connected(WAIT)
    return board_link


def _acks(board_link, board, count):
    got = []
    while len(got) < count:
        event = board_link.events.get(timeout=WAIT)
        if event[0] == "message":
            got.append(board.ack(event[2])[1])
    return got


def test_mqtt_frames_are_stored_and_acked_on_the_ack_topic(gateway_home, running_writer,
                                                           mosquitto_broker):
    board = gateway_home.add("wifi1", board="pico_w", transport="mqtt")
    gateway_link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gw-test",
                            clean=False, reconnect_delay=(0.1, 0.5))
    reader = ingest.MqttReader(running_writer, gateway_link, "huaico")
    reader.start()
    gateway_link.start()
    board_link = _board_link(mosquitto_broker, board)
    try:
        assert gateway_link.wait_connected(WAIT)
        up = "huaico/%s/up" % board.row["id"]
        for _ in range(3):
            assert board_link.publish(up, board.frame(), qos=1).wait(WAIT)
        assert sorted(_acks(board_link, board, 3)) == [1, 2, 3]
        # The gateway goes down; the broker keeps the board's frames for its
        # persistent session and hands them over when it is back.
        reader.stop()
        reader.join()
        gateway_link.stop()
        for _ in range(2):
            assert board_link.publish(up, board.frame(), qos=1).wait(WAIT)
        gateway_link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gw-test",
                                clean=False, reconnect_delay=(0.1, 0.5))
        reader = ingest.MqttReader(running_writer, gateway_link, "huaico")
        reader.start()
        gateway_link.start()
        assert sorted(_acks(board_link, board, 2)) == [4, 5]
    finally:
        board_link.stop()
        reader.stop()
        reader.join()
        gateway_link.stop()
    assert [r["seq"] for r in gateway_home.readings(board)] == [1, 2, 3, 4, 5]


def test_mqtt_ack_refused_while_the_link_is_down_is_sent_once_it_is_up(gateway_home,
                                                                      running_writer,
                                                                      mosquitto_broker):
    # After a reconnect with a persistent session the broker delivers kept
    # frames before the link counts as connected; their acks must wait, not vanish.
    board = gateway_home.add("wifi1", board="pico_w", transport="mqtt")
    board_link = _board_link(mosquitto_broker, board)
    gateway_link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "gw-held",
                            clean=False, reconnect_delay=(0.1, 0.5))
    reader = ingest.MqttReader(running_writer, gateway_link, "huaico")
    try:
        reader._message("huaico/%s/up" % board.row["id"], board.frame())
        wait_for(lambda: len(gateway_home.readings(board)) == 1, "the frame to be stored")
        wait_for(lambda: len(reader._held) == 1, "the refused ack to be held")
        reader.start()
        gateway_link.start()
        assert _acks(board_link, board, 1) == [1]
        assert len(reader._held) == 0
    finally:
        board_link.stop()
        reader.stop()
        reader.join()
        gateway_link.stop()
