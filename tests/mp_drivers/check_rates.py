"""The sampling drivers (JSN-SR04T pings, ADXL345 and MPU6050 windows) on the board's clock, under
micropython: a read costs at least the datasheet's ping cycle and echo times or output data rate
over the window, and at most firmware/read_times.py's budget, live or dead; a ping inside the
cycle gets no echo, and reads faster than the data rate repeat a sample."""

import harness  # noqa: F401 - installs the simulated machine first
from harness import check, run, setup
from timing import read_takes_the_datasheet_time_and_fits_its_budget

SONAR = {"type": "ultrasonic_level", "name": "t", "interval_s": 60, "mount_height_m": 5.0, "pings": 5}
ADXL345 = {"type": "accel_adxl345", "name": "t", "interval_s": 60, "window": 32}
MPU6050 = {"type": "accel_mpu6050", "name": "t", "interval_s": 60, "window": 32}


def accel_reads_faster_than_its_rate_repeat():
    sensor, model = setup(ADXL345, {"vibration_rms_ms2": 0.8})
    sensor.read()
    driver = sensor.driver
    a = driver.i2c.readfrom_mem(driver.addr, 0x32, 6)
    b = driver.i2c.readfrom_mem(driver.addr, 0x32, 6)
    check(a == b, "two reads within one 10 ms output period give the same sample")


def sonar_pings_inside_the_cycle_get_no_echo():
    sensor, model = setup(SONAR, {"water_level_m": 1.0})
    first = sensor.driver.ping_us()
    second = sensor.driver.ping_us()  # at once: inside the JSN-SR04T's 50 ms measuring cycle
    check(first > 0 and second < 0, "a ping inside the cycle is ignored: %r %r" % (first, second))


run((
    # JSN-SR04T: 50 ms cycle between 5 pings, and 5 echoes of 23 ms (4 m of air, round trip)
    (read_takes_the_datasheet_time_and_fits_its_budget, (SONAR, {"water_level_m": 1.0}, 4 * 50 + 5 * 23)),
    # 32 samples at the 100 Hz output data rate: 31 periods between the first and the last
    (read_takes_the_datasheet_time_and_fits_its_budget, (ADXL345, {"tilt_x_deg": 1.0}, 310)),
    (read_takes_the_datasheet_time_and_fits_its_budget, (MPU6050, {"tilt_x_deg": 1.0}, 310)),
    (accel_reads_faster_than_its_rate_repeat, ()),
    (sonar_pings_inside_the_cycle_get_no_echo, ()),
))
