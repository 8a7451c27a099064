"""The city tier's throughput: hub workers into PostgreSQL, and a gateway's backlog.

    python bench/hub.py [--frames 20000] [--backlog-devices 100]

Prints, from one run on this machine:
- hub ingest in frames/s (4 readings a frame, durable commits) with 1 and
  2 `huaico hub run` workers on a shared subscription of a real Mosquitto,
  the frames queued at the broker first, timed until the last commit;
- the ceiling: the same frames and readings written with COPY into the
  same tables in one transaction, and the ratio;
- the time for a gateway to drain a 24-hour backlog of 100 devices at one
  frame a minute (144,000 frames) through the broker to the hub, until the
  hub has receipted the last one (the gateway's confirmed cursor);
- the end-to-end alert latency: from a frame's arrival at a gateway (its
  UDP datagram sent on loopback to `huaico run`) to its alert's MQTT
  publish by the hub (the CAP JSON message arriving at a subscriber of the
  central broker), through the gateway's commit and upstream forwarder, the
  central Mosquitto, 2 `huaico hub run` workers evaluating the rule in
  PostgreSQL and the one that holds the dispatch lock; p50/p99 over
  alternating frames above and below an `above` rule, one frame at a time.

Every part is real (PostgreSQL, Mosquitto, worker processes) and started
by the test fixtures on free 127.0.0.1 ports.
"""
import argparse
import os
import pathlib
import queue
import signal
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402

from huaico.hub import devices as hub_devices, upstream
from huaico.mqtt.link import MqttLink  # noqa: E402
from huaico.protocol import frame as wire  # noqa: E402
from huaico.protocol.cose import MacKey  # noqa: E402
from huaico.rules import engine as rules  # noqa: E402
from huaico.store.writer import Counters, Writer  # noqa: E402
from tests.fixtures.city import PREFIX, READINGS, City, UdpBoards, Worker  # noqa: E402

BASE_TIME = int(time.time()) - 86400


def _devices(city, count):
    with psycopg.connect(city.postgres.dsn) as conn:
        return [hub_devices.add(conn, "dev-%03d" % n, "pico", "bench") for n in range(count)]


def _frames(devices, per_device, start_seq=1):
    """Signed frames, one a minute per device, interleaved as a day of traffic."""
    out = []
    for step in range(per_device):
        for device in devices:
            key = MacKey(bytes.fromhex(device["key"]))
            out.append(wire.encode_frame(bytes.fromhex(device["id"]), key, start_seq + step,
                                         BASE_TIME + 60 * step, 0, READINGS))
    return out


def _start(workers):
    """Start the workers and wait until each has subscribed: frames published
    before would find no one in the group (a fixed sleep was too short on a
    loaded machine, and the run then waited forever or on a resend)."""
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 60
    for worker in workers:
        while "event=hub_connected" not in worker.log():
            assert time.monotonic() < deadline and worker.process.poll() is None, worker.log()
            time.sleep(0.05)
    time.sleep(0.5)  # the SUBSCRIBE sent on connecting, handled by the broker


def _reset(city):
    with psycopg.connect(city.postgres.dsn) as conn:
        conn.execute("TRUNCATE frames, readings, heard, counters, rejects")


def _count(city):
    return city.query("SELECT count(*) FROM frames")[0][0]


def hub_rate(city, frames, workers):
    """Frames/s with `workers` workers: the frames are queued at the broker
    while the workers are paused (SIGSTOP: still connected and subscribed),
    then timed from SIGCONT to the last commit, so that the publisher's own
    speed (a single Python client, about 6k messages/s here) is not measured."""
    _reset(city)
    started = [Worker(city.directory, "bench-%d-%d" % (workers, n), city.postgres.dsn,
                      city.central) for n in range(workers)]
    _start(started)
    link = MqttLink("127.0.0.1", city.central.port, "bench-publisher", clean=True,
                    max_inflight=1000)
    link.start()
    link.wait_connected(10)
    topic = upstream.topic(PREFIX, "gw-bench")
    for worker in started:
        worker.process.send_signal(signal.SIGSTOP)
    deliveries = [link.publish(topic, upstream.envelope("gw-bench", n, time.time(), "udp:x",
                                                        None, raw))
                  for n, raw in enumerate(frames, 1)]
    assert all(d.wait(60) for d in deliveries)
    t0 = time.perf_counter()
    for worker in started:
        worker.process.send_signal(signal.SIGCONT)
    while _count(city) < len(frames):
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    link.stop()
    for worker in started:
        worker.stop()
    return len(frames) / elapsed


