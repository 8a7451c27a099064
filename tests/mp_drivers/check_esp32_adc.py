"""Analog drivers on an ESP32's ADC, under micropython: its read_u16() is the raw, offset and bent
code (firmware/sim/adc.py), so the drivers read volts with read_uv(). Each finding is checked both
ways: through the drivers as the firmware builds them (right), and through read_u16() scaled by
the board's 3.6 V full scale as the drivers did before (wrong), so the model shows the defect."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import Board, board, check, near, one, run, setup

from firmware.drivers import Q_NO_RETURN, Q_OK, Q_OUT_OF_RANGE
from firmware.drivers.battery import Battery
from firmware.drivers.loop_4_20ma import Loop420
from firmware.sim import bus



class Esp32Board(Board):
    """The harness's pins on an ESP32: its ADC reads as ports/esp32 does (firmware/sim/adc.py)."""
    NAME = "esp32"
    ADC_VREF = 3.6
    ADC_ATTEN = "ATTN_11DB"


esp32 = Esp32Board()
_LOOP = {"type": "pressure_level_ma", "name": "loop", "interval_s": 60, "range_m": 5.0}
_BATTERY = {"type": "battery", "name": "batt", "interval_s": 60}


def loop_flood_end_reads_right_on_esp32():
    # 20 mA (the top of a 5 m range: the flood) is 3.0 V across 150 ohm, above the linear 2.45 V.
    sensor, model = setup(_LOOP, {"water_level_m": 5.0}, esp32)
    code, index, value, q = one(sensor)
    check(q == Q_OK, "flood end ok on esp32, got quality %r" % q)
    near(value, 5000, 15, "flood end level mm on esp32")
    raw_path = Loop420(_adc(), 3.6, 0, 5.0)
    ma = raw_path.milliamps()
    check(ma > 20.5, "read_u16 at 3.6 V full scale puts 20 mA at %.2f mA (beyond NAMUR's 20.5)" % ma)
    check(raw_path.read()[0][3] == Q_OUT_OF_RANGE, "read_u16: the flood is flagged a fault")


def loop_empty_end_reads_right_on_esp32():
    # 4 mA (an empty channel) is 0.6 V: the raw code's 0.14 V offset made it look like a broken loop.
    sensor, model = setup(_LOOP, {"water_level_m": 0.0}, esp32)
    code, index, value, q = one(sensor)
    check(q == Q_OK, "empty end ok on esp32, got quality %r" % q)
    near(value, 0, 15, "empty end level mm on esp32")
    check(Loop420(_adc(), 3.6, 0, 5.0).read()[0][3] == Q_NO_RETURN,
          "read_u16: 4 mA reads under 3.5 mA, a broken loop")


def battery_reads_right_on_esp32(vref_mv):
    # A chip whose ADC reference is 1000 mV (esp-idf: 1000-1200 mV between chips) at 3.3 V of battery.
    sensor, model = setup(_BATTERY, {"battery_v": 3.3, "esp32_adc_vref_mv": vref_mv}, esp32)
    code, index, value, q = one(sensor)
    check(q == Q_OK, "battery ok on esp32")
    near(value, 3300, 15, "battery mV on esp32 with a %d mV reference" % vref_mv)
    volts = Battery(_adc("battery"), 3.6).volts()
    if vref_mv == 1000:
        check(volts > 3.5, "read_u16 reads %.3f V for 3.3 V: high, low battery never flagged" % volts)


def esp32_clips_and_flags():
    sensor, model = setup(_LOOP, {"water_level_m": 6.0}, esp32)  # 22 mA: 3.3 V, past raw 4095
    check(one(sensor)[3] == Q_OUT_OF_RANGE, "a clipped input is flagged")


def rp2_has_no_read_uv():
    setup(_BATTERY, {"battery_v": 3.3})
    adc = _adc("battery", board)
    try:
        adc.read_uv()
        check(False, "rp2's ADC has no read_uv (ports/rp2/machine_adc.c)")
    except AttributeError:
        check(True, "")
    near(adc.read_u16(), 3.3 / 2 / 3.3 * 65535, 200, "rp2 read_u16 is linear to 3.3 V")


def _adc(role="adc0", on=esp32):
    import machine
    adc = machine.ADC(machine.Pin(on.PINS[role]))
    if on is esp32:
        adc.atten(machine.ADC.ATTN_11DB)
    return adc


run((
    (loop_flood_end_reads_right_on_esp32, ()),
    (loop_empty_end_reads_right_on_esp32, ()),
    (battery_reads_right_on_esp32, (1000,)),
    (battery_reads_right_on_esp32, (1100,)),
    (battery_reads_right_on_esp32, (1200,)),
    (esp32_clips_and_flags, ()),
    (rp2_has_no_read_uv, ()),
))
