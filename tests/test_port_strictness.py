"""Where the simulated board was kinder than the MicroPython port, and is no longer: one test per gap.

Each runs a stand-in for firmware/boot.py on the simulated board (tests/test_board_model.py
_board_with_boot) that tries the calls and prints what each did, and checks it against the port's
C source at the release the run names (micropython/micropython, cited in firmware/sim/ports/).
"""
import pytest

from tests.fixtures.firmware import run_sim, site_config
from tests.test_board_model import _board_with_boot
from tests.test_firmware_wifi import model

CHECKS = r'''
"""A stand-in for firmware/boot.py: runs the checks below on the simulated board and prints what
each did (out: name -> ["ok", value] or [exception type, message]); start() returns None, so the
run ends as a refused config (exit status 2)."""
import json
import machine
import time

Pin = machine.Pin
out = {}


def check(name, fn):
    try:
        value = fn()
    except Exception as exc:
        out[name] = [type(exc).__name__, str(exc)]
        return
    out[name] = ["ok", value]


def start(site_path, root):
%s
    print(json.dumps({"ev": "checks", "out": out}))
    return None
'''


def _checks(tmp_path, board, body, scenario=None, release=None):
    """Run the check lines `body` (indented for start()) on `board`; the `out` dict they filled."""
    runner = _board_with_boot(tmp_path, CHECKS % body)
    scenario = scenario or {"duration_s": 30, "world": {"battery_v": 4.0}}
    code, events, output = run_sim(tmp_path, site_config(board), scenario, speed=20, runner=runner,
                                   micropython_release=release)
    found = [e for e in events if e.get("ev") == "checks"]
    assert code == 2 and found, output[-3000:]
    return found[0]["out"], events


PIN_RULES = '''
    check("wake_low", lambda: Pin.WAKE_LOW > 0)
    check("wake_high", lambda: Pin.WAKE_HIGH > 0)
    check("drive_const", lambda: Pin.DRIVE_3 >= 0)
    check("drive", lambda: Pin(5, Pin.OUT, drive=3) and None)
    check("drive_str", lambda: Pin(5, Pin.OUT, drive="3") and None)
    check("hold", lambda: Pin(5, Pin.OUT, hold=True) and None)
    check("alt", lambda: Pin(5, Pin.IN, alt=1) and None)
    check("alt_str", lambda: Pin(5, Pin.IN, alt="uart") and None)
    check("mode_kw", lambda: Pin(5, mode=Pin.OUT, value=1).value())
    check("no_such_gpio", lambda: Pin(24) and None)
    check("out_on_34", lambda: Pin(34, Pin.OUT) and None)
    check("wdt_zero", lambda: machine.WDT(timeout=0) and None)
    check("rtc_memory", lambda: machine.RTC().memory(b"x") and None)
    check("hard_reset", lambda: machine.HARD_RESET)
    check("wake_reason", lambda: machine.wake_reason())
    check("rtc_memory_2049", lambda: machine.RTC().memory(bytes(2049)) and None)
    check("adc_off_pin", lambda: machine.ADC(Pin(5)) and None)
    check("i2c_swapped", lambda: machine.I2C(0, scl=Pin(4), sda=Pin(5)) and None)
    check("uart_wrong_bus", lambda: machine.UART(1, tx=Pin(0), rx=Pin(1)) and None)
    check("uart_tx_on_35", lambda: machine.UART(1, tx=Pin(35), rx=Pin(13)) and None)
    check("adc_pin", lambda: machine.ADC(Pin(ADC_PIN)) and None)
'''