def copy_rate(city, frames, devices):
    """The same frames and readings by COPY, one transaction: the ceiling."""
    _reset(city)
    received = time.time()
    keyed = {bytes.fromhex(d["id"]): MacKey(bytes.fromhex(d["key"])) for d in devices}
    decoded = [wire.decode_frame(raw, keyed.get) for raw in frames]
    t0 = time.perf_counter()
    with psycopg.connect(city.postgres.dsn) as conn:
        with conn.cursor() as cur:
            with cur.copy("COPY frames (device_id, seq, time, received, gateway, link, rssi, "
                          "raw) FROM STDIN") as copy:
                for raw, frame in zip(frames, decoded):
                    copy.write_row((frame.kid.hex(), frame.seq, frame.time, received,
                                    "gw-bench", "udp:x", None, raw))
            with cur.copy("COPY readings (device_id, seq, channel, idx, time, value, quality, "
                          "received, unsynced) FROM STDIN") as copy:
                for frame in decoded:
                    kid = frame.kid.hex()
                    for c, i, t, v, q in frame.rows:
                        copy.write_row((kid, frame.seq, c, i, t, v, q, received, False))
    elapsed = time.perf_counter() - t0
    return len(frames) / elapsed


def drain_time(city, devices, minutes):
    """Seconds for a gateway to forward `minutes` of frames from every device
    until the hub has receipted them all, with 2 workers running."""
    from tests.fixtures.gateway import Home
    _reset(city)
    home = Home(city.directory / "backlog-gw")
    with psycopg.connect(city.postgres.dsn) as conn:
        hub_devices.write(city.directory / "k", hub_devices.export(conn, []))
    hub_devices.import_keys(home.open(), home.config, hub_devices.read(city.directory / "k"))
    writer = Writer(home.open(), keep_raw=True, batch_ms=0)
    frames = _frames(devices, minutes, start_seq=100000)
    for at in range(0, len(frames), 2000):
        writer.process([("udp:x", raw, time.time(), None) for raw in frames[at:at + 2000]])
    workers = [Worker(city.directory, "drain-%d" % n, city.postgres.dsn, city.central)
               for n in range(2)]
    _start(workers)
    link = MqttLink("127.0.0.1", city.central.port, "huaico-upstream-backlog", clean=True,
                    max_inflight=100)
    forwarder = upstream.Forwarder(home.config.database_path, link, "backlog", PREFIX,
                                   Counters())
    link.start()
    link.wait_connected(10)
    last = home.open().execute("SELECT max(id) FROM frames").fetchone()[0]
    t0 = time.perf_counter()
    forwarder.start()
    while forwarder.confirmed < last:
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    forwarder.stop()
    link.stop()
    for worker in workers:
        worker.stop()
    assert _count(city) == len(frames)
    return len(frames), elapsed


_LATENCY_CONFIG = """
[mqtt]
enabled = true
topic_prefix = "bench"
"""


