"""What every driver shares: reading quality codes, calibration curves, ADC bursts.

A driver's read() returns readings as (channel_code, index, value_int,
quality): value_int is scaled by the channel's decimal exponent
(protocol/channels.py) and quality is a protocol.frame Q_* code. The codes
are repeated here so a driver costs no import of protocol/;
tests/test_drivers_math.py checks they agree.
"""
# Plain names, not const(): other modules import them, which const() would not
# save anything for, and CPython runs this module's pure math in unit tests.
Q_OK = 0
Q_NO_RETURN = 1
Q_OUT_OF_RANGE = 2
Q_STUCK = 3
Q_NOISY = 4


def scaled(value, exponent):
    """The integer sent for a physical value at a channel's decimal exponent, half away from zero."""
    x = value * 10.0 ** -exponent
    return int(x + 0.5) if x >= 0 else -int(-x + 0.5)


def curve(points, default):
    """Calibration points as sorted (x, y) pairs ready for `interp`.

    Two or three points from the config are used as given (piecewise
    linear). One point keeps the default curve's slope and moves it through
    that point: a single-buffer offset calibration. No point: the default.
    Raises ValueError for points that share an x (the curve would be vertical).
    """
    if not points:
        pts = [(float(x), float(y)) for x, y in default]
    elif len(points) == 1:
        x0, y0 = float(points[0][0]), float(points[0][1])
        base = curve(None, default)
        shift = y0 - interp(base, x0)
        pts = [(x, y + shift) for x, y in base]
    else:
        pts = [(float(x), float(y)) for x, y in points]
    pts.sort()
    for i in range(1, len(pts)):
        if pts[i][0] == pts[i - 1][0]:
            raise ValueError("calibration points share x=%r" % (pts[i][0],))
    return pts


def interp(pts, x):
    """Piecewise-linear value at x through sorted pts; the end segments extrapolate."""
    if len(pts) == 1:
        return pts[0][1]
    i = 1
    while i < len(pts) - 1 and x > pts[i][0]:
        i += 1
    x0, y0 = pts[i - 1]
    x1, y1 = pts[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


class Burst:
    """N ADC samples into a buffer made once, and the checks made on them.

    `vref` is the volts at read_u16()'s full scale (an RP2040's 3.3 V rail), or
    None for an ADC whose port has a calibrated read_uv() (ESP32: its raw code
    is offset, chip-dependent and bent above ~2.45 V, so read_u16() is not volts).
    `take()` returns the mean in volts and sets `spread` (max - min, in the
    samples' units: volts / `volts_per_unit`) and `railed` (a sample at a rail:
    an open or shorted input). `stuck()` is True when the last `stuck_n`
    bursts were identical sample for sample: a live input always shows noise.
    """

    def __init__(self, adc, vref, n=8, stuck_n=5):
        if vref is None:
            # An ESP32's read_uv() (ports/esp32/machine_adc.c, v1.22-v1.28) never reads 0 or full
            # scale: 0 V reads the calibration's offset (142 mV at 11 dB) and raw 4095 reads
            # 3.06-3.21 V by the chip's reference (esp-idf adc_cali_line_fitting.c): the rails.
            self._read = adc.read_uv
            self.volts_per_unit = 1e-6
            self._lo = 150000
            self._hi = 3050000
        else:
            self._read = adc.read_u16
            self.volts_per_unit = vref / 65535
            self._lo = 0
            self._hi = 65535
        self.samples = [0] * n
        self.spread = 0
        self.railed = False
        self._last = -1
        self._same = 0
        self._stuck_n = stuck_n

    def take(self):
        total = 0
        lo = self._hi
        hi = self._lo
        samples = self.samples
        read = self._read
        for i in range(len(samples)):
            raw = read()
            samples[i] = raw
            total += raw
            if raw < lo:
                lo = raw
            if raw > hi:
                hi = raw
        self.spread = hi - lo
        self.railed = lo <= self._lo or hi >= self._hi
        if total == self._last:
            self._same += 1
        else:
            self._same = 1
            self._last = total
        return total / len(samples) * self.volts_per_unit

    def stuck(self):
        return self._same >= self._stuck_n


def analog_quality(burst, noise_raw):
    """The quality of the burst just taken: rail, stuck or noisy (a spread over
    noise_raw, in the burst's units), else ok."""
    if burst.railed:
        return Q_OUT_OF_RANGE
    if burst.stuck():
        return Q_STUCK
    if burst.spread > noise_raw:
        return Q_NOISY
    return Q_OK


def motion(samples, n, ms2_per_lsb):
    """Tilt and vibration from n accelerometer samples stored x, y, z in `samples`.

    Tilt x/y (degrees) come from the mean, i.e. gravity; vibration is what is
    left once the mean is removed: the RMS and the peak of its magnitude, in
    m/s2. `still` is True when every sample was identical, which a live
    sensor's noise never allows (a stuck register or a frozen bus).
    """
    import math

    sx = sy = sz = 0
    for i in range(0, 3 * n, 3):
        sx += samples[i]
        sy += samples[i + 1]
        sz += samples[i + 2]
    mx = sx / n
    my = sy / n
    mz = sz / n
    total = 0.0
    peak = 0.0
    still = True
    for i in range(0, 3 * n, 3):
        dx = samples[i] - mx
        dy = samples[i + 1] - my
        dz = samples[i + 2] - mz
        d2 = dx * dx + dy * dy + dz * dz
        total += d2
        if d2 > peak:
            peak = d2
        if samples[i] != samples[0] or samples[i + 1] != samples[1] or samples[i + 2] != samples[2]:
            still = False
    tilt_x = math.degrees(math.atan2(mx, math.sqrt(my * my + mz * mz)))
    tilt_y = math.degrees(math.atan2(my, math.sqrt(mx * mx + mz * mz)))
    return tilt_x, tilt_y, math.sqrt(total / n) * ms2_per_lsb, math.sqrt(peak) * ms2_per_lsb, still


def motion_readings(index, samples, n, ms2_per_lsb):
    """The four accelerometer readings (tilt x/y, vibration RMS/peak) of a full window."""
    tilt_x, tilt_y, rms, peak, still = motion(samples, n, ms2_per_lsb)
    q = Q_STUCK if still else Q_OK
    return [(12, index, scaled(tilt_x, -2), q), (13, index, scaled(tilt_y, -2), q),
            (16, index, scaled(rms, -3), q), (17, index, scaled(peak, -3), q)]


# The accelerometers' channels: tilt_x, tilt_y (deg, -2), vibration_rms, vibration_peak (m/s2, -3).
MOTION_CHANNELS = (12, 13, 16, 17)


def motion_failed(index):
    return [(code, index, 0, Q_NO_RETURN) for code in MOTION_CHANNELS]
