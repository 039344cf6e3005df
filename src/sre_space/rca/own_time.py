"""Own time per visit: a service slower in its own work, found on a handful of calls.

A request's own time in a service is the self time of its spans there, calls
out excluded (:func:`~sre_space.rca.traces.own_times`). An entry operation is
*shifted* when its visits' own time rose by rank (Mann-Whitney) and by half
again at the median; docs/rca.md (section 3) says why each bar is where it is.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from typing import NamedTuple, TypeVar

from sre_space.rca.reference import HIGH_QUANTILE, Reference
from sre_space.rca.stats import median, quantile, rank_shift
from sre_space.rca.traces import OpKey

K = TypeVar("K")

# A service's own time per visit is judged by rank (stats.rank_shift): shifted
# when the Mann-Whitney z reaches this (one-sided p about 0.006) on at least
# this many visits before and now.
OWN_SHIFT_Z = 2.5
OWN_MIN_VISITS = 3
# ... and when its median grew by at least this factor: the load of another hour
# moves every service's time a little; a fault in one moves its own a lot.
OWN_MIN_RATIO = 1.5


def can_shift(now: int, before: int) -> bool:
    """Whether samples this many, now and before, could show a shift at all.

    The rank test's z is at most sqrt(3nm / (n + m + 1)), reached when every
    sample now lies above every one before; with three samples before and
    nine now that is under ``OWN_SHIFT_Z``. Below it, no shift found is no
    opinion, not a sign that nothing grew.
    """
    if min(now, before) < OWN_MIN_VISITS:
        return False
    return 3 * now * before / (now + before + 1) >= OWN_SHIFT_Z**2


class OwnShift(NamedTuple):
    """An entry operation whose visits' own time rose (see :func:`own_shifts`)."""

    weight: float  # the share of its visits above the reference's p90 the change explains
    high_ms: float  # the reference's p90
    z: float
    visits: int
    p50_ms: float
    baseline_visits: int
    baseline_p50_ms: float


def own_shifts(visits: list[list[tuple[OpKey, float]]], ref: Reference) -> dict[OpKey, OwnShift]:
    """Entry operations whose visits take longer in their own service than before."""
    now: dict[OpKey, list[float]] = defaultdict(list)
    for in_trace in visits:
        for key, own_ms in in_trace:
            now[key].append(own_ms)
    return shifts(now, ref.own.get)


def shifts(
    now: Mapping[K, list[float]], before_of: Callable[[K], list[float] | None]
) -> dict[K, OwnShift]:
    """The keys whose samples rose, by rank and by half again at the median.

    ``before_of``: a key's reference samples, sorted (None: it has none).
    """
    out: dict[K, OwnShift] = {}
    for key, samples in now.items():
        before = before_of(key)
        if not before or min(len(before), len(samples)) < OWN_MIN_VISITS:
            continue
        p50, baseline_p50 = median(samples), median(before)
        if p50 < OWN_MIN_RATIO * baseline_p50:
            continue  # the cheap test first: most operations did not grow by half
        z, _ = rank_shift(samples, before)
        if z < OWN_SHIFT_Z:
            continue
        high = quantile(before, HIGH_QUANTILE)
        share = sum(1 for x in samples if x > high) / len(samples)
        if share > 1 - HIGH_QUANTILE:
            weight = 1 - (1 - HIGH_QUANTILE) / share
            out[key] = OwnShift(weight, high, z, len(samples), p50, len(before), baseline_p50)
    return out
