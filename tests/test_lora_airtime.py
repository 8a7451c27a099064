"""A transparent LoRa UART module on the board's UART: air time by Semtech AN1200.13, packets no
larger than the region allows (a 56-byte frame is 60 with our link framing, one over SF10's 59 in
EU868: two packets), half-duplex, and a duty cycle the firmware plans its sends around
(firmware/lora.py, firmware/uartlink.py) while the simulated module pair checks it
(firmware/sim/devices/lora_uart.py)."""
import pytest

from firmware import config, lora
from huaico.protocol import link
from tests.fixtures.firmware import run_sim, site_config


@pytest.mark.parametrize("size, sf, ms", [
    (20, 7, 56.576),  # Semtech's LoRa calculator: SF7/125 kHz, CR 4/5, 8-symbol preamble, 20 bytes
    (51, 12, 2465.792),  # LoRaWAN's largest DR0 payload at SF12: 2.47 s (low data rate optimisation on)
    (59, 10, 657.408),
    (1, 10, 206.848),
])
def test_airtime_follows_an1200_13(size, sf, ms):
    assert lora.airtime_us(size, sf, 125000) / 1000 == pytest.approx(ms, abs=0.001)


def test_a_56_byte_frame_over_sf10_in_eu868_goes_as_two_packets():
    frame = bytes(range(1, 57))
    wire = link.encode(frame)
    assert len(wire) == 60  # COBS code byte, CRC-16, delimiter
    radio = {"type": "lora", "sf": 10, "region": "EU868"}
    assert lora.settings(radio)[4] == 59
    assert lora.packets(len(wire), 59) == [59, 1]
    assert lora.burst_us(len(wire), radio) == lora.airtime_us(59, 10, 125000) + lora.airtime_us(1, 10, 125000)


def _lora_site(**radio):
    site = site_config("pico", report_s=30, thresholds=[], ring={"frames": 256})
    # Two more analog sensors: a sampling round's frame is then 50-60 bytes, 55-64 on the link.
    site["sensors"] += [{"type": "soil_moisture", "name": "soil", "interval_s": 60, "dry_v": 2.8, "wet_v": 1.2},
                        {"type": "crack_gauge", "name": "crack", "interval_s": 60, "pins": {"adc0": 27}}]
    # A frame every 10 s: more than SF10 at 1 % can carry (one 0.66-0.86 s frame in 66-86 s), so
    # the link is always busy and its planning shows.
    for sensor in site["sensors"]:
        sensor["interval_s"] = 10
    site["transport"] = {"type": "uart", "baud": 9600, "mtu": 191, "ack_timeout_ms": 3600, "burst": 2,
                         "retry_s": 5, "retry_max_s": 30,
                         "radio": dict({"type": "lora", "sf": 10, "region": "EU868"}, **radio)}
    return site


def test_config_wants_an_ack_timeout_the_air_allows():
    site = _lora_site()
    site["transport"]["ack_timeout_ms"] = 1500
    errors = config.check(site, sensor_check=False)
    assert any(e.startswith("transport.ack_timeout_ms: 1500 ms is less than") for e in errors), errors
    assert config.check(_lora_site(), sensor_check=False) == []


def test_firmware_keeps_the_eu868_duty_cycle_and_delivers(tmp_path, uart_peer, compiled_runner):
    """Twenty minutes over SF10 with more frames than the air can carry: what the gateway got came
    through the module pair intact (56-byte frames as two packets), the board's time on air stayed
    within 1 % of any hour (the module pair's check) and of the run (plus one frame: the last
    one's off-time may run past the end), and the link held frames back to keep it."""
    scenario = {"duration_s": 1200, "world": {"battery_v": 4.0},
                "rain": [{"from_s": 0, "to_s": 1200, "every_s": 20.0}]}
    code, events, output = run_sim(tmp_path, _lora_site(), scenario, speed=40, uart=uart_peer.spec,
                                   runner=compiled_runner, timeout=240)
    assert code == 0, output[-3000:]
    air = [e for e in events if e["ev"] == "air"]
    assert not [e for e in events if e["ev"] == "duty_exceeded"], output[-3000:]
    assert [e for e in events if e["ev"] == "radio_hold"], "the link never had to wait"
    acked = {e["seq"] for e in events if e["ev"] == "ack"}
    assert acked and acked <= set(uart_peer.store.frames), (acked, sorted(uart_peer.store.frames))
    assert not uart_peer.store.rejects, uart_peer.store.rejects
    total_air_ms = sum(e["air_ms"] for e in air)
    assert total_air_ms <= 0.01 * 1200 * 1000 + max(e["air_ms"] for e in air), total_air_ms
    big = [e for e in air if e["bytes"] > 59]
    assert big and all(e["packets"] >= 2 for e in big), big
    print("LoRa SF10 EU868: %d frames on the air, %d acked, %.1f s on air in %d s, %d holds"
          % (len(air), len(acked), total_air_ms / 1000, 1200, len([e for e in events if e["ev"] == "radio_hold"])))


def test_half_duplex_the_link_leaves_the_ack_its_window(tmp_path, uart_peer, compiled_runner):
    """With no duty cycle to wait for (region "none") the link still sends a frame only once the
    last one's ack has had time to come back: the modules never talk over each other."""
    scenario = {"duration_s": 300, "world": {"battery_v": 4.0},
                "rain": [{"from_s": 0, "to_s": 300, "every_s": 5.0}]}
    site = _lora_site(region="none")
    code, events, output = run_sim(tmp_path, site, scenario, speed=20, uart=uart_peer.spec,
                                   runner=compiled_runner, timeout=240)
    assert code == 0, output[-3000:]
    assert not [e for e in events if e["ev"] == "collision"], output[-3000:]
    sent = [e["seq"] for e in events if e["ev"] == "sent"]
    acked = {e["seq"] for e in events if e["ev"] == "ack"}
    assert len(sent) >= 8 and set(sent) <= acked | set(sent[-1:]), (sent, sorted(acked))
