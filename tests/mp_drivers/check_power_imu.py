"""An MPU6050 on a power group (firmware/power.py), under micropython: a settle time shorter
than its datasheet's start-up time gets no ACK; the datasheet's gets readings, every time."""
import harness  # noqa: F401 - installs the simulated machine first
from harness import board, check, fresh, run

from firmware import sensors
from firmware.drivers import Q_NO_RETURN, Q_OK
from firmware.power import Group
from firmware.sim.devices import wire

_PIN = 12  # free on the check's board (harness.Board.PINS)
IMU = {"type": "accel_mpu6050", "name": "imu", "interval_s": 60, "window": 8, "power": "imu"}


def _site(settle_ms):
    fresh({"vibration_rms_ms2": 0.5})
    models = wire(board, {"power": {"imu": {"pin": _PIN, "settle_ms": settle_ms}}, "sensors": [IMU]})
    return sensors.make(board, IMU, Group(_PIN, 1, settle_ms)), models["imu"]


def a_settle_shorter_than_the_datasheet_gets_no_ack():
    sensor, model = _site(10)
    readings = sensor.read()
    check(all(r[3] == Q_NO_RETURN for r in readings), "MPU6050 10 ms after power-up: no ACK, %r" % (readings,))
    sensor, model = _site(110)
    for _ in range(2):
        readings = sensor.read()
        check(all(r[3] == Q_OK for r in readings), "MPU6050 110 ms after power-up: %r" % (readings,))
        check(not model.rail.powered, "off between reads")


run((
    (a_settle_shorter_than_the_datasheet_gets_no_ack, ()),
))
