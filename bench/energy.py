"""Battery life: what today's firmware draws on every board and transport, from the simulator's energy model.

Each board's example site (firmware/scenarios/site-example.json, with the
board and transport changed: a UART cable, an RS-485 line, a LoRa UART
module at EU868 SF10, MQTT over Wi-Fi) reports every 15 minutes in dry
weather and runs on the simulated board (firmware/sim/run.py, the real
firmware under the MicroPython unix port) through a dry window and a storm
window (a tip every 5 s, 144 mm/h: the site's local rain threshold of 2 mm holds
all the time, so it reports at the threshold's pace). A gateway peer
stores and acks every frame: over a TCP "cable" for UART sites (the LoRa
module pair sits between on the board's side), through a real Mosquitto
on 127.0.0.1 for MQTT (started here, stopped by its pid).

The energy model (firmware/sim/energy_model.py, currents and their sources in
firmware/sim/currents.py) gives mAh per day, average mA, awake and
radio-on shares. Each window is `--hours` of scenario time scaled to a day
(a storm day is a day of storm). Printed per board and transport: those
figures, days on a 3,000 mAh cell with no sun, the board's floor (its own
current in the site's sleep mode) and the target: 4 mA, or the floor plus
20 % where the floor is above what 4 mA allows (issue 12), and the frames
the board made and the gateway acked in the window. Busy time on
the simulated board is this PC's time running the unix port, much faster
than a board's CPU: the awake share of CPU-bound work is a lower bound;
waits (conversions, UART and air time, joins, acks) are virtual time and
count in full.

    .venv/bin/python bench/energy.py [--hours 1] [--speed 2000] [--only pico] [--json FILE]
"""
import argparse
import json
import pathlib
import signal
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.fixtures.broker import Broker  # noqa: E402
from tests.fixtures.firmware import UartPeer, build, run_sim  # noqa: E402
from tests.test_firmware_mqtt import GatewayPeer  # noqa: E402

CELL_MAH = 3000
TARGET_MA = 4.0
FLOOR_MARGIN = 1.2
STORM_TIP_S = 5.0
HEAP = {"pico": 166 * 1024, "pico_w": 166 * 1024, "pico2_w": 166 * 1024, "esp32": 100 * 1024,
        "esp32s3": 100 * 1024}
# (board, transport): every board's own transports (boards/*.py TRANSPORTS), and the UART
# ones through an RS-485 line and a LoRa module on the boards that carry those in the field.
VARIANTS = (("pico", "uart"), ("pico", "rs485"), ("pico", "lora"),
            ("pico_w", "uart"), ("pico_w", "mqtt"),
            ("pico2_w", "uart"), ("pico2_w", "mqtt"),
            ("esp32", "uart"), ("esp32", "mqtt"), ("esp32", "lora"),
            ("esp32s3", "uart"), ("esp32s3", "mqtt"))


# A free GPIO per board for the line or radio module's power group (firmware/power.py): the
# module is powered only to send and to wait for the acks.
MODULE_PIN = {"pico": 14, "esp32": 15}
# Start-up after power-up: an RS-485 transceiver's driver enable is microseconds (MAX3485
# tZH 0.9 us: 1 ms is ample); a LoRa UART module's 5 ms is test_firmware_power's.
MODULE_SETTLE_MS = {"rs485": 1, "lora": 5}


def example_site(board, transport, broker):
    """site-example.json on `board` over `transport`, reporting every 15 minutes in dry weather."""
    site = json.loads((ROOT / "firmware" / "scenarios" / "site-example.json").read_text())
    site["board"] = board
    site["report_s"] = 900
    t = site["transport"]
    if transport in MODULE_SETTLE_MS:
        site.setdefault("power", {})["module"] = {"pin": MODULE_PIN[board], "on": 1,
                                                 "settle_ms": MODULE_SETTLE_MS[transport]}
        t["power"] = "module"
    if transport == "rs485":
        t["phy"] = "rs485"  # read by the simulator only: a transceiver on the UART
    elif transport == "lora":
        # tests/test_lora_airtime.py's link: an ack timeout SF10 allows, two frames a burst
        t.update(baud=9600, mtu=191, ack_timeout_ms=3600, burst=2,
                 radio={"type": "lora", "sf": 10, "region": "EU868"})
    elif transport == "mqtt":
        # timeouts short enough for a loop to fit the rp2 watchdog's 8 s with 2 s sleeps
        site["transport"] = {"type": "mqtt", "host": broker.host, "port": broker.port, "ssid": "site",
                             "password": "secret", "mtu": 255, "connect_timeout_ms": 1500,
                             "io_timeout_ms": 250, "ack_timeout_ms": 1500, "burst": 4}
    return site