def test_pin_constants_keywords_gpios_and_adc_pins_per_port(tmp_path):
    # rp2: ports/rp2/machine_pin.c (v1.22.0-v1.28.0) has no WAKE_LOW/WAKE_HIGH/DRIVE_* and takes
    # `alt` (an int); esp32: machine_pin.c takes `drive` (an int) and `hold`, refuses an output on
    # GPIO34-39 (input only) and a GPIO the chip lacks (24); machine_wdt.c refuses a timeout <= 0.
    (tmp_path / "pico").mkdir()
    (tmp_path / "esp32").mkdir()
    rp2, _ = _checks(tmp_path / "pico", "pico", "    ADC_PIN = 26\n" + PIN_RULES)
    esp32, _ = _checks(tmp_path / "esp32", "esp32", "    ADC_PIN = 34\n" + PIN_RULES)
    for name in ("wake_low", "wake_high", "drive_const"):
        assert rp2[name][0] == "AttributeError", (name, rp2)
        assert esp32[name] == ["ok", True], (name, esp32)
    for name in ("drive", "drive_str", "hold"):
        assert rp2[name] == ["TypeError", "extra keyword arguments given"], (name, rp2)
    assert esp32["drive"] == esp32["hold"] == ["ok", None], esp32
    assert esp32["drive_str"] == ["TypeError", "can't convert str to int"], esp32
    assert rp2["alt"] == ["ok", None] and rp2["alt_str"] == ["TypeError", "can't convert str to int"], rp2
    assert esp32["alt"] == esp32["alt_str"] == ["TypeError", "extra keyword arguments given"], esp32
    assert rp2["mode_kw"] == esp32["mode_kw"] == ["ok", 1]
    assert rp2["no_such_gpio"] == ["ok", None] and esp32["no_such_gpio"] == ["ValueError", "invalid pin"]
    assert rp2["out_on_34"] == ["ValueError", "invalid pin"]  # the RP2040 has GPIO0-29
    assert esp32["out_on_34"] == ["ValueError", "pin can only be input"]
    assert esp32["wdt_zero"] == ["ValueError", "WDT timeout too short"], esp32
    # rp2's machine has PWRON_RESET and WDT_RESET only, and no wake_reason (ports/rp2/modmachine.c)
    assert rp2["hard_reset"][0] == rp2["wake_reason"][0] == "AttributeError", rp2
    assert esp32["hard_reset"] == ["ok", 2] and esp32["wake_reason"] == ["ok", 0], esp32
    # RTC.memory: esp32's only, 2048 B at most (ports/esp32/machine_rtc.c); rp2's RTC has datetime() alone
    assert rp2["rtc_memory"][0] == rp2["rtc_memory_2049"][0] == "AttributeError", rp2
    assert esp32["rtc_memory"] == ["ok", None] and esp32["rtc_memory_2049"] == ["ValueError", "buffer too long"]
    # ADC on a pin without a channel: ports/rp2/machine_adc.c, ports/esp32/machine_adc.c
    assert rp2["adc_off_pin"] == ["ValueError", "Pin doesn't have ADC capabilities"], rp2
    assert esp32["adc_off_pin"] == ["ValueError", "invalid pin"], esp32
    assert rp2["adc_pin"] == esp32["adc_pin"] == ["ok", None]
    # rp2 buses reach fixed pins (machine_i2c.c IS_VALID_SCL, machine_uart.c IS_VALID_TX); esp32's any
    assert rp2["i2c_swapped"] == ["ValueError", "bad SCL pin"], rp2
    assert rp2["uart_wrong_bus"] == ["ValueError", "bad TX pin"], rp2
    assert esp32["i2c_swapped"] == esp32["uart_wrong_bus"] == ["ok", None], esp32
    assert esp32["uart_tx_on_35"] == ["OSError", "[Errno 1] EPERM: ESP_FAIL"], esp32  # uart_set_pin: input only


WDT_IN_LIGHTSLEEP = '''
    if machine.reset_cause() == machine.WDT_RESET:
        print(json.dumps({"ev": "wdt_fired"}))
        return None
    wdt = machine.WDT(timeout=2000)
    check("slept", lambda: machine.lightsleep(5000))  # 5 s asleep with a 2 s watchdog unfed
    print(json.dumps({"ev": "checks", "out": out}))
    time.sleep_ms(3000)  # awake: it counts, and fires
'''


def test_esp32_watchdog_does_not_count_in_lightsleep(tmp_path):
    # machine.WDT is ESP-IDF's task watchdog on timer group 0's MWDT (ports/esp32/machine_wdt.c
    # v1.22.0-v1.28.0), clock-gated in light sleep (ESP-IDF Sleep Modes): it sleeps through a
    # lightsleep longer than its timeout, then fires once the board stays awake too long.
    out, events = _checks(tmp_path, "esp32", WDT_IN_LIGHTSLEEP)
    assert out["slept"] == ["ok", None], out
    assert [e for e in events if e.get("ev") == "wdt_fired"], events


