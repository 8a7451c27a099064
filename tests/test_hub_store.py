"""The hub's PostgreSQL side on a real server: schema and partitions, end-to-end
verification of forwarded frames, idempotent storage, device keys export/import."""
import json
import os
import time

import psycopg
from click.testing import CliRunner

from huaico.cli import main as cli
from huaico.hub import devices as hub_devices, schema as hub_schema, store as hub_store, upstream
from huaico.protocol import frame as wire
from huaico.protocol.cose import MacKey
from huaico.store import db

from tests.fixtures.postgres import HUB_NOW as NOW


def _device(conn, name="rain-01"):
    return hub_devices.add(conn, name, "pico", "test site")


def _frame(device, seq, key=None, readings=((1, 0, 0, 4, 0), (19, 0, 0, 3900, 0)), kid=None):
    key = key or MacKey(bytes.fromhex(device["key"]))
    return wire.encode_frame(kid or bytes.fromhex(device["id"]), key, seq, NOW, 0,
                             list(readings), epoch=0x5A)


def _message(raw, gateway="gw-a", number=1):
    return ("huaico-city/%s/frames" % gateway,
            upstream.envelope(gateway, number, NOW + 1.5, "udp:127.0.0.1", None, raw))


def _count(conn, sql, args=()):
    with conn.cursor() as cur:
        cur.execute(sql, args)
        return cur.fetchone()[0]


def test_migrate_partitions_readings_by_month(hub_db):
    with hub_db.cursor() as cur:
        cur.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                    "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'readings' "
                    "ORDER BY 1")
        parts = [row[0] for row in cur.fetchall()]
    assert "readings_default" in parts
    # 12 months back, this month, 3 ahead.
    assert [p for p in parts if p != "readings_default"] == sorted(
        "readings_y%04dm%02d" % ym for ym in hub_schema._months(NOW, 12, 3))
    assert "readings_y2026m11" in parts and "readings_y2027m02" in parts
    assert hub_schema.migrate(hub_db, now=NOW) == []  # idempotent
    # The path every hub test takes: plain PostgreSQL's RANGE partitions.
    # TimescaleDB is not in Debian 12 (nor reachable here), so the hypertable
    # branch of m001 and retention's drop_chunks are not exercised.
    with hub_db.cursor() as cur:
        assert not hub_schema.timescale_available(cur)
        cur.execute("SELECT c.relname, p.partstrat FROM pg_partitioned_table p JOIN pg_class c "
                    "ON c.oid = p.partrelid ORDER BY 1")
        assert cur.fetchall() == [("frames", "r"), ("readings", "r")]
        cur.execute("SELECT count(*) FROM pg_extension WHERE extname = 'timescaledb'")
        assert cur.fetchone() == (0,)


def test_frames_stored_once_whoever_brings_them(hub_db):
    device = _device(hub_db)
    keys = hub_store.Keys()
    raw = [_frame(device, seq) for seq in range(1, 6)]
    first, receipts = hub_store.store_batch(
        hub_db, keys, [_message(r, "gw-a", n) for n, r in enumerate(raw, 1)])
    assert first == ["stored"] * 5 and receipts == {"gw-a": [1, 2, 3, 4, 5]}
    # The same frames heard by a second gateway, plus a redelivery within one batch.
    again, receipts = hub_store.store_batch(
        hub_db, keys, [_message(r, "gw-b", n) for n, r in enumerate(raw, 7)]
        + [_message(raw[0], "gw-a")], topic_gateway=lambda topic: topic.split("/")[1])
    assert again == ["duplicate"] * 6
    # Copies are receipted too: the gateway must stop sending them.
    assert receipts == {"gw-b": [7, 8, 9, 10, 11], "gw-a": [1]}
    assert _count(hub_db, "SELECT count(*) FROM frames") == 5
    assert _count(hub_db, "SELECT count(*) FROM readings") == 10
    assert _count(hub_db, "SELECT count(*) FROM heard") == 10
    assert _count(hub_db, "SELECT count(*) FROM readings_y2026m11") == 10
    counts = hub_store.counters(hub_db)
    assert counts["frames_ok"] == 5 and counts["duplicates"] == 6
    with hub_db.cursor() as cur:
        cur.execute("SELECT raw FROM frames WHERE seq = %s", [0x5A << 24 | 3])
        assert bytes(cur.fetchone()[0]) == raw[2]  # the board's own signed bytes


def test_altered_frames_are_rejected_and_counted(hub_db):
    device = _device(hub_db)
    other = _device(hub_db, "rain-02")
    keys = hub_store.Keys()
    good = _frame(device, 1)
    # A gateway that raises the rain reading from 4 to 9: the payload changes, the tag does not.
    forged_payload = bytearray(good)
    at = good.index(bytes([0x01, 0x00, 0x04]))
    forged_payload[at + 2] = 0x09
    # A gateway that passes the frame off as another device's (kid in the unprotected header).
    forged_kid = good.replace(bytes.fromhex(device["id"]), bytes.fromhex(other["id"]))
    wrong_key = _frame(device, 2, key=MacKey(os.urandom(32)))
    outcomes, _ = hub_store.store_batch(hub_db, keys, [
        _message(bytes(forged_payload)), _message(forged_kid), _message(wrong_key),
        ("huaico-city/gw-a/frames", b"{not json"), _message(good)])
    assert outcomes == ["bad_mac", "bad_mac", "bad_mac", "envelope", "stored"]
    counts = hub_store.counters(hub_db)
    assert counts["rejected_bad_mac"] == 3 and counts["rejected_envelope"] == 1
    assert _count(hub_db, "SELECT count(*) FROM rejects") == 4
    assert _count(hub_db, "SELECT count(*) FROM readings WHERE value = 9") == 0


