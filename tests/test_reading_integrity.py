"""Issue 11, faults 5 and 6: impossible values and repeated readings never drive a rule.

A reading outside its channel's valid range is stored with quality
out_of_range, raises no threshold alert, and a quality rule can report it.
Two readings of one channel, index and time in one frame are refused by the
decoder (SPEC.md 1: `repeated`), so the rules can never see a reading the
store drops. Real SQLite, the real writer and rule engine.
"""
from huaico.protocol import channels
from huaico.protocol import frame as wire
from huaico.rules.engine import Rule, RuleEngine
from huaico.store import db
from huaico.store.writer import Writer

NOW = 1_800_000_100.0
LEVEL = channels.get("water_level")


def add_rules(home, *rules):
    with db.transaction(home.database) as conn:
        for rule in rules:
            row = rule.to_row()
            row["created"] = row["updated"] = NOW
            conn.execute("INSERT INTO rules (%s) VALUES (%s)"
                         % (", ".join(row), ", ".join("?" * len(row))), list(row.values()))


def alerts(home):
    return [(r["rule_name"], r["level"]) for r in home.open().query(
        "SELECT rule_name, level FROM alerts ORDER BY id")]


def test_an_impossible_level_is_stored_out_of_range_and_raises_no_threshold_alert(gateway_home):
    add_rules(gateway_home,
              Rule("river-high", "above", {"warning": 2.0, "emergency": 2.5}, channel="water_level"),
              Rule("level-sensor", "quality", {"advisory": 1}, channel="water_level"))
    board = gateway_home.add("river1")
    writer = Writer(gateway_home.database, engine=RuleEngine(gateway_home.database,
                                                             gateway_home.config),
                    clock=lambda: NOW)
    absurd = 10 ** 15  # 10^12 m in mm
    assert writer.process([("test", board.frame([(4, 0, 0, absurd, 0)]), NOW, None)]) == ["stored"]
    row = gateway_home.readings(board)[0]
    assert (row["value"], row["quality"]) == (absurd, wire.Q_OUT_OF_RANGE)
    assert gateway_home.counters()["out_of_range"] == 1
    # The operators hear of a broken sensor; nobody is told to evacuate.
    assert alerts(gateway_home) == [("level-sensor", "advisory")]
    # The edges of the range are valid readings.
    edges = [(4, 0, 0, LEVEL.hi, 0), (4, 1, 0, LEVEL.lo, 0)]
    writer.process([("test", board.frame(edges), NOW, None)])
    assert [r["quality"] for r in gateway_home.readings(board)][1:] == [0, 0]
    assert ("river-high", "emergency") in alerts(gateway_home)


def test_two_readings_of_one_channel_index_and_time_are_refused_before_the_rules(gateway_home):
    add_rules(gateway_home, Rule("river-high", "above", {"emergency": 2.5}, channel="water_level"))
    board = gateway_home.add("river1")
    writer = Writer(gateway_home.database, engine=RuleEngine(gateway_home.database,
                                                             gateway_home.config),
                    clock=lambda: NOW)
    payload = [wire.VERSION, 1, 1_800_000_000, 0, [4, 0, 1200, 4, 0, 3000]]
    from huaico.protocol import cbor
    from huaico.protocol.cose import HDR_KID, PROTECTED
    body = cbor.dumps(payload)
    tag = board.key.tag(cbor.dumps(["MAC0", PROTECTED, b"", body]))
    raw = cbor.dumps(cbor.Tag(17, [PROTECTED, {HDR_KID: board.kid}, body, tag]))
    acks = []
    assert writer.process([("test", raw, NOW, acks.append)]) == ["repeated"]
    assert acks == [] and gateway_home.readings(board) == [] and alerts(gateway_home) == []
    assert gateway_home.counters()["rejected_repeated"] == 1
    # The same two values at two times are two readings: both stored, both seen.
    ok = board.frame([(4, 0, -60, 1200, 0), (4, 0, 0, 3000, 0)])
    assert writer.process([("test", ok, NOW, None)]) == ["stored"]
    assert len(gateway_home.readings(board)) == 2
    assert alerts(gateway_home) == [("river-high", "emergency")]