WAKE_SOURCES = '''
    import esp32
    rain = Pin(RAIN, Pin.IN, Pin.PULL_UP)
    check("gpio_api", lambda: hasattr(esp32, "wake_on_gpio"))
    check("ext1_int", lambda: esp32.wake_on_ext1([RAIN], esp32.WAKEUP_ALL_LOW))
    check("ext1_str", lambda: esp32.wake_on_ext1(["rain"], esp32.WAKEUP_ALL_LOW))
    esp32.wake_on_ext1([])
    esp32.wake_on_ext0(rain, 0)
    check("touch_with_ext0", lambda: esp32.wake_on_touch(True))
    check("ulp_with_ext0", lambda: esp32.wake_on_ulp(True))
    esp32.wake_on_ext0(None)
    check("touch", lambda: esp32.wake_on_touch(True))
    check("ext0_with_touch", lambda: esp32.wake_on_ext0(rain, 0))
    check("irq_wake_with_touch", lambda: rain.irq(trigger=Pin.WAKE_LOW, wake=machine.SLEEP) and None)
    if hasattr(esp32, "wake_on_gpio"):
        check("gpio_with_touch", lambda: esp32.wake_on_gpio([OFF_RTC], False))
        esp32.wake_on_touch(False)
        esp32.wake_on_gpio([Pin(OFF_RTC, Pin.IN, Pin.PULL_UP), rain], False)
        check("touch_with_gpio", lambda: esp32.wake_on_touch(True))

        def nap():
            time.sleep_ms(300)  # the reed of the last tip open again: the source is a level
            start = time.ticks_ms()
            machine.lightsleep(15000)
            return [machine.wake_reason(), time.ticks_diff(time.ticks_ms(), start) < 14000]
        check("gpio_light", nap)
        check("gpio_deep", lambda: machine.deepsleep(1000))
'''


@pytest.mark.parametrize("board, release", (("esp32", "1.26.0"), ("esp32s3", "1.27.0")))
def test_esp32_touch_ulp_and_gpio_wake_sources_as_each_release_has_them(board, release, tmp_path):
    # ports/esp32/modesp32.c: ext0/ext1 take a Pin or a GPIO number (machine_pin_find); touch and ULP
    # wake refuse ext0 ("no resources"), and from v1.27.0 wake_on_gpio too, which arms any GPIO for
    # light sleep only (modmachine.c: deep sleep with GPIO pins is a ValueError on ESP32/ESP32-S3).
    pins = {"esp32": (27, 5), "esp32s3": (11, 40)}[board]
    scenario = {"duration_s": 60, "world": {"battery_v": 4.0}, "rain": [{"from_s": 0, "to_s": 60, "every_s": 10.0}]}
    body = "    RAIN, OFF_RTC = %d, %d\n" % pins + WAKE_SOURCES
    out, _ = _checks(tmp_path, board, body, scenario, release)
    gpio = release >= "1.27.0"
    assert out["gpio_api"] == ["ok", gpio], out
    assert out["ext1_int"] == ["ok", None], out
    assert out["ext1_str"] == ["ValueError", "invalid pin"], out
    for name in ("touch_with_ext0", "ulp_with_ext0", "ext0_with_touch", "irq_wake_with_touch"):
        assert out[name] == ["ValueError", "no resources"], (name, out)
    assert out["touch"] == ["ok", None], out
    if gpio:
        assert out["gpio_with_touch"] == ["ValueError", "no resources"], out
        assert out["touch_with_gpio"] == ["ValueError", "no resources"], out
        assert out["gpio_light"] == ["ok", [7, True]], out  # ESP_SLEEP_WAKEUP_GPIO at the tip
        assert out["gpio_deep"] == ["ValueError", "DEEPSLEEP with gpio pins not supported on this chip"], out


PCNT = '''
    import esp32
    check("api", lambda: hasattr(esp32, "PCNT"))
    if not hasattr(esp32, "PCNT"):
        print(json.dumps({"ev": "checks", "out": out}))
        return None
    PCNT = esp32.PCNT
    rain = Pin(RAIN, Pin.IN, Pin.PULL_UP)
    check("filter_1024", lambda: PCNT(0, pin=rain, falling=PCNT.INCREMENT, filter=1024) and None)
    check("unit_4", lambda: PCNT(4) and None)
    check("unit_8", lambda: PCNT(8) and None)
    check("channel_2", lambda: PCNT(0, channel=2) and None)
    check("rising_3", lambda: PCNT(0, pin=rain, rising=3) and None)
    check("mode_pin_alone", lambda: PCNT(0, mode_pin=rain) and None)
    check("max", lambda: PCNT(0, max=32768) and None)
    check("keyword", lambda: PCNT(0, edge=1) and None)
    check("irq", lambda: PCNT(0).irq(lambda p: None) and None)
    counter = PCNT(0, pin=rain, falling=PCNT.INCREMENT, filter=1023)  # the widest filter: 12.79 us
    check("before_start", lambda: [time.sleep_ms(12000), counter.value()][1])
    counter.start()
    check("awake", lambda: [time.sleep_ms(20000), counter.value(0)][1])  # tips at 20 and 30 s
    check("asleep", lambda: [machine.lightsleep(20000), counter.value()][1])  # tips at 40 and 50 s
'''


