"""The converting drivers (DS18B20, MS5837; the HX711 is in check_motion.py) on the board's clock, under micropython: a read
costs at least the datasheet's conversion and settling times (charged by firmware/sim/devices) and
at most firmware/read_times.py's budget, live or dead; a read too soon gets no new data."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import check, near, one, run, setup
from timing import read_takes_the_datasheet_time_and_fits_its_budget

from firmware.sim import bus

DS18B20 = {"type": "ds18b20", "name": "t", "interval_s": 60}
MS5837 = {"type": "pressure_level_i2c", "name": "t", "interval_s": 60}


def ds18b20_holds_dq_low_and_the_old_value_while_converting():
    sensor, model = setup(DS18B20, {"water_temp_c": 14.5})
    near(one(sensor)[2], 1450, 1, "ds18b20 converted")
    bus.world["water_temp_c"] = 30.0
    driver = sensor.driver
    driver._select()
    driver.ow.writebyte(0x44)  # Convert T, then read at once, as a driver without the wait would
    check(driver.ow.readbit() == 0, "the DS18B20 holds DQ low while it converts")
    check(driver._scratchpad() == int(14.5 * 16), "a read too soon gives the last conversion")


def ms5837_read_too_soon_is_zero():
    sensor, model = setup(MS5837, {"water_level_m": 1.0})
    near(one(sensor)[2], 1000, 4, "ms5837 level")
    driver = sensor.driver
    driver._command(0x4A)  # D1 at OSR 8192 and no wait: the ADC read answers 0 (datasheet)
    driver.i2c.readfrom_mem_into(driver.addr, 0x00, driver._adc)
    check(bytes(driver._adc) == bytes(3), "ms5837 ADC read during a conversion is 0")


run((
    # MS5837 D1 and D2 at OSR 8192
    (read_takes_the_datasheet_time_and_fits_its_budget, (MS5837, {"water_level_m": 1.0}, 2 * 18.08)),
    (ms5837_read_too_soon_is_zero, ()),
    # DS18B20 tCONV at 12 bits
    (read_takes_the_datasheet_time_and_fits_its_budget, (DS18B20, {"water_temp_c": 14.5}, 750)),
    (ds18b20_holds_dq_low_and_the_old_value_while_converting, ()),
))
