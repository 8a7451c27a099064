"""HX711 24-bit bridge ADC, bit-banged, for load cells and strain gauges.

DOUT low means a conversion is ready. The chip converts at 10 or 80 samples/s
(its RATE pin) and its output settles 4 periods after power-up (datasheet
rev. 2.0, "Output settling time": 400 ms at 10 SPS): DOUT is polled in
tenths of a period, sleeping between polls, for at most 5 periods. Each of the 24 bits is clocked out MSB first on
a rising SCK; 1, 2 or 3 more pulses choose the next conversion's channel
and gain (A/128, B/32, A/64). SCK held high over 60 us powers the chip down,
so the pulses run with IRQs off. value = (raw - tare) / scale.
"""
import machine
import time
from micropython import const

from firmware.drivers import Q_NO_RETURN, Q_OK, Q_OUT_OF_RANGE, Q_STUCK, scaled

_LOAD = const(22)  # protocol/channels.py "load", kg, exponent -2
_STRAIN = const(18)  # protocol/channels.py "strain", 1, exponent -6 (value in microstrain)
_READY_PERIODS = const(5)  # settling (4 periods) and one conversion
_POLLS_PER_PERIOD = const(10)
_FULL = const(0x7FFFFF)  # saturated positive; 0x800000 is saturated negative
_STUCK_N = const(5)


class HX711:
    def __init__(self, sck, dt, index, scale, tare=0, output=None, samples=4, gain=128, sps=10):
        self.sck = sck
        self.dt = dt
        self.index = index
        self.scale = scale
        self.tare = tare
        self.code = _STRAIN if output == "strain" else _LOAD
        self.CHANNELS = (self.code,)
        self.samples = samples
        self._pulses = {128: 1, 32: 2, 64: 3}[gain]
        self._poll_ms = max(1, 1000 // sps // _POLLS_PER_PERIOD)
        self._polls = _READY_PERIODS * 1000 // sps // self._poll_ms + 1
        self._last = None
        self._same = 0
        sck.value(0)

    def raw(self):
        """One signed 24-bit conversion, or None when DOUT never went low."""
        for _ in range(self._polls):
            if not self.dt.value():
                break
            time.sleep_ms(self._poll_ms)
        else:
            return None
        sck = self.sck
        dt = self.dt
        value = 0
        state = machine.disable_irq()
        for _ in range(24):
            sck.value(1)
            sck.value(0)
            value = value << 1 | dt.value()
        for _ in range(self._pulses):
            sck.value(1)
            sck.value(0)
        machine.enable_irq(state)
        return value - 0x1000000 if value & 0x800000 else value

    def read(self):
        total = 0
        saturated = False
        for _ in range(self.samples):
            raw = self.raw()
            if raw is None:
                return [(self.code, self.index, 0, Q_NO_RETURN)]
            saturated = saturated or raw >= _FULL or raw <= -_FULL - 1
            total += raw
        if total == self._last:
            self._same += 1
        else:
            self._same = 1
            self._last = total
        mean = total / self.samples
        value = (mean - self.tare) / self.scale
        quality = Q_OUT_OF_RANGE if saturated else (Q_STUCK if self._same >= _STUCK_N else Q_OK)
        return [(self.code, self.index, scaled(value * (1e-6 if self.code == _STRAIN else 1.0),
                                               -6 if self.code == _STRAIN else -2), quality)]
