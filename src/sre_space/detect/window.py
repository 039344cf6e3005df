"""Sliding-window signals per service and operation, fed by the trace store.

Only SERVER spans (and spans with no kind, from simple exporters) count as
requests: a CLIENT span repeats its callee's outcome and would double-count a
cascade. Buckets are one second of arrival time, so late or skewed clocks in
the telemetry cannot hide a burst of errors.
"""

from __future__ import annotations

import math
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field

from sre_space.telemetry.model import Span, SpanKind

REQUEST_KINDS = {SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.UNSPECIFIED}


@dataclass
class _Bucket:
    second: int
    count: int = 0
    errors: int = 0
    slow: int = 0
    latencies: list[float] = field(default_factory=list)


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

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0

    @property
    def slow_rate(self) -> float:
        return self.slow / self.count if self.count else 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


class WindowDetector:
    def __init__(self, window_s: float, latency_threshold_ms: float) -> None:
        self.window_s = window_s
        self.latency_threshold_ms = latency_threshold_ms
        self._buckets: dict[tuple[str, str], deque[_Bucket]] = defaultdict(deque)
        self._lock = threading.Lock()

    def observe(self, spans: list[Span]) -> None:
        now = int(time.time())
        with self._lock:
            for span in spans:
                if span.kind not in REQUEST_KINDS:
                    continue
                buckets = self._buckets[(span.service, span.name)]
                if not buckets or buckets[-1].second != now:
                    buckets.append(_Bucket(now))
                b = buckets[-1]
                b.count += 1
                duration = span.duration_ms
                b.errors += span.error
                b.slow += duration > self.latency_threshold_ms
                if len(b.latencies) < 512:
                    b.latencies.append(duration)

    def reset(self) -> None:
        """Forget the window, e.g. once an incident is mitigated, so stale errors don't reopen it."""
        with self._lock:
            self._buckets.clear()

    def signals(self) -> list[Signal]:
        cutoff = time.time() - self.window_s
        out: list[Signal] = []
        with self._lock:
            for (service, operation), buckets in self._buckets.items():
                while buckets and buckets[0].second < cutoff:
                    buckets.popleft()
                if not buckets:
                    continue
                lat = [x for b in buckets for x in b.latencies]
                bad = [b.second for b in buckets if b.errors or b.slow]
                out.append(
                    Signal(
                        service=service,
                        operation=operation,
                        count=sum(b.count for b in buckets),
                        errors=sum(b.errors for b in buckets),
                        slow=sum(b.slow for b in buckets),
                        p95_ms=percentile(lat, 0.95),
                        first_bad_at=float(bad[0]) if bad else None,
                    )
                )
        return out

    def anomalous(self, error_rate: float, min_requests: int) -> list[Signal]:
        """Signals over the static rules: error rate, or share of requests over the latency limit."""
        return [
            s
            for s in self.signals()
            if s.count >= min_requests and (s.error_rate > error_rate or s.slow_rate > error_rate)
        ]