@pytest.mark.parametrize("board, release", (("esp32", "1.25.0"), ("esp32", "1.26.0"), ("esp32s3", "1.28.0")))
def test_esp32_pcnt_from_1_26_counts_reed_bounce_and_nothing_in_lightsleep(board, release, tmp_path):
    # ports/esp32/esp32_pcnt.c, first in v1.26.0: keyword rules and their ValueErrors, units per chip
    # (ESP32 8, ESP32-S3 4). Its glitch filter reaches 1023 APB cycles (12.79 us), the reed's release
    # bounce lasts 1 ms a pulse (firmware/sim/devices/rain.py): every tip counts 4 falling edges (its
    # closure and 3 bounces). Clock-gated in light sleep (ESP-IDF Sleep Modes), it counts no tip there.
    # So the firmware does not count tips with it (firmware/README.md, "esp32.PCNT").
    scenario = {"duration_s": 80, "world": {"battery_v": 4.0}, "rain": [{"from_s": 0, "to_s": 55, "every_s": 10.0}]}
    body = "    RAIN = %d\n" % {"esp32": 27, "esp32s3": 11}[board] + PCNT
    out, events = _checks(tmp_path, board, body, scenario, release)
    if release < "1.26.0":
        assert out == {"api": ["ok", False]}, out
        return
    assert out["filter_1024"] == ["ValueError", "filter"], out
    assert out["unit_4"] == (["ok", None] if board == "esp32" else ["ValueError", "invalid id"]), out
    assert out["unit_8"] == ["ValueError", "invalid id"], out
    assert out["channel_2"] == ["ValueError", "channel"], out
    assert out["rising_3"] == ["ValueError", "rising"], out
    assert out["mode_pin_alone"] == ["ValueError", "pin"], out
    assert out["max"] == ["ValueError", "maximum"], out
    assert out["keyword"] == ["TypeError", "extra keyword arguments given"], out
    assert out["irq"][0] == "NotImplementedError", out
    assert out["before_start"] == ["ok", 0], out  # PCNT(id) leaves the unit paused until start()
    assert out["awake"] == ["ok", 8], out  # 2 tips, 4 falling edges each: the bounce is counted
    assert out["asleep"] == ["ok", 0], out
    assert len([e for e in events if e.get("ev") == "tip"]) == 5, events


SOCKET_TIMEOUTS = """
wlan = network.WLAN(network.STA_IF)
wlan.active(True)
wlan.connect("site", "secret")
step(2000)
s = socket.socket()
s.connect(socket.getaddrinfo("127.0.0.1", %d)[0][-1])
s.settimeout(0.2)
out["timed"] = attempt(lambda: s.recv(10))
s.setblocking(False)
out["nonblocking"] = attempt(lambda: s.recv(10))
s.settimeout(0)
out["timeout_0"] = attempt(lambda: s.recv(10))
s.close()
"""


@pytest.mark.parametrize("port", ("rp2", "esp32"))
def test_socket_timeout_is_etimedout_and_nonblocking_eagain_as_on_both_ports(port):
    # extmod/modlwip.c (rp2) and ports/esp32/modsocket.c (v1.22.0-v1.28.0): a recv that outlasts
    # settimeout(t > 0) raises OSError(ETIMEDOUT 110); without a timeout, EAGAIN 11. The unix port
    # under the simulator says 11 for both: a firmware that knew only 11 passed here and not there.
    import socket as pysocket
    server = pysocket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    try:
        out = model(port, SOCKET_TIMEOUTS % server.getsockname()[1])
    finally:
        server.close()
    assert out == {"timed": "OSError:110", "nonblocking": "OSError:11", "timeout_0": "OSError:11"}, out


RESET_CAUSE = """
    if machine.reset_cause() == machine.PWRON_RESET:
        machine.reset()
    check("cause", machine.reset_cause)
"""


@pytest.mark.parametrize("board, cause", (("pico", 3), ("esp32", 2)))
def test_reset_cause_after_machine_reset_is_the_ports(board, cause, tmp_path):
    # rp2: machine.reset() is pico-sdk's watchdog_reboot(), and reset_cause() says WDT_RESET (3) for
    # any reboot the watchdog's reason bits record (ports/rp2/modmachine.c); esp32: HARD_RESET (2).
    out, _ = _checks(tmp_path, board, RESET_CAUSE)
    assert out == {"cause": ["ok", cause]}, out
