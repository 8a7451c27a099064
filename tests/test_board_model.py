"""The strict board model (firmware/sim/ports/) and the firmware fixed against it: one test per
finding of issue 10 that is this model's, each failing on the permissive model or the old firmware.

Sources: micropython/micropython at v1.22.0-v1.28.0 (ports/rp2, ports/esp32), cited in the port
modules. Runs are short scenarios at a high speed on the real MicroPython unix port.
"""
import importlib
import json
import subprocess
import time

import pytest

from firmware.sim import ports
from huaico.devices import flash
from tests.fixtures.firmware import BOARDS, ROOT, RUNNER, micropython, run_sim, site_config

BOARD_MODULES = {name: importlib.import_module("boards." + name) for name in BOARDS}


def _end(events):
    return [e for e in events if e.get("ev") == "sim_end"][-1]


def test_esp32_pin_irq_refuses_hard_rp2_takes_it():
    # ports/esp32/machine_pin.c allowed_args: handler, trigger, wake; ports/rp2/machine_pin.c: hard.
    with pytest.raises(TypeError, match="extra keyword arguments given"):
        ports.load("esp32", (1, 28, 0)).allowed("irq", {"hard": True})
    ports.load("pico", (1, 22, 0)).allowed("irq", {"hard": True})


def test_rp2_watchdog_maximum_is_8388_ms_on_every_release_to_1_28_rp2350_included():
    for board in ("pico", "pico_w", "pico2_w"):
        assert ports.load(board, (1, 28, 0)).wdt_max_ms == 8388
        assert BOARD_MODULES[board].WDT_MAX_MS == 8388
    assert ports.load("pico2_w", (1, 29, 0)).wdt_max_ms == 16777  # master after v1.28.0


def test_board_files_keep_off_the_pins_their_modules_reserve():
    # ESP32-WROOM-32 flash GPIO6-11, WROVER PSRAM 16/17, Pico W CYW43 23/24/25/29.
    for name, b in BOARD_MODULES.items():
        rules = ports.load(name, b.MICROPYTHON[1])
        used = list(b.PINS.values()) + [p for pins in list(b.I2C.values()) + list(b.UART.values()) for p in pins]
        for role, pin in b.PINS.items():
            if role in ("i2c0", "uart"):
                continue  # bus ids, not pins
            rules.pin_free(pin, role)
        for pins in list(b.I2C.values()) + list(b.UART.values()):
            for pin in pins:
                rules.pin_free(pin, name)
        assert used
    with pytest.raises(ValueError, match="flash"):
        ports.load("esp32", (1, 28, 0)).pin_free(10, "UART")
    with pytest.raises(ValueError, match="CYW43"):
        ports.load("pico_w", (1, 28, 0)).pin_free(24, "Pin")


def test_each_board_file_names_its_micropython_releases_and_flash_refuses_others():
    for name, b in BOARD_MODULES.items():
        oldest, newest = b.MICROPYTHON
        assert oldest <= newest
        assert flash.release_problem(newest, b) is None
        assert flash.release_problem(oldest, b) is None
        refused = flash.release_problem((1, 21, 0), b)
        assert refused and "install MicroPython %d.%d.x" % newest[:2] in refused
    assert flash.release_problem((1, 24, 1), BOARD_MODULES["pico2_w"])  # no RPI_PICO2_W before 1.25


