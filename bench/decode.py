"""Frame decoding throughput and frame size against peers measured in the same run.

Peers: cbor2.loads with the same mapping to rows written in Python, and
json.loads of the equivalent JSON with the same mapping. Each case decodes
100k distinct frames; the figure is the median frames/s of several runs.
"MAC excluded" gives both sides a key whose check does nothing; "MAC
included" checks HMAC 256/64 on both sides with the same MacKey.

Usage: python bench/decode.py [--frames N] [--runs K]
"""
import argparse
import gc
import hmac
import json
import statistics
import sys
import time
from importlib.metadata import version

import cbor2

from huaico.ingest import decoder
from huaico.mqtt.senml import readings_pack, senml_json
from huaico.protocol import channels, cose, frame

KID = bytes.fromhex("a1b2c3d4")
KEY = bytes(range(32))
BASE_TIME = 1795000000
# A realistic sample: rain, river level, water temperature, battery, ...
SAMPLE = ((1, 0, 0, 4), (4, 0, 0, 1234), (5, 0, 0, 1850), (19, 0, 0, 3900),
          (7, 0, 0, 712), (8, 0, 0, 453), (9, 0, 0, 2210), (20, 0, 0, -71))


class UncheckedKey(cose.MacKey):
    """A device key whose MAC check is skipped: the 'MAC excluded' case."""

    def check(self, msg, tail, tag):
        return None


def readings(n, seq):
    out = []
    for i in range(n):
        channel, index, dt, value = SAMPLE[i % len(SAMPLE)]
        out.append((channel, index + i // len(SAMPLE), dt - 5 * (i // len(SAMPLE)),
                    value + seq % 7, frame.Q_OK))
    return out


def make_frames(count, n, key):
    return [frame.encode_frame(KID, key, seq, BASE_TIME + seq, 0, readings(n, seq))
            for seq in range(1, count + 1)]