def alert_latency(city, samples):
    """Seconds from each frame's UDP send to a gateway until its alert's JSON
    is on the central broker; [samples] of them."""
    from tests.fixtures.gateway import Board
    config = city.directory / "hub-latency.toml"
    config.write_text(_LATENCY_CONFIG)
    os.environ["HUAICO_HUB_CONFIG"] = str(config)
    with psycopg.connect(city.postgres.dsn) as conn:
        board = Board(hub_devices.add(conn, "latency-0", "pico", "latency"))
        rule = rules.Rule("latency", "above", {"watch": 1.0}, site="latency",
                          channel="water_level")
        row = dict(rule.to_row(), created=time.time(), updated=time.time())
        conn.execute("INSERT INTO rules (%s) VALUES (%s)" % (
            ", ".join(row), ", ".join(["%s"] * len(row))), list(row.values()))
    gateway = city.add_gateway("gw-latency", city.central, ["latency-0"])
    workers = [Worker(city.directory, "latency-%d" % n, city.postgres.dsn, city.central)
               for n in range(2)]
    for worker in workers:
        worker.start()
    del os.environ["HUAICO_HUB_CONFIG"]
    listener = MqttLink("127.0.0.1", city.central.port, "bench-listener", clean=True)
    listener.start()
    listener.wait_connected(10)
    listener.subscribe("bench/alerts/+", qos=1)  # the JSON; "/cap" is the same event
    feeder = UdpBoards({"latency-0": (board, [gateway])})
    time.sleep(3.0)  # gateway, workers and dispatcher up
    out = []
    try:
        for n in range(samples + 20):
            level = 1500 if n % 2 == 0 else 500  # above, then below: a raise, a clear
            t0 = time.perf_counter()
            feeder.send_new(readings=lambda name: [(4, 0, 0, level, 0)])
            deadline = time.monotonic() + 30
            while True:
                try:
                    event = listener.events.get(timeout=0.05)
                except queue.Empty:
                    # A datagram sent before the gateway listened: again, as a board would.
                    feeder.take_acks(0.0)
                    feeder.resend(0.5)
                    if time.monotonic() > deadline:
                        raise RuntimeError("no alert within 30 s of frame %d" % n) from None
                    continue
                if event[0] == "message":
                    break
            if n >= 20:  # the first ones warm up connections and caches
                out.append(time.perf_counter() - t0)
            feeder.take_acks(0.0)
            time.sleep(0.02)
    finally:
        listener.stop()
        for worker in workers:
            worker.stop()
        gateway.stop()
    return out


def _percentile(values, fraction):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--backlog-devices", type=int, default=100)
    parser.add_argument("--backlog-minutes", type=int, default=1440)
    parser.add_argument("--latency-samples", type=int, default=500)
    parser.add_argument("--latency-only", action="store_true",
                        help="Skip the ingest and backlog figures.")
    args = parser.parse_args()
    city = City(pathlib.Path(tempfile.mkdtemp(prefix="huaico-bench-hub-")))
    os.chdir(pathlib.Path(__file__).resolve().parents[1])
    try:
        city.start_postgres()
        # Unlimited queues: the benchmark publishes faster than the workers
        # drain, and Mosquitto's default drops beyond 1000 queued messages.
        city.start_brokers(central_extra="max_queued_messages 0\nmax_inflight_messages 1000\n")
        if not args.latency_only:
            devices = _devices(city, 100)
            frames = _frames(devices, args.frames // 100)
            rates = {n: hub_rate(city, frames, n) for n in (1, 2)}
            ceiling = copy_rate(city, frames, devices)
            print("hub ingest, %d frames of %d readings, durable commits (frames/s)"
                  % (len(frames), len(READINGS)))
            print("%-34s %10s %8s" % ("path", "frames/s", "of COPY"))
            for workers, rate in rates.items():
                print("%-34s %10.0f %7.0f%%" % ("%d hub worker(s) via Mosquitto" % workers, rate,
                                               100 * rate / ceiling))
            print("%-34s %10.0f %7.0f%%" % ("COPY of the same rows (ceiling)", ceiling, 100))
            count, elapsed = drain_time(city, devices[:args.backlog_devices], args.backlog_minutes)
            print("\nbacklog: %d frames (%d devices x %d min) drained to the hub and receipted "
                  "in %.1f s (%.0f frames/s)" % (count, args.backlog_devices, args.backlog_minutes,
                                                elapsed, count / elapsed))
        latency = alert_latency(city, args.latency_samples)
        p50, p99 = _percentile(latency, 0.5) * 1000, _percentile(latency, 0.99) * 1000
        print("\nalert latency, frame at a gateway -> its alert published by the hub "
              "(%d alerts, 2 workers)" % len(latency))
        print("p50 %.1f ms, p99 %.1f ms, max %.1f ms (target p99 <= 50 ms: %s)"
              % (p50, p99, max(latency) * 1000, "met" if p99 <= 50 else "NOT met"))
    finally:
        city.stop()


if __name__ == "__main__":
    main()
