"""What Scout keeps per operation, and the ``Signal`` it reports of one.

An operation's requests are counted in one-second buckets of arrival time
(``_Bucket``); the seconds that leave the window are learned into its
``_Baseline`` unless they were anomalous; ``_Op`` holds both, with the history
the baseline forgets past ``baseline_s``. See :mod:`sre_space.detect.window`.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from sre_space.detect.stats import _poisson_tail, percentile

BASELINE_MIN_REQUESTS = 50
BASELINE_SAMPLES = 2048  # latencies kept per operation for its baseline quantiles


@dataclass(slots=True)
class _Bucket:
    second: int
    count: int = 0
    errors: int = 0
    slow: int = 0
    latencies: list[float] = field(default_factory=list)
    tainted: bool = False  # seen while anomalous: never learned as normal


@dataclass(slots=True)
class _Baseline:
    """What one operation's history says is normal."""

    requests: int = 0
    errors: int = 0
    slow: int = 0
    seconds: float = 0.0  # the time the history covers
    latencies: deque[float] = field(default_factory=lambda: deque(maxlen=BASELINE_SAMPLES))
    p95_ms: float = 0.0
    dirty: bool = True

    @property
    def ready(self) -> bool:
        return self.requests >= BASELINE_MIN_REQUESTS

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.requests if self.requests else 0.0

    def learn(self, bucket: _Bucket) -> None:
        self.requests += bucket.count
        self.errors += bucket.errors
        self.slow += bucket.slow
        self.latencies.extend(bucket.latencies)
        self.dirty = True

    def quantiles(self) -> None:
        if self.dirty:
            self.p95_ms = percentile(list(self.latencies), 0.95)
            self.dirty = False


@dataclass
class _Op:
    first_second: int
    latency_limit_ms: float
    count_errors: bool
    window: deque[_Bucket] = field(default_factory=deque)
    baseline: _Baseline = field(default_factory=_Baseline)
    history: deque[tuple[int, int, int, int]] = field(default_factory=deque)  # (s, n, err, slow)
    ever_normal: bool = False  # judged normal at least once since it was first seen
    # Seconds that left the window, kept while the operation is quiet (QUIET_LANE_S).
    past: deque[_Bucket] = field(default_factory=deque)
    low_since: float | None = None  # when its traffic first fell low (see TRAFFIC_HOLD)


@dataclass(frozen=True)
class Signal:
    """One (service, operation) over the window, as Scout sees it."""

    service: str
    operation: str
    count: int
    errors: int
    slow: int
    p95_ms: float
    first_bad_at: float | None = None  # wall time of the first bucket with errors or slow calls
    kind: str = ""  # why it is anomalous: error | slow | latency | traffic | structure
    reason: str = ""
    baseline_p95_ms: float | None = None
    baseline_error_rate: float | None = None
    expected: float | None = None  # requests the baseline rate predicts for the window

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.count if self.count else 0.0


def _many_over(window: deque[_Bucket], limit_ms: float, chance: float) -> bool:
    """More of the window's sampled requests over ``limit_ms`` (a p95) than chance explains.

    The count over a p95 is about Poisson with mean 5% of the requests; more
    than that with a probability below ``chance`` is a change, not bad luck.
    """
    n = over = 0
    for b in window:
        n += len(b.latencies)
        over += sum(x > limit_ms for x in b.latencies)
    return n > 0 and over > 0.05 * n and _poisson_tail(0.05 * n, over) < chance
