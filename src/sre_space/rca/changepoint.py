"""Where, inside one window of traces, things got worse.

Every operation gives a few series over time (one value per call, calls in
trace start order), each oriented so that higher is worse: its self time,
whether its call made a set of child calls unusual for it (by the window's
first third), whether an error originated in it; and every trace its
end-to-end time. A change point splits
the window (between two traces); for a candidate split each series gets the
standardised Mann-Whitney statistic of its values after against before, and
the split's score is the sum of the squares of the positive ones (worse
after), standardised against what that sum is on unchanged series. Ranks make
it indifferent to scale and to the outliers a long tail has. Only a change
for the worse counts: a recovery, or the ragged traces a receiver gets in its
first second, is not the onset of an incident.

The best split counts only when its score clears a high bar (it is the best
of many tries) and both sides hold enough traces.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from sre_space.rca.traces import OpKey, TraceView

MIN_SIDE = 20  # traces on each side of a split, at least
MIN_SIDE_SHARE = 0.1  # and at least this share of the window
MIN_CALLS = 10  # calls on each side for a series to take part in a split
SCORE_MIN = 25.0  # the standardised score a split must reach (drift alone reaches ~15)
USUAL_SHARE = 0.1  # a set of child calls this common early in the window is usual
MAX_CANDIDATES = 200  # splits tried on a coarse grid before refining around the best


class _Series:
    """One series' values as prefix sums of normalised ranks over trace positions."""

    __slots__ = ("count", "n", "rank_sum", "total")

    def __init__(self, points: list[tuple[int, float]], n_traces: int) -> None:
        points.sort()
        values = [v for _, v in points]
        ranks = _ranks(values)
        self.n = len(values)
        self.total = sum(ranks)
        # count[i], rank_sum[i]: calls (and their ranks) in traces before position i
        self.count = [0] * (n_traces + 1)
        self.rank_sum = [0.0] * (n_traces + 1)
        j = 0
        acc = 0.0
        for i in range(n_traces + 1):
            while j < self.n and points[j][0] < i:
                acc += ranks[j]
                j += 1
            self.count[i] = j
            self.rank_sum[i] = acc

    def z(self, i: int) -> float | None:
        before = self.count[i]
        after = self.n - before
        if before < MIN_CALLS or after < MIN_CALLS:
            return None
        expected = after * (self.n + 1) / 2
        sd = math.sqrt(before * after * (self.n + 1) / 12)
        return (self.total - self.rank_sum[i] - expected) / sd


def _ranks(values: list[float]) -> list[float]:
    """Ranks from 1, ties given their average rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2 + 1
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        i = j + 1
    return ranks


def _series(window: list[TraceView]) -> list[_Series]:
    n = len(window)
    self_ms: dict[OpKey, list[tuple[int, float]]] = defaultdict(list)
    unusual: dict[OpKey, list[tuple[int, float]]] = defaultdict(list)
    errors: dict[OpKey, list[tuple[int, float]]] = defaultdict(list)
    # What an operation's calls usually look like is judged on the window's
    # first part: trouble, if any, comes later.
    early: dict[OpKey, Counter[frozenset[OpKey]]] = defaultdict(Counter)
    for v in window[: max(1, n // 3)]:
        for c in v.calls:
            early[c.key][c.shape] += 1
    usual = {
        k: {shape for shape, m in cnt.items() if m >= USUAL_SHARE * cnt.total()}
        for k, cnt in early.items()
    }
    for i, v in enumerate(window):
        for c in v.calls:
            self_ms[c.key].append((i, c.self_ms))
            unusual[c.key].append((i, float(c.shape not in usual.get(c.key, ()))))
            errors[c.key].append((i, float(c.error_origin)))
    end_to_end = [(i, v.root_ms) for i, v in enumerate(window)]
    out = [_Series(end_to_end, n)]
    for group in (self_ms, unusual, errors):
        for points in group.values():
            if len(points) >= 2 * MIN_CALLS and len({p[1] for p in points}) > 1:
                out.append(_Series(points, n))
    return out


def _score(series: list[_Series], i: int) -> float:
    zs = [z for s in series if (z := s.z(i)) is not None]
    if not zs:
        return 0.0
    k = len(zs)
    # max(z, 0)^2 of a standard normal z: mean 1/2, variance 5/4
    return (sum(z * z for z in zs if z > 0) - k / 2) / math.sqrt(1.25 * k)


def change_point(window: list[TraceView]) -> int | None:
    """The index of the first trace after the change (``window`` oldest first), or None."""
    n = len(window)
    side = max(MIN_SIDE, math.ceil(MIN_SIDE_SHARE * n))
    if n < 2 * side:
        return None
    series = _series(window)

    def valid(i: int) -> bool:  # some time passed between the two sides
        return window[i - 1].start_ns < window[i].start_ns

    step = max(1, (n - 2 * side) // MAX_CANDIDATES)
    grid = [i for i in range(side, n - side + 1, step) if valid(i)]
    if not grid:
        return None
    best = max(grid, key=lambda i: _score(series, i))
    lo, hi = max(side, best - step), min(n - side, best + step)
    best = max((i for i in range(lo, hi + 1) if valid(i)), key=lambda i: _score(series, i))
    return best if _score(series, best) >= SCORE_MIN else None