def test_unknown_device_is_rejected_and_a_new_one_known_at_once(hub_db):
    keys = hub_store.Keys()
    stranger = {"id": "deadbeef", "key": os.urandom(32).hex()}
    outcomes, _ = hub_store.store_batch(hub_db, keys, [_message(_frame(stranger, 1))])
    assert outcomes == ["unknown_device"]
    # Provisioned after the worker cached its keys: known at its first frame.
    newcomer = _device(hub_db, "rain-new")
    outcomes, _ = hub_store.store_batch(hub_db, keys, [_message(_frame(newcomer, 1))])
    assert outcomes == ["stored"]


def test_keys_exported_at_the_hub_verify_at_the_gateway(postgres, gateway_home, tmp_path):
    runner = CliRunner()
    env = {"HUAICO_HUB_DSN": postgres.dsn}
    added = runner.invoke(cli.main, ["hub", "device", "add", "rain-07", "--board", "pico",
                                     "--site", "Quebrada"], env=env)
    assert added.exit_code == 0, added.output
    keys_file = tmp_path / "east.keys"
    exported = runner.invoke(cli.main, ["hub", "device", "export", "rain-07",
                                        "-o", str(keys_file)], env=env)
    assert exported.exit_code == 0, exported.output
    assert oct(keys_file.stat().st_mode & 0o777) == "0o600"
    entry = json.loads(keys_file.read_text())["devices"][0]
    imported = runner.invoke(cli.main, ["device", "import", str(keys_file)])
    assert imported.output == "rain-07: added\n", imported.output
    assert runner.invoke(cli.main, ["device", "import", str(keys_file)]).output == \
        "rain-07: unchanged\n"
    row = gateway_home.open().execute("SELECT id, key FROM devices WHERE name = 'rain-07'"
                                      ).fetchone()
    assert row == (entry["id"], entry["key"])
    site = json.loads((gateway_home.config.sites_dir / "rain-07.json").read_text())
    assert site["key"] == entry["key"] and site["device_id"] == entry["id"]
    missing = runner.invoke(cli.main, ["hub", "device", "export", "nope", "-o",
                                       str(tmp_path / "x.keys")], env=env)
    assert missing.exit_code == 1 and "no device named nope" in missing.output


def test_keys_file_of_another_format_is_refused(gateway_home, tmp_path):
    bad = tmp_path / "bad.keys"
    bad.write_text(json.dumps({"format": "other", "devices": []}))
    result = CliRunner().invoke(cli.main, ["device", "import", str(bad)])
    assert result.exit_code == 1 and "is not a huaico-device-keys/1 file" in result.output


def test_forwarder_publishes_in_order_until_receipted(gateway_home, mosquitto_broker):
    """The gateway side alone: the writer keeps raw frames, the forwarder
    sends them in id order, moves its cursor after the PUBACKs, its
    confirmed cursor over what the hub receipted (committed by save()), and
    sends the rest again when no receipt comes."""
    from huaico.mqtt.link import MqttLink
    from huaico.store.writer import Counters, Writer
    board = gateway_home.add("rain-01")
    database = gateway_home.open()
    writer = Writer(database, keep_raw=True, batch_ms=0)
    frames = [board.frame() for _ in range(30)]
    writer.process([("udp:x", raw, NOW + i, None) for i, raw in enumerate(frames)])
    listener = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "listener", clean=True)
    listener.subscribe("huaico-city/#")
    listener.start()
    assert listener.wait_connected(5)
    link = MqttLink(mosquitto_broker.host, mosquitto_broker.port, "fwd", clean=True)
    link.start()
    assert link.wait_connected(5)
    forwarder = upstream.Forwarder(gateway_home.config.database_path, link, "gw-a",
                                   "huaico-city", Counters(), keep_days=0,
                                   confirm_timeout_s=1.0)
    conn = gateway_home.open()

    def heard(count):
        got = []
        deadline = time.monotonic() + 5
        while len(got) < count and time.monotonic() < deadline:
            event = listener.events.get(timeout=5)
            if event[0] == "message" and event[1].endswith("/frames"):
                got.append(json.loads(event[2]))
        return got

    cursor = forwarder.step(conn, 0)
    got = heard(30)
    assert [m["n"] for m in got] == list(range(1, 31)) and cursor == 30
    assert [hub_store.parse(json.dumps(m))[5] for m in got] == frames
    assert got[0]["gw"] == "gw-a" and got[0]["link"] == "udp:x"
    # The hub receipts 1..10 and 12: the confirmed cursor stops at the gap.
    assert listener.publish("huaico-city/gw-a/receipts", upstream.receipt(
        list(range(1, 11)) + [12])).wait(5)
    deadline = time.monotonic() + 5
    while forwarder.confirmed < 10 and time.monotonic() < deadline:
        assert forwarder.confirm(cursor) == cursor
        time.sleep(0.02)
    # Moved in memory; the commit comes off the live path (save()).
    assert forwarder.confirmed == 10 and db.cursor(conn, upstream.CONFIRMED) == 0
    forwarder.save(conn)
    assert db.cursor(conn, upstream.CONFIRMED) == 10
    # Confirmed and older than keep_days (0): their bytes are gone, the rest kept.
    assert conn.execute("SELECT min(id), count(*) FROM frames").fetchone() == (11, 20)
    # No receipt for 11 within confirm_timeout_s: everything after 10 goes again, in order.
    time.sleep(1.1)
    assert forwarder.confirm(cursor) == 10
    assert forwarder.step(conn, 10) == 30
    assert [m["n"] for m in heard(20)] == list(range(11, 31))
    link.stop()
    listener.stop()
