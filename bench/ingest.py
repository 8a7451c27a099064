"""Ingest throughput: frames through a pty -> COBS decode, MAC check, store
and rules with group commits (synchronous=FULL), as `huaico run` does it.

Prints a table: frames/s and readings/s end to end (from the first byte
written to the last ack read back), for the real rule engine with and
without a rule that matches, against the same frames decoded and verified
only (the ceiling the store and rules have to live under), plus the RSS.

    .venv/bin/python bench/ingest.py [--frames 50000] [--devices 20]
"""
import argparse
import os
import pathlib
import resource
import select
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from gateway import db, ingest, rules  # noqa: E402
from gateway.decoder import IS_COMPILED, decode_frame  # noqa: E402
from gateway.store import Writer  # noqa: E402
from protocol import link  # noqa: E402
from tests.fixtures.gateway import Home, PtyPair  # noqa: E402

READINGS = [(1, 0, 0, 2, 0), (2, 0, 0, 1, 0), (4, 0, -30, 1520, 0), (19, 0, 0, 3712, 0)]


def make_frames(boards, count):
    wire = []
    for n in range(count):
        wire.append(link.encode(boards[n % len(boards)].frame(READINGS)))
    return wire


def decode_only(boards, wire):
    keys = {board.kid: board.key for board in boards}
    decoder = link.Decoder()
    start = time.perf_counter()
    for chunk in wire:
        for item in decoder.feed(chunk):
            decode_frame(item, keys.get)
    return len(wire) / (time.perf_counter() - start)


def through_gateway(home, boards, wire, engine, batch_ms):
    pair = PtyPair()
    writer = Writer(home.database, engine=engine, batch_ms=batch_ms)
    writer.start()
    reader = ingest.SerialReader(writer, pair.path)
    reader.start()
    reader.opened.wait(10)
    acks = [0]
    done = threading.Event()

    def read_acks():
        decoder = link.Decoder()
        while acks[0] < len(wire):
            ready, _, _ = select.select([pair.master], [], [], 10)
            if not ready:
                break
            for item in decoder.feed(os.read(pair.master, 65536)):
                if not isinstance(item, link.LinkError):
                    acks[0] += 1
        done.set()

    thread = threading.Thread(target=read_acks, daemon=True)
    thread.start()
    start = time.perf_counter()
    blob = b"".join(wire)
    step = 4096
    for at in range(0, len(blob), step):
        os.write(pair.master, blob[at:at + step])
    done.wait(120)
    elapsed = time.perf_counter() - start
    reader.stop()
    reader.join()
    writer.stop()
    pair.close()
    if acks[0] != len(wire):
        raise SystemExit("only %d of %d frames acked" % (acks[0], len(wire)))
    return len(wire) / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50000)
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--batch-ms", type=int, default=5)
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, with_rule in (("store only (no rule engine)", None),
                                 ("store + rules (no rule matches)", False),
                                 ("store + rules (rain rule on every frame)", True)):
            home = Home(pathlib.Path(tmp) / label.replace(" ", "_"))
            boards = [home.add("b%d" % n) for n in range(args.devices)]
            if with_rule:
                rule = rules.Rule("rain-10m", "accumulation", {"watch": 1000.0}, channel="rain",
                                  window_s=600)
                row = rule.to_row()
                row["created"] = row["updated"] = time.time()
                with db.transaction(home.database) as conn:
                    conn.execute("INSERT INTO rules (%s) VALUES (%s)"
                                 % (", ".join(row), ", ".join("?" * len(row))),
                                 list(row.values()))
            wire = make_frames(boards, args.frames)
            if not results:
                results.append(("decode + verify only (no pty, no store)",
                                decode_only(boards, wire)))
            engine = None if with_rule is None else rules.RuleEngine(home.database, home.config)
            results.append((label, through_gateway(home, boards, wire, engine, args.batch_ms)))
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print("ingest: %d frames of %d readings from %d devices, batch_ms=%d, decoder=%s"
          % (args.frames, len(READINGS), args.devices, args.batch_ms,
             "cython" if IS_COMPILED else "pure"))
    print("%-44s %12s %12s %8s" % ("path", "frames/s", "readings/s", "ratio"))
    ceiling = results[0][1]
    for label, rate in results:
        print("%-44s %12.0f %12.0f %8.2f" % (label, rate, rate * len(READINGS), rate / ceiling))
    print("peak RSS of this process (gateway + test board): %.1f MB" % rss_mb)


if __name__ == "__main__":
    main()