def scenario(hours, storm):
    raw = {"duration_s": int(hours * 3600), "world": {"battery_v": 4.0}}
    if storm:
        raw["rain"] = [{"from_s": 0, "to_s": raw["duration_s"], "every_s": STORM_TIP_S}]
    return raw


def run(board, transport, storm, hours, speed, runner, work, broker):
    site = example_site(board, transport, broker)
    peer = GatewayPeer(broker) if transport == "mqtt" else UartPeer()
    out = work / ("%s-%s-%s" % (board, transport, "storm" if storm else "dry"))
    out.mkdir()
    try:
        code, events, output = run_sim(out, site, scenario(hours, storm), speed=speed, runner=runner,
                                       heap=HEAP[board], timeout=3600,
                                       **({} if transport == "mqtt" else {"uart": peer.spec}))
    finally:
        peer.close()
    found = [e for e in events if e.get("ev") == "energy"]
    if code or not found:
        raise SystemExit("%s %s: the simulated board failed (exit %s):\n%s" % (board, transport, code, output[-3000:]))
    figures = found[0]
    for name in ("frame", "ack"):  # the link's health: frames made, and acked by the gateway
        figures[name] = len([e for e in events if e.get("ev") == name])
    return figures


def target(floor_ma):
    return max(TARGET_MA, floor_ma * FLOOR_MARGIN)


def row(board, transport, day, f):
    days = CELL_MAH / f["mah_per_day"] if f["mah_per_day"] else float("inf")
    goal = target(f["floor_ma"])
    return ("| %-7s | %-9s | %-5s | %7.1f | %7.3f | %7.2f | %7.2f | %8.1f | %8.3f | %6.2f | %-4s | %5d/%-4d |"
            % (board, transport, day, f["mah_per_day"], f["avg_ma"], f["awake_pct"], f["radio_on_pct"], days,
               f["floor_ma"], goal, "-" if day == "storm" else ("met" if f["avg_ma"] <= goal else "over"),
               f["frame"], f["ack"]))


HEADER = ("| board   | transport | day   | mAh/day |  avg mA | awake % | radio % | days 3Ah | floor mA "
          "| target | dry  | made/acked |\n"
          "|---------|-----------|-------|---------|---------|---------|---------|----------|----------"
          "|--------|------|------------|")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="scenario hours per window (scaled to a day)")
    parser.add_argument("--speed", type=float, default=2000.0, help="the simulator's sleep speed-up")
    parser.add_argument("--only", help="one board")
    parser.add_argument("--json", help="write every run's energy event to this file")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # so that the broker is stopped below
    started = time.time()
    work = pathlib.Path(tempfile.mkdtemp(prefix="huaico-energy-"))
    runner = build(work / "mpy")
    broker = Broker(work / "broker")
    broker.start()
    results = []
    print("dry-weather reporting every 15 min; %g h per window at %gx; cell %d mAh, no sun"
          % (args.hours, args.speed, CELL_MAH))
    print(HEADER)
    try:
        for board, transport in VARIANTS:
            if args.only and board != args.only:
                continue
            for storm in (False, True):
                figures = run(board, transport, storm, args.hours, args.speed, runner, work, broker)
                day = "storm" if storm else "dry"
                results.append({"board": board, "transport": transport, "day": day, "energy": figures})
                print(row(board, transport, day, figures), flush=True)
    finally:
        broker.stop()
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(results, indent=1))
    print("target: average <= %g mA in dry weather, or the board's floor + %d %% where the floor is above "
          "what that allows; %.0f s" % (TARGET_MA, round((FLOOR_MARGIN - 1) * 100), time.time() - started))


if __name__ == "__main__":
    main()
