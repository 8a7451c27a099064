"""Rain gauge and battery drivers on the simulated board, under micropython."""
import gc
import time

import harness  # noqa: F401 - installs the simulated machine first
from harness import board, check, fresh, near, run

import micropython

from firmware import sensors
from firmware.drivers import Q_OK
from firmware.sim import bus, io
from firmware.sim.devices import wire

RAIN = {"type": "rain_gauge", "name": "rain0", "index": 0, "interval_s": 60, "pin": "rain",
        "mm_per_tip": 0.2, "debounce_ms": 0}


def rain_counts_every_tip_without_allocating():
    fresh()
    models = wire(board, {"sensors": [RAIN]})
    sensor = sensors.make(board, RAIN)
    gauge = models["rain0"]
    gc.collect()
    micropython.heap_lock()
    try:
        for _ in range(1000):
            io.fire(board.PINS["rain"], 0)
            io.fire(board.PINS["rain"], 1)
        failed = None
    except MemoryError as exc:
        failed = exc
    finally:
        micropython.heap_unlock()
    check(failed is None, "the IRQ handler allocated: %r" % (failed,))
    check(sensor.pending() == 1000, "1000 edges counted: %d" % sensor.pending())
    readings = sensor.read()
    check(readings == [(2, 0, 1000, Q_OK), (1, 0, 2000, Q_OK)], "read %r" % (readings,))
    check(sensor.pending() == 0, "taken")
    gauge.tip(3)
    sensor.restore(5)
    check(sensor.read()[0][2] == 8, "restored tips join the next read")


def rain_debounces_a_bouncing_reed():
    fresh()
    cfg = dict(RAIN, debounce_ms=20)
    models = wire(board, {"sensors": [cfg]})
    models["rain0"].bounces = 3
    sensor = sensors.make(board, cfg)
    for _ in range(4):
        models["rain0"].tip()
        time.sleep_ms(200)  # a bucket tips at most every ~0.2 s: its reed closes for up to 150 ms
    check(sensor.take() == 4, "closure and release bounce are one tip")


def rain_keeps_tips_arriving_while_irqs_are_off():
    fresh()
    models = wire(board, {"sensors": [RAIN]})
    sensor = sensors.make(board, RAIN)
    state = io.disable_irq()
    models["rain0"].tip(2)
    check(sensor.pending() == 0, "held while disabled")
    io.enable_irq(state)
    check(sensor.pending() == 2, "delivered after enable")


def rain_counts_once_a_release_bounce_handled_after_a_flash_step():
    """An rp2 erases a flash sector with interrupts off (ports/rp2/rp2_flash.c; 45 ms typical,
    400 ms at most): a release bounce in the erase is handled when it ends, a 150 ms closure
    plus the erase after the tip, past the 170 ms hold, and the reed reads open by then."""
    fresh()
    cfg = dict(RAIN, debounce_ms=20)
    wire(board, {"sensors": [cfg]})
    sensor = sensors.make(board, cfg)
    pin = board.PINS["rain"]
    for _ in range(3):
        io.fire(pin, 0)  # the tip: the reed closes, handled at once
        time.sleep_ms(150)
        state = io.disable_irq()  # an erase starts as the reed lets go
        for level in (1, 0, 1, 0, 1):
            io.fire(pin, level)
            time.sleep_ms(1)
        time.sleep_ms(45)
        io.enable_irq(state)  # the held bounce's handler runs now
        time.sleep_ms(400)
    check(sensor.take() == 3, "a bounce handled after a flash step is no second tip")


def rain_counts_a_tip_whose_closure_fell_whole_in_a_long_erase():
    """A sector erase takes up to 400 ms (W25Q16JV tSE max): a tip's closure (50-150 ms) and
    release can both fall inside it, and the one IRQ run as the erase ends finds the reed open.
    It is a tip when the reed was seen open since the last one: the main loop's pass before the
    erase looked (took_fresh), though the loop last slept on a shut bounce (settle_ms saw it
    shut) and the reed settled open while the board slept (no IRQ on a rising edge)."""
    fresh()
    cfg = dict(RAIN, debounce_ms=20)
    wire(board, {"sensors": [cfg]})
    sensor = sensors.make(board, cfg)
    pin = board.PINS["rain"]

    def tip_and_release(closure_ms):
        io.fire(pin, 0)
        time.sleep_ms(closure_ms)
        for level in (1, 0, 1, 0):
            io.fire(pin, level)
            time.sleep_ms(1)

    for _ in range(3):
        tip_and_release(60)  # handled as it comes, its last shut bounce too
        sensor.driver.settle_ms()  # the loop goes to sleep with the reed shut
        io.fire(pin, 1)  # and it settles open meanwhile
        time.sleep_ms(700)
        sensor.driver.took_fresh()  # the next wake's pass, then a report's commit
        state = io.disable_irq()  # a 400 ms erase
        time.sleep_ms(100)
        tip_and_release(53)
        io.fire(pin, 1)
        time.sleep_ms(243)
        io.enable_irq(state)  # the held edges' handler runs now: the reed is open
        time.sleep_ms(300)
    check(sensor.take() == 6, "a tip held whole through a long erase is counted")


def rain_residue_sums_exactly():
    fresh()
    cfg = dict(RAIN, mm_per_tip=0.254)
    models = wire(board, {"sensors": [cfg]})
    sensor = sensors.make(board, cfg)
    total = 0
    for n in (1, 3, 0, 7, 2, 1, 9):
        models["rain0"].tip(n)
        total += sensor.read()[1][2]
    check(total == int(23 * 2.54), "0.254 mm tips sum to %d tenths, got %d" % (int(23 * 2.54), total))


def dead_gauge_counts_nothing():
    fresh()
    models = wire(board, {"sensors": [RAIN]})
    sensor = sensors.make(board, RAIN)
    bus.faults.add("rain0")
    models["rain0"].tip(5)
    check(sensor.read()[0][2] == 0, "a dead gauge gives no tips")


BATTERY = {"type": "battery", "name": "bat", "interval_s": 300, "ratio": 2.0}


def battery_reads_the_divided_voltage():
    fresh({"battery_v": 3.912})
    wire(board, {"sensors": [BATTERY]})
    sensor = sensors.make(board, BATTERY)
    for _ in range(6):
        code, index, value, quality = sensor.read()[0]
        check(code == 19 and quality == Q_OK, "battery reading %r" % ((code, index, value, quality),))
        near(value, 3912, 10, "battery mV")


def battery_dead_divider_is_flagged():
    fresh({"battery_v": 3.9})
    wire(board, {"sensors": [BATTERY]})
    sensor = sensors.make(board, BATTERY)
    bus.faults.add("bat")
    code, index, value, quality = sensor.read()[0]
    check(quality != Q_OK, "a dead divider is flagged, got %r" % quality)


run((
    (rain_counts_every_tip_without_allocating, ()),
    (rain_debounces_a_bouncing_reed, ()),
    (rain_keeps_tips_arriving_while_irqs_are_off, ()),
    (rain_counts_once_a_release_bounce_handled_after_a_flash_step, ()),
    (rain_counts_a_tip_whose_closure_fell_whole_in_a_long_erase, ()),
    (rain_residue_sums_exactly, ()),
    (dead_gauge_counts_nothing, ()),
    (battery_reads_the_divided_voltage, ()),
    (battery_dead_divider_is_flagged, ()),
))
