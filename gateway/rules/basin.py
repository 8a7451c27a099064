"""Rules over several gauges of a basin: k of n at a level, or the basin's mean.

One faulty gauge must not raise an evacuation alone, and one silent gauge must
not keep a basin quiet. A k-of-n rule's level is the highest level that at
least k of its n gauges have reached; a gauge that is silent or flagged is
unknown, neither for nor against. When the gauges still known cannot reach k
between them, the rule says so (`short`), so that operators hear that the
basin is not watched instead of nothing.

Worked example (k = 2 of n = 4, levels watch < warning < emergency): gauges at
warning, watch, emergency and unknown give warning (two at warning or above);
with two of them unknown and the others at emergency and nothing, nothing is
raised and short is False (two known gauges can still make k); with three
unknown, short is True.
"""


class BasinError(ValueError):
    """A basin rule that cannot work; names the field."""


def check(k, n):
    if not isinstance(k, int) or not isinstance(n, int) or not 1 <= k <= n:
        raise BasinError("k of n: need 1 <= k <= n, got k=%r n=%r" % (k, n))


def k_of_n(levels, k):
    """(level, short) for the gauges' levels: an index (-1 for none raised)
    or None for unknown. level is the highest index that at least k known
    gauges reach, -1 when none; short is True when fewer than k are known."""
    known = sorted((level for level in levels if level is not None), reverse=True)
    if len(known) < k:
        return -1, True
    return max(known[k - 1], -1), False


def basin_mean(totals):
    """(mean, known) of the gauges' accumulations, None for unknown ones."""
    known = [total for total in totals if total is not None]
    if not known:
        return None, 0
    return sum(known) / len(known), len(known)