def test_firmware_refuses_an_unsupported_release_with_one_line(tmp_path):
    site = tmp_path / "site.json"
    site.write_text(json.dumps(site_config("pico")))
    scenario = tmp_path / "s.json"
    scenario.write_text(json.dumps({"duration_s": 5}))
    done = subprocess.run([micropython(), "-X", "heapsize=190000", str(RUNNER), "--site", str(site), "--scenario",
                           str(scenario), "--flash", str(tmp_path / "flash"), "--micropython", "1.21.0"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if "install MicroPython" in line]
    assert lines == ["MicroPython 1.21.0, older than 1.22.0, the oldest boards/pico.py supports:"
                     " install MicroPython 1.28.x"], done.stdout


STORM = {"duration_s": 150, "world": {"battery_v": 4.0},
         "rain": [{"from_s": 0, "to_s": 120, "every_s": 1.0}]}


@pytest.mark.parametrize("board", BOARDS)
def test_storm_tips_counted_once_each_with_reed_release_bounce_and_sleep(board, tmp_path, uart_peer):
    # The reed stays closed 50-150 ms and bounces on release (firmware/sim/devices/rain.py); the board
    # light-sleeps between rounds: esp32 wakes only on its ext0 source, rp2 on the pin IRQ.
    code, events, output = run_sim(tmp_path, site_config(board), STORM, speed=20, uart=uart_peer.spec)
    assert code == 0, output[-3000:]
    end = _end(events)
    assert end["tips"] == 120 and end["lost_tips"] == 0
    assert uart_peer.store.tips() == 120, (uart_peer.store.tips(), output[-2000:])
    assert not uart_peer.store.reused


def test_i2c_sensor_answers_on_the_board_files_pins_on_esp32(tmp_path, uart_peer):
    # esp32 I2C(0) without pins takes SCL 18 / SDA 19 (ports/esp32/machine_i2c.h), not the board's 22/21.
    site = site_config("esp32")
    site["sensors"].append({"type": "pressure_level_i2c", "name": "level0", "interval_s": 10})
    scenario = {"duration_s": 40, "world": {"battery_v": 4.0, "water_level_m": 1.2}}
    code, events, output = run_sim(tmp_path, site, scenario, speed=20, uart=uart_peer.spec)
    assert code == 0, output[-3000:]
    levels = [row for f in uart_peer.store.frames.values() for row in f.rows if row[0] == 4]  # water_level
    assert levels and all(row[-1] == 0 for row in levels), levels  # quality ok, not no-return


def test_sick_board_resets_itself_and_never_hangs_in_lightsleep(tmp_path):
    # No gateway for over an hour: the loop calls the board stuck. Starving the watchdog would let it
    # fire in lightsleep: an RP2040 on v1.22-v1.28 locks up there (micropython #17228), the run reports
    # a hang and exits 3; an RP2350's watchdog does not count asleep (#17229) and never fires.
    for board in ("pico", "pico2_w"):
        (tmp_path / board).mkdir()
        code, events, output = run_sim(tmp_path / board, site_config(board), {"duration_s": 3700}, speed=2000)
        assert code == 0, output[-3000:]
        assert not [e for e in events if e.get("ev") == "hang"]
        resets = [e for e in events if e.get("ev") == "board_reset"]
        assert resets and resets[0]["cause"] == 2, resets  # HARD_RESET: machine.reset()


@pytest.mark.parametrize("board", ("pico", "esp32"))
def test_gateway_time_survives_a_reset_in_retained_memory(board, tmp_path, uart_peer):
    # rp2 restarts its RTC at 2021-01-01 at boot (ports/rp2/main.c): the gateway time of the last save
    # is kept in the watchdog scratch registers; the esp32 RTC runs on, and the offset is kept.
    scenario = {"duration_s": 120, "world": {"battery_v": 4.0}, "events": [{"at_s": 60.5, "reset": "watchdog"}]}
    code, events, output = run_sim(tmp_path, site_config(board), scenario, speed=20, uart=uart_peer.spec)
    assert code == 0, output[-3000:]
    restored = [e for e in events if e.get("ev") == "restored"]
    assert restored[-1]["synced"] is True, restored
    rebooted = [f for seq, f in sorted(uart_peer.store.frames.items()) if f.flags & 4 and seq > 0]
    assert rebooted and not rebooted[-1].flags & 1  # FLAG_REBOOTED, and not FLAG_CLOCK_UNSYNCED
    assert abs(rebooted[-1].time - time.time()) < 60, rebooted[-1]


@pytest.mark.parametrize("board, start", (("pico", 1609459200), ("esp32", 0)))
def test_rtc_after_power_on_is_the_ports(board, start, tmp_path, uart_peer):
    # Before the gateway's first ack a frame carries the board's own clock: rp2 2021-01-01 (1970 epoch,
    # ports/rp2/main.c), esp32 0 s of its 2000 epoch, flagged FLAG_CLOCK_UNSYNCED; acked ones are synced.
    scenario = {"duration_s": 65, "world": {"battery_v": 4.0}}
    code, events, output = run_sim(tmp_path, site_config(board, report_s=10), scenario, speed=20, uart=uart_peer.spec)
    assert code == 0, output[-3000:]
    frames = [f for seq, f in sorted(uart_peer.store.frames.items())]
    assert frames[0].flags & 1 and start <= frames[0].time < start + 60, frames[0]
    assert not frames[-1].flags & 1 and abs(frames[-1].time - time.time()) < 60, frames[-1]


# A 75 s outage leaves a backlog; when the link is back the gateway acks a burst back to back. On rp2
# a flash step runs with interrupts off (ports/rp2/rp2_flash.c), and the acks arriving meanwhile
# overrun the PL011's 32-byte RX FIFO (tests/mp_drivers/check_uart.py), each lost ack costing an ack
# timeout. The firmware removes acked frames' files only after a round's ack wait (firmware/app.py),
# so no step falls in it: the backlog drains with no byte lost, on rp2 as on an esp32 (whose UART
# ISR runs from IRAM through flash steps, CONFIG_UART_ISR_IN_IRAM). The steps take the datasheet's
# maxima (W25Q16JV: a 400 ms sector erase, 3 ms a page): the loop keeps its watchdog fed, and a
# storm's tips, some of them whole inside an erase, are each counted once.
BACKLOG = {"duration_s": 160, "world": {"battery_v": 4.0}, "flash_time": "max",
           "link_down": [{"from_s": 5, "to_s": 80}], "rain": [{"from_s": 0, "to_s": 140, "every_s": 1.0}]}


@pytest.mark.parametrize("board", ("pico", "esp32"))
def test_a_backlog_drains_through_flash_steps_without_losing_an_ack(board, tmp_path, uart_peer):
    site = site_config(board, report_s=10)
    site["sensors"][0]["interval_s"] = 5  # a frame every 5 s: 15 of them wait out the outage
    code, events, output = run_sim(tmp_path, site, BACKLOG, speed=20, uart=uart_peer.spec)
    assert code == 0, output[-3000:]
    assert not [e for e in events if e.get("ev") == "uart_overrun"], output[-3000:]
    made = {e["seq"]: e["ms"] for e in events if e.get("ev") == "frame"}
    got = set(uart_peer.store.frames)
    assert got <= set(made) and not uart_peer.store.reused
    assert {seq for seq, ms in made.items() if ms < 145000} <= got, sorted(set(made) - got)  # drained
    assert not [e for e in events if e.get("ev") == "retry" and e["why"] == "no_ack"
                and e["ms"] > 80000], output[-2000:]  # no ack lost: never a backoff
    end = _end(events)
    assert end["resets"] == 0 and end["tips"] == 140 and end["lost_tips"] == 0, end
    assert uart_peer.store.tips() == 140, (uart_peer.store.tips(), output[-2000:])


WAKE_CHECK = r'''
"""A stand-in for firmware/boot.py: tries the esp32 wake sources on the simulated board and prints what
they did; start() returns None, so the run ends as a refused config (exit status 2)."""
import json
import time

import esp32
import machine

RAIN, OTHER, OFF_RTC = %d, %d, %d
Pin = machine.Pin


def start(site_path, root):
    out = {}

    def check(name, fn):
        try:
            out[name] = ["ok", fn()]
        except Exception as exc:
            out[name] = [type(exc).__name__, str(exc)]

    def nap():
        time.sleep_ms(300)  # awake until the reed of the last tip is open: the sources are levels
        start = time.ticks_ms()
        machine.lightsleep(15000)
        return [machine.wake_reason(), time.ticks_diff(time.ticks_ms(), start) < 14000]

    rain = Pin(RAIN, Pin.IN, Pin.PULL_UP)
    other = Pin(OTHER, Pin.IN, Pin.PULL_UP)
    check("ext1_not_rtc", lambda: esp32.wake_on_ext1([Pin(OFF_RTC, Pin.IN)], esp32.WAKEUP_ALL_LOW))
    check("ext1_gpio33", lambda: esp32.wake_on_ext1([Pin(33, Pin.IN)], esp32.WAKEUP_ALL_LOW))
    check("ext1_int", lambda: esp32.wake_on_ext1([RAIN], esp32.WAKEUP_ALL_LOW))
    esp32.wake_on_ext1([])
    check("irq_not_rtc", lambda: Pin(OFF_RTC, Pin.IN).irq(trigger=Pin.WAKE_LOW, wake=machine.SLEEP) and None)
    check("irq_bad_wake", lambda: rain.irq(trigger=Pin.WAKE_LOW, wake=1) and None)
    rain.irq(trigger=Pin.WAKE_LOW, wake=machine.DEEPSLEEP)
    check("ext0_deep_only", nap)
    rain.irq(trigger=Pin.WAKE_LOW, wake=machine.SLEEP)
    check("ext0_light", nap)
    check("second_ext0", lambda: other.irq(trigger=Pin.WAKE_HIGH, wake=machine.SLEEP) and None)
    rain.irq(None, Pin.IRQ_FALLING)  # an edge irq on the ext0 pin drops ext0
    esp32.wake_on_ext1([rain, other], esp32.WAKEUP_ALL_LOW)
    check("ext1_two_low", nap)
    esp32.wake_on_ext1([rain])
    check("ext1_one_low", nap)
    esp32.wake_on_ext1([other], esp32.WAKEUP_ANY_HIGH)
    check("ext1_high_now", nap)
    print(json.dumps({"ev": "wake_check", "out": out}))
    return None
'''


def _board_with_boot(tmp_path, boot_text):
    """A checkout whose firmware/boot.py is boot_text, the rest linked to the real one."""
    root = tmp_path / "root"
    (root / "firmware").mkdir(parents=True)
    for name in ("protocol", "boards"):
        (root / name).symlink_to(ROOT / name)
    for entry in (ROOT / "firmware").iterdir():
        if entry.name not in ("boot.py", "__pycache__"):
            (root / "firmware" / entry.name).symlink_to(entry)
    (root / "firmware" / "boot.py").write_text(boot_text)
    return root / "firmware" / "sim" / "run.py"


@pytest.mark.parametrize("board, pins, all_low", (("esp32", (27, 13, 5), True), ("esp32s3", (11, 17, 40), False)))
def test_esp32_wake_sources_ext1_and_pin_irq_wake_as_the_port_has_them(board, pins, all_low, tmp_path):
    # ports/esp32/modesp32.c wake_on_ext1, machine_pin.c machine_pin_irq (wake=), modmachine.c
    # machine_sleep_helper; RTC GPIOs per chip (modesp32.h); ext1 level False is ALL_LOW on the
    # ESP32, ANY_LOW on the ESP32-S3 (ESP-IDF esp_sleep.h). A tip every 10 s pulls the rain pin low.
    runner = _board_with_boot(tmp_path, WAKE_CHECK % pins)
    scenario = {"duration_s": 200, "world": {"battery_v": 4.0}, "rain": [{"from_s": 0, "to_s": 200, "every_s": 10.0}]}
    code, events, output = run_sim(tmp_path, site_config(board), scenario, speed=20, runner=runner)
    assert code == 2, output[-3000:]
    out = [e for e in events if e.get("ev") == "wake_check"][0]["out"]
    assert out["ext1_not_rtc"] == ["ValueError", "invalid pin"]
    assert out["ext1_gpio33"] == (["ok", None] if board == "esp32" else ["ValueError", "invalid pin"])
    assert out["ext1_int"] == ["ok", None]  # a GPIO number is a pin there too (machine_pin_find)
    assert out["irq_not_rtc"] == ["ValueError", "invalid pin for wake"]
    assert out["irq_bad_wake"] == ["ValueError", "bad wake value"]
    assert out["ext0_deep_only"] == ["ok", [4, False]]  # TIMER_WAKE: armed for deep sleep only
    assert out["ext0_light"] == ["ok", [2, True]]  # EXT0_WAKE at the tip
    assert out["second_ext0"] == ["ValueError", "no resources"]
    assert out["ext1_two_low"] == (["ok", [4, False]] if all_low else ["ok", [3, True]])
    assert out["ext1_one_low"] == ["ok", [3, True]]  # EXT1_WAKE
    assert out["ext1_high_now"] == ["ok", [3, True]]  # level-triggered: at once


FLASH_STEP = r'''
import sys
sys.path.insert(0, %r)
import json
from firmware.sim import bus, hwclock, io, ports
from firmware.sim.devices.rain import TippingBucket
from firmware.sim.flashchip import Chip
from firmware.sim.hardware import Hardware
from firmware.sim.scenario import Scenario


def board(name, bounce_in_step, flash_time=True):
    """A reed on pin 15 (pull-up, IRQ on falling edges) tips at 1 s; the firmware, busy, erases
    a sector from 1 ms before the reed lets go (its release bounce falls in the erase) or from
    7 ms after (the bounce came before it). What the first sleep, the erase and the next sleep tell."""
    bus.reset()
    io.forget_pins()
    chip = Chip(%r + "/" + name + ".img", 8 * 4096, {})
    chip.blank()
    rules = ports.load(name, (1, 24, 0))
    chip.port = rules.port
    raw = {"duration_s": 10, "flash_time": flash_time, "rain": [{"from_s": 0, "to_s": 1, "every_s": 1.0}]}
    hw = Hardware(Scenario(raw), 1, chip)
    hw.rules = rules
    model = TippingBucket("rain0", 15)
    bus.pin_attach(15, model)
    hw.scenario.rain_models = [model]
    pin = hw.answer(["new", "Pin", [15, 0, 1], {}])
    hw.answer(["irq", pin, 4, {"hard": True} if name == "pico" else {}])
    tip = hw.idle(0, 2000000, "light")[1]
    release = 1000000 + model.closure_ms() * 1000
    start = release - 1000 if bounce_in_step else release + 7000
    hwclock.sync(start)
    step = hw.flash_step("erase", 0, 0, 4096)
    level = hw.answer(["call", pin, "value", []])
    after = hw.idle(hwclock.now_us(), 3000000, "light")[1]
    return {"tip": tip, "release": release, "start": start, "step": step, "level": level, "after": after}


print(json.dumps([board("pico", True), board("esp32", True), board("pico", False), board("pico", True, "max")]))
'''


def test_a_pin_edge_during_an_rp2_flash_step_has_its_irq_run_as_the_step_ends(tmp_path):
    # rp2 turns interrupts back on after each erase and program (ports/rp2/rp2_flash.c), so a pin
    # IRQ held through one runs at its end, once for the edges latched (machine_pin.c gpio_irq), not
    # at the next sleep after the whole commit; esp32 schedules its handlers, which run after the
    # littlefs call: the hardware tells its edges at the next sleep (firmware/sim/hardware.py flash_step).
    script = tmp_path / "step.py"
    script.write_text(FLASH_STEP % (str(ROOT), str(tmp_path)))
    done = subprocess.run([micropython(), "-X", "heapsize=400000", str(script)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    held, esp32, before, longest = json.loads(done.stdout.strip().splitlines()[-1])
    bounces = [held["release"] + k * 1000 for k in (1, 3, 5)]  # the reed shuts 1, 3, 5 ms after it lets go
    for run in (held, esp32, before):
        assert run["tip"] == [[0, 4, 1000000, 0]] and run["step"][0] == 4096, run
    n, edges = held["step"]
    assert len(edges) == 1 and edges[0][:2] == [0, 4], held  # three shuts, one IRQ
    assert held["start"] + 45000 <= edges[0][2] < held["start"] + 50000, held  # run as the 45 ms erase ends
    # "flash_time": "max": the datasheet's longest erase, 400 ms.
    assert longest["step"][1][0][2] >= longest["start"] + 400000 and longest["step"][1][0][3] == 1, longest
    assert edges[0][3] == held["level"] == 1, held  # its handler finds the reed open again
    assert held["after"] == []
    assert esp32["step"] == [4096, []] and esp32["after"] == [[0, 4, t, 0] for t in bounces], esp32
    # With interrupts on at the bounces, each handler ran then: each goes with its own time and the
    # level the pin had just after it (shut), though the reed is open by the time the step ends.
    assert before["step"] == [4096, [[0, 4, t, 0] for t in bounces]] and before["after"] == [], before
    assert before["level"] == 1, before


LATE_EDGES = r'''
"""A stand-in for firmware/boot.py on a pico: a hard IRQ on the rain pin records what its handler
sees (ticks_us, the pin's level) at every edge of three tips, while the firmware is busy for 250 ms
after each tip and then writes a file: the firmware's process hears of the reed's release and
bounce only at that write's flash steps. Prints the records; start() returns None (exit status 2)."""
import array
import json
import time

import machine

RAIN = 6
seen = array.array("i", range(96))  # ticks_us, level, ... of each edge
n = array.array("i", [0])


def start(site_path, root):
    pin = machine.Pin(RAIN, machine.Pin.IN, machine.Pin.PULL_UP)

    def handler(p):
        i = n[0]
        if i < len(seen) - 1:
            seen[i] = time.ticks_us()
            seen[i + 1] = p.value()
            n[0] = i + 2

    pin.irq(handler, machine.Pin.IRQ_FALLING | machine.Pin.IRQ_RISING, hard=True)
    writes = []
    for k in range(3):
        machine.lightsleep(5000)  # the tip's closing edge wakes it (a handler is set, a timeout given)
        t0 = time.ticks_us()
        while time.ticks_diff(time.ticks_us(), t0) < 250000:
            pass
        writes.append(time.ticks_us())
        with open(root.rsplit("/", 1)[0] + "/probe", "w") as f:  # the filesystem's top: /data is not made yet
            f.write("x" * (k + 1))
    print(json.dumps({"ev": "late_edges", "seen": list(seen[:n[0]]), "writes": writes}))
    return None
'''


def test_a_hard_irq_told_late_reads_the_time_and_level_of_its_edge(tmp_path):
    # An rp2 runs a hard pin IRQ at its edge while the CPU is busy (interrupts on): its handler
    # reads the clock and the pin as they are then. The simulator's firmware process hears of the
    # edge only at its next sleep or flash step (here a file write's), after every bounce of the
    # release has come: each handler must still see its own edge's time and level. A request in
    # the handler's path would move the firmware's clock to the hardware's present (rpc.py): the
    # bounce of a tip then looked 250 ms after it and a rain gauge counted it (test_firmware_mqtt).
    runner = _board_with_boot(tmp_path, LATE_EDGES)
    scenario = {"duration_s": 30, "world": {"battery_v": 4.0}, "rain": [{"from_s": 0, "to_s": 3, "every_s": 1.0}]}
    code, events, output = run_sim(tmp_path, site_config("pico"), scenario, speed=20, runner=runner)
    assert code == 2, output[-3000:]
    out = [e for e in events if e.get("ev") == "late_edges"][0]
    seen = list(zip(out["seen"][::2], out["seen"][1::2]))
    tips = [round(e["vt"] * 1000000) for e in events if e.get("ev") == "tip"]
    assert len(tips) == 3 and len(seen) == 3 * 8, (tips, seen)  # a closure, then 7 edges of the release
    for k, tip in enumerate(tips):
        closing, release = seen[8 * k], seen[8 * k + 1:8 * k + 8]
        assert closing[1] == 0 and 0 <= closing[0] - tip < 1000, (tip, closing)
        assert 50000 <= release[0][0] - tip <= 151000, (tip, release)  # the reed stays shut 50-150 ms
        assert [level for _, level in release] == [1, 0, 1, 0, 1, 0, 1], release  # open, bounce, open
        for j in range(1, 7):
            assert 900 <= release[j][0] - release[j - 1][0] < 1100, release  # 1 ms apart, as they came
        assert release[-1][0] < out["writes"][k], (release, out["writes"][k])  # before the write told them