def cbor2_rows(data, keyring):
    """The peer: cbor2.loads, then the same mapping to rows in Python."""
    keys, check = keyring
    msg = cbor2.loads(data).value
    kid = msg[1][4]
    key = keys[kid]
    if check:
        structure = cbor2.dumps(["MAC0", msg[0], b"", msg[2]])
        if not hmac.compare_digest(key.tag(structure), msg[3]):
            raise ValueError("bad mac")
    payload = cbor2.loads(msg[2])
    base = payload[2]
    flat = payload[4]
    rows = []
    for i in range(0, len(flat), 3):
        k = flat[i]
        rows.append((k % 64, k // 64, base + flat[i + 1], flat[i + 2], frame.Q_OK))
    return kid, payload[1], base, payload[3], rows


def json_doc(data):
    """The same frame as JSON text: header fields, readings, tag in hex."""
    msg = cbor2.loads(data).value
    payload = cbor2.loads(msg[2])
    body = json.dumps({"v": payload[0], "seq": payload[1], "t": payload[2],
                       "f": payload[3], "r": payload[4]}, separators=(",", ":"))
    return json.dumps({"kid": msg[1][4].hex(), "body": body, "tag": msg[3].hex()},
                      separators=(",", ":"))


def json_rows(text, keyring):
    keys, check = keyring
    doc = json.loads(text)
    kid = bytes.fromhex(doc["kid"])
    key = keys[kid]
    body = doc["body"]
    if check and not hmac.compare_digest(key.tag(body.encode()), bytes.fromhex(doc["tag"])):
        raise ValueError("bad mac")
    payload = json.loads(body)
    base = payload["t"]
    flat = payload["r"]
    rows = []
    for i in range(0, len(flat), 3):
        k = flat[i]
        rows.append((k % 64, k // 64, base + flat[i + 1], flat[i + 2], frame.Q_OK))
    return kid, payload["seq"], base, payload["f"], rows


def rate(fn, items, second, runs):
    """Median frames/s of fn(item, second) over items; results are dropped as the
    gateway drops them. Every decoder is called the same way: two positional
    arguments, no wrapper."""
    speeds = []
    for _ in range(runs):
        gc.collect()
        start = time.perf_counter()
        for item in items:
            fn(item, second)
        speeds.append(len(items) / (time.perf_counter() - start))
    return statistics.median(speeds)


def sign_json_docs(frames, key):
    docs = []
    for data in frames:
        doc = json.loads(json_doc(data))
        doc["tag"] = key.tag(doc["body"].encode()).hex()
        docs.append(json.dumps(doc, separators=(",", ":")))
    return docs


def throughput(count, runs):
    print("Decode into rows, %d frames per case, median of %d runs (frames/s)" % (count, runs))
    print("decoder: %s" % ("compiled (huaico.protocol._frame_c)" if decoder.IS_COMPILED
                           else "pure Python (the C extension did not load)"))
    head = "%-8s %-13s %12s %12s %12s %9s %9s" % (
        "readings", "MAC", "huaico", "cbor2+map", "json+map", "vs cbor2", "vs json")
    print(head)
    print("-" * len(head))
    key = cose.MacKey(KEY)
    for n in (1, 4, 16):
        frames = make_frames(count, n, key)
        docs = sign_json_docs(frames, key)
        for label, mac_key, check in (("excluded", UncheckedKey(KEY), False),
                                      ("included", key, True)):
            keys = {KID: mac_key}
            ours = rate(decoder.decode_frame, frames, keys.get, runs)
            peer = rate(cbor2_rows, frames, (keys, check), runs)
            text = rate(json_rows, docs, (keys, check), runs)
            print("%-8d %-13s %12.0f %12.0f %12.0f %8.2fx %8.2fx" % (
                n, label, ours, peer, text, ours / peer, ours / text))
    print()


def senml_cbor(rows):
    """SenML-CBOR (RFC 8428 §6): the JSON pack with the integer labels."""
    labels = {"bn": -2, "bt": -3, "n": 0, "u": 1, "v": 2, "t": 6, "q": "q"}
    pack = readings_pack(KID.hex(), rows, _channel_lookup)
    return cbor2.dumps([{labels[k]: v for k, v in record.items()} for record in pack],
                       canonical=True)


def _channel_lookup(code):
    channel = channels.get(code)
    return channel.name, channel.unit, channel.scale


def sizes():
    print("Encoded size of the same readings (bytes)")
    head = "%-8s %10s %12s %12s %12s %10s" % (
        "readings", "huaico", "SenML-CBOR", "SenML-JSON", "our JSON", "vs SenML")
    print(head)
    print("-" * len(head))
    key = cose.MacKey(KEY)
    for n in (1, 4, 16):
        seq = 70000
        ours = frame.encode_frame(KID, key, seq, BASE_TIME, 0, readings(n, seq))
        checked = frame.decode_frame(ours, {KID: key}.get)
        senml_payload = senml_cbor(checked.rows)
        # The same COSE_Mac0 around SenML-CBOR, so the comparison is payload for payload.
        wrapped = cbor2.dumps(cbor2.CBORTag(17, [cose.PROTECTED, {4: KID}, senml_payload,
                                                  key.tag(senml_payload)]))
        text = senml_json(readings_pack(KID.hex(), checked.rows, _channel_lookup))
        share = len(ours) / len(wrapped)
        print("%-8d %10d %12d %12d %12d %9.0f%%" % (
            n, len(ours), len(wrapped), len(text), len(json_doc(ours)), 100 * share))
    print("Target: a signed 4-reading frame <= 56 B (a LoRa SF10 packet in EU868 holds 59 B;")
    print("the serial link's COBS, CRC and delimiter add 4 B when a transparent UART module is used).")
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    print("python %s, cbor2 %s" % (sys.version.split()[0], version("cbor2")))
    print()
    sizes()
    throughput(args.frames, args.runs)


if __name__ == "__main__":
    main()
