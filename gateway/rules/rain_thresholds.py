"""Rainfall intensity-duration thresholds for debris flows, the curves that
decide a huaico warning where a plain accumulation rule would be too late or
too eager.

A debris flow starts when rain of mean intensity I (mm/h) has lasted D hours
with I >= alpha * D ** -beta: short bursts must be intense, long rains need
less. The curve is checked for every duration D in a configured set (10 min
to 24 h, say), and the rule's value is the largest ratio of the observed
mean intensity to the curve; a rule's levels are multipliers of the curve
(watch at 0.75, warning at 1.0, ...).

The global curves below are starting points only: thresholds are regional,
and each site is expected to calibrate alpha and beta against its own record
of rain and flows (`huaico rules replay` shows how a curve would have done).

    caine1980     I = 14.82 D^-0.39, 0.167 h < D < 500 h. Caine, N. (1980).
                  The rainfall intensity-duration control of shallow landslides
                  and debris flows. Geografiska Annaler A 62(1-2): 23-27.
    guzzetti2008  I = 2.20 D^-0.44, 0.1 h < D < 1000 h (global minimum).
                  Guzzetti, F., Peruccacci, S., Rossi, M., Stark, C. P. (2008).
                  The rainfall intensity-duration control of shallow landslides
                  and debris flows: an update. Landslides 5(1): 3-17.

Wet ground fails sooner. An antecedent precipitation index over daily totals,
API_t = k * API_{t-1} + P_t (k per site, about 0.8-0.95), lowers the curve:
it is multiplied by max(floor, 1 - API / saturation_mm), so a saturated slope
is warned at `floor` times the dry-ground curve.
"""

PRESETS = {
    "caine1980": (14.82, 0.39, (0.167, 500.0)),
    "guzzetti2008": (2.20, 0.44, (0.1, 1000.0)),
}


class ThresholdError(ValueError):
    """A curve or duration set that cannot work; names the field."""


def curve(alpha, beta, hours):
    """The threshold mean intensity (mm/h) for a rain of `hours` hours."""
    return alpha * hours ** -beta


def check(alpha, beta, durations_s):
    """The curve's parameters and durations, checked; durations sorted."""
    if not alpha > 0:
        raise ThresholdError("alpha %r: the curve's intensity at 1 h, in mm/h, above 0" % (alpha,))
    if not 0 <= beta < 2:
        raise ThresholdError("beta %r: the curve's slope, usually 0.2-0.8" % (beta,))
    durations = sorted(set(int(d) for d in durations_s))
    if not durations or durations[0] <= 0:
        raise ThresholdError("durations %r: one or more positive durations" % (durations_s,))
    return durations


def exceedance(rain, now, durations_s, alpha, beta, factor=1.0):
    """(ratio, duration_s, intensity) for the duration whose mean intensity
    stands highest against the curve times `factor`.

    rain is (time, mm) pairs sorted by time, each the rain fallen in the
    interval that ends at time; a pair counts for duration D when
    now - D < time <= now. durations_s must be sorted (check())."""
    best = (0.0, durations_s[0], 0.0)
    total = 0.0
    i = len(rain) - 1
    while i >= 0 and rain[i][0] > now:
        i -= 1
    for duration in durations_s:
        edge = now - duration
        while i >= 0 and rain[i][0] > edge:
            total += rain[i][1]
            i -= 1
        hours = duration / 3600.0
        intensity = total / hours
        ratio = intensity / (curve(alpha, beta, hours) * factor)
        if ratio > best[0]:
            best = (ratio, duration, intensity)
    return best


def antecedent_index(daily_mm, k):
    """API after the given daily totals, oldest first: API_t = k * API_{t-1} + P_t."""
    api = 0.0
    for mm in daily_mm:
        api = k * api + mm
    return api


def wet_factor(api, saturation_mm, floor):
    """How far wet ground lowers the curve: 1 when dry, `floor` when saturated."""
    return max(floor, 1.0 - api / saturation_mm)
