"""A bounded in-memory trace store.

Traces are kept in arrival order; once more than ``max_spans`` spans are held,
whole traces are evicted oldest first. A span that arrives after its trace was
first seen joins that trace (late spans), so a trace never splits in two.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sre_space.telemetry.model import Span

Listener = Callable[[list[Span]], None]


@dataclass
class StoreStats:
    spans_in: int = 0
    rejected: int = 0
    evicted_spans: int = 0
    evicted_traces: int = 0
    traces_held: int = 0
    spans_held: int = 0
    spans_per_s: float = 0.0


class TraceStore:
    def __init__(self, max_spans: int = 200_000) -> None:
        self.max_spans = max_spans
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._stats = StoreStats()
        # (monotonic second, spans) pairs for a short moving rate
        self._rate: deque[tuple[float, int]] = deque()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def add(self, spans: list[Span]) -> None:
        if not spans:
            return
        with self._lock:
            for span in spans:
                trace = self._traces.get(span.trace_id)
                if trace is None:
                    self._traces[span.trace_id] = [span]
                else:
                    trace.append(span)
            self._held += len(spans)
            self._stats.spans_in += len(spans)
            self._note_rate(len(spans))
            while self._held > self.max_spans and len(self._traces) > 1:
                _, old = self._traces.popitem(last=False)
                self._held -= len(old)
                self._stats.evicted_spans += len(old)
                self._stats.evicted_traces += 1
        for listener in self._listeners:
            listener(spans)

    def count_rejected(self, n: int) -> None:
        with self._lock:
            self._stats.rejected += n

    def _note_rate(self, n: int) -> None:
        now = time.monotonic()
        self._rate.append((now, n))
        cutoff = now - 5.0
        while self._rate and self._rate[0][0] < cutoff:
            self._rate.popleft()

    def stats(self) -> StoreStats:
        with self._lock:
            now = time.monotonic()
            recent = sum(n for t, n in self._rate if t >= now - 5.0)
            return StoreStats(
                spans_in=self._stats.spans_in,
                rejected=self._stats.rejected,
                evicted_spans=self._stats.evicted_spans,
                evicted_traces=self._stats.evicted_traces,
                traces_held=len(self._traces),
                spans_held=self._held,
                spans_per_s=recent / 5.0,
            )

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return list(self._traces.get(trace_id, ()))

    def traces_since(self, start_ns: int) -> list[list[Span]]:
        """Traces whose root (earliest span) started at or after ``start_ns``."""
        with self._lock:
            snapshot = [list(t) for t in self._traces.values()]
        return [t for t in snapshot if min(s.start_ns for s in t) >= start_ns]

    def spans_since(
        self, start_ns: int, predicate: Callable[[Span], bool] | None = None
    ) -> list[Span]:
        with self._lock:
            snapshot = [s for t in self._traces.values() for s in t]
        return [
            s for s in snapshot if s.start_ns >= start_ns and (predicate is None or predicate(s))
        ]

    def extend(self, batches: Iterable[list[Span]]) -> None:
        for batch in batches:
            self.add(batch)
