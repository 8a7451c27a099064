"""Who may acknowledge an alert by SMS (issue 11, fault 10): numbers are
compared in E.164 after normalising with the gateway's country code, and
nothing looser. Messages come from the modem emulator on a pty as real
SMS-DELIVER PDUs, with international (TON 0x91) or national (0x81) senders."""
import pytest

from huaico.alerts import lifecycle as alerts
from huaico.alerts.dispatch import Dispatcher
from huaico.rules import engine as rules
from huaico.sms.modem import Modem
from tests.fixtures.alerting import rule as make_rule

T0 = 1_800_000_000


def raise_one(adb, config):
    device = adb.add_device("0a0b0c0d", "g1")
    adb.add_rule(make_rule(kind="above", channel="water_level", levels={"warning": 1.0}))
    engine = rules.RuleEngine(adb.database, config)
    adb.store(engine, device, [(4, 0, T0, 1500, 0)], T0)


def poll(adb, config, emulator, senders):
    for number in senders:
        emulator.deliver(number, "ACK 1")
    modem = Modem(emulator.path, command_timeout=2.0)
    try:
        return Dispatcher(adb.database, config, sms=modem).poll_incoming(T0 + 60)
    finally:
        modem.close()


def test_trailing_digits_alone_never_make_a_leader(alert_db, alert_config, modem_emulator):
    alert_config["sms"]["country_code"] = "+51"
    raise_one(alert_db, alert_config)
    # A national number of another subscriber whose last nine digits are a
    # leader's (+51911111111), and a foreign number ending the same way.
    results = poll(alert_db, alert_config, modem_emulator, ["7911111111", "+44911111111"])
    assert results == [("unknown_number", 1), ("unknown_number", 1)]
    assert alert_db.rows("SELECT acked FROM alerts") == [(None,)]


def test_a_national_sender_is_the_leader_it_normalises_to(alert_db, alert_config,
                                                           modem_emulator):
    alert_config["sms"]["country_code"] = "+51"
    raise_one(alert_db, alert_config)
    assert poll(alert_db, alert_config, modem_emulator, ["911111111"]) == [("acked", 1)]
    assert alert_db.rows("SELECT acked_by FROM alerts") == [("+51911111111 (leaders)",)]


def test_group_numbers_without_country_code_are_read_in_the_gateways_country(
        alert_db, alert_config, modem_emulator):
    alert_config["sms"]["country_code"] = "+51"
    alert_config["groups"][0]["numbers"] = ["987654321", "0911111111"]
    raise_one(alert_db, alert_config)
    # The outbox addresses them in E.164, and a reply from abroad with the
    # same national digits is a stranger.
    assert alert_db.rows("SELECT DISTINCT recipient FROM outbox WHERE grp = 'leaders' "
                         "ORDER BY recipient") == [("+51911111111",), ("+51987654321",)]
    results = poll(alert_db, alert_config, modem_emulator, ["+44987654321", "+51987654321"])
    assert results == [("unknown_number", 1), ("acked", 1)]


def test_without_a_country_code_only_international_numbers_match(alert_db, alert_config,
                                                                  modem_emulator):
    raise_one(alert_db, alert_config)  # the fixture's config has no country_code
    assert poll(alert_db, alert_config, modem_emulator, ["911111111"]) == [
        ("unknown_number", 1)]


@pytest.mark.parametrize("written, country, e164", [
    ("+51 987 654 321", "51", "+51987654321"),
    ("0051987654321", "51", "+51987654321"),
    ("987654321", "51", "+51987654321"),
    ("0987654321", "51", "+51987654321"),
    ("987654321", "", "987654321"),
])
def test_normalize_number(written, country, e164):
    assert alerts.normalize_number(written, country) == e164
