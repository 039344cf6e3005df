"""Robust statistics shared by the localiser and the detectors.

Medians and the median absolute deviation (MAD, scaled to estimate a normal
standard deviation) rather than means and standard deviations: one stuck
request or one retry storm in the reference window must not move the
reference. :func:`excess_weight` turns "more of X now than in the reference"
into the probability that an X seen now is due to the change rather than to
the background rate, or 0 when the difference is not significant.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

MAD_SCALE = 1.4826  # MAD * this estimates sigma for normal data
DEFAULT_Z = 4.0  # a two-proportion z below this is noise (hundreds of keys are tested at once)


def median(values: Sequence[float]) -> float:
    """The median (0.0 for no values); ``values`` need not be sorted."""
    n = len(values)
    if not n:
        return 0.0
    ordered = sorted(values)
    mid = n // 2
    return ordered[mid] if n % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def median_low(values: Sequence[float]) -> float:
    """The lower of the two middle values for an even count (0.0 for no values)."""
    if not values:
        return 0.0
    return sorted(values)[(len(values) - 1) // 2]


def quantile(values: Sequence[float], q: float) -> float:
    """The ``q`` quantile by the nearest-rank method (0.0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def mad_sigma(values: Sequence[float], center: float | None = None) -> float:
    """The MAD around ``center`` (default: the median), scaled to a standard deviation."""
    if not values:
        return 0.0
    c = median(values) if center is None else center
    return MAD_SCALE * median([abs(v - c) for v in values])


def proportion_z(hits: int, n: int, ref_hits: int, ref_n: int) -> float:
    """Two-proportion z statistic of ``hits/n`` against ``ref_hits/ref_n`` (pooled variance)."""
    if n <= 0 or ref_n <= 0:
        return 0.0
    pooled = (hits + ref_hits) / (n + ref_n)
    var = pooled * (1.0 - pooled) * (1.0 / n + 1.0 / ref_n)
    diff = hits / n - ref_hits / ref_n
    if var <= 0.0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return diff / math.sqrt(var)


def excess_weight(hits: int, n: int, ref_hits: int, ref_n: int, z: float = DEFAULT_Z) -> float:
    """How much of ``hits`` is beyond the reference rate: ``1 - ref_rate / rate``.

    0.0 unless the rate now is significantly above the reference rate (a
    two-proportion z of at least ``z``). The reference rate is smoothed (half
    an event) so that a category never seen before is not infinitely
    surprising on a small sample.
    """
    if hits <= 0 or n <= 0:
        return 0.0
    if ref_n > 0 and proportion_z(hits, n, ref_hits, ref_n) < z:
        return 0.0
    if ref_n <= 0:
        return 1.0
    rate = hits / n
    ref_rate = (ref_hits + 0.5) / (ref_n + 1.0)
    return max(0.0, min(1.0, 1.0 - ref_rate / rate))


def rank_shift(now: Sequence[float], ref: Sequence[float]) -> tuple[float, float]:
    """How far ``now`` lies above ``ref``: the Mann-Whitney z and the chance a value of
    ``now`` exceeds one of ``ref`` (ties count half; 0.5 is no shift).

    A rank test sees a service that became slower at every call on a handful
    of calls, where counting calls above a percentile needs many; and it is
    blind to how slow the slowest were, so one stuck request moves it little.
    """
    n, m = len(now), len(ref)
    if not n or not m:
        return 0.0, 0.5
    merged = sorted([(v, 0) for v in now] + [(v, 1) for v in ref])
    rank_sum = 0.0
    tie_term = 0.0
    i = 0
    while i < len(merged):
        j = i
        while j + 1 < len(merged) and merged[j + 1][0] == merged[i][0]:
            j += 1
        mid = (i + j) / 2 + 1  # the average rank of the tied run
        t = j - i + 1
        tie_term += t**3 - t
        rank_sum += mid * sum(1 for k in range(i, j + 1) if merged[k][1] == 0)
        i = j + 1
    u = rank_sum - n * (n + 1) / 2
    total = n + m
    var = n * m / 12 * ((total + 1) - tie_term / (total * (total - 1)))
    z = (u - n * m / 2) / math.sqrt(var) if var > 0 else 0.0
    return z, u / (n * m)
