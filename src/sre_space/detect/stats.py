"""Counting statistics Scout judges by: percentiles and Poisson tails.

A count of failed, slow or over-the-p95 requests is judged against what the
operation's normal rate explains by chance, not against a fixed share: two
unlucky requests out of twenty are bad luck, two hundred out of two thousand
are a change.
"""

from __future__ import annotations

import math

# A count is a change, not bad luck, when a Poisson tail puts it below this:
# the p95 of a few dozen requests moves with two unlucky ones (a GC pause), a
# real slowdown moves many.
LATENCY_CHANCE = 1e-6
UNSEEN_RATE = 0.005  # the error (or slow) rate assumed of history that saw none
LATENCY_CHANCE_EXIT = 1e-2


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def beyond_chance(bad: int, count: int, normal_rate: float, active: bool) -> bool:
    """More failed (or slow) requests than the normal rate explains by chance.

    One error in twenty requests is 5%, and bad luck; a rate never seen
    before is taken as at most ``UNSEEN_RATE``, as a short history cannot say 0.
    """
    mean = max(normal_rate, UNSEEN_RATE) * count
    return _poisson_tail(mean, bad) < (LATENCY_CHANCE_EXIT if active else LATENCY_CHANCE)


def _poisson_tail(mean: float, k: int) -> float:
    """P(X >= k) for X ~ Poisson(mean); a normal approximation for large means."""
    if mean > 50:
        z = (k - 0.5 - mean) / math.sqrt(mean)
        return 0.5 * math.erfc(z / math.sqrt(2))
    term = total = math.exp(-mean)
    for i in range(1, k):
        term *= mean / i
        total += term
    return max(0.0, 1.0 - total)
