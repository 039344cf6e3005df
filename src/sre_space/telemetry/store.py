"""A bounded in-memory trace store.

Traces are kept in the order they were first seen; once more than
``max_spans`` spans (or, when set, about ``max_bytes`` of memory) are held,
whole traces are evicted oldest first. A span that arrives after its trace was
first seen joins that trace (late spans), so a trace never splits in two while
it is held. A single trace larger than the whole cap loses its oldest spans.

Memory is estimated, not measured: a span costs a fixed amount of Python
objects plus its share of the payload it came in (a protobuf span keeps the
request's bytes to decode its attributes from on demand).
``benchmarks/ingest.py`` checks the estimate against resident memory.

``add`` is on the hot path (every accepted span passes through it once, on the
intake's consumer thread); it does one dict lookup and one append per span.
Listeners (the detectors) are called after the lock is released.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from sre_space.telemetry.model import Span

Listener = Callable[[list[Span]], None]

# Python objects of one span (the object, hex ids, times, its slot in the trace)
# and the share of its request's bytes it keeps alive (protobuf spans keep the
# wire bytes; JSON spans hold dicts of about the same size as their text).
# Fitted on 0 to 20 attributes per span by measuring resident memory.
SPAN_OVERHEAD_BYTES = 520
WIRE_FACTOR = 1.0
DEFAULT_WIRE_BYTES = 300
RATE_WINDOW_S = 5.0


@dataclass
class StoreStats:
    spans_in: int = 0
    rejected: int = 0
    evicted_spans: int = 0
    evicted_traces: int = 0
    traces_held: int = 0
    spans_held: int = 0
    spans_per_s: float = 0.0
    bytes_held: int = 0  # an estimate (see the module docstring)
    max_spans: int = 0


class TraceStore:
    def __init__(self, max_spans: int = 200_000, max_bytes: int | None = None) -> None:
        if max_spans < 1:
            raise ValueError("max_spans must be at least 1")
        self.max_spans = max_spans
        self.max_bytes = max_bytes
        self._traces: OrderedDict[str, list[Span]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._stats = StoreStats()
        self._wire_bytes_in = 0
        self._cap = max_spans
        # (monotonic time, spans) per add, for a short moving rate
        self._rate: deque[tuple[float, int]] = deque()

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    # --- intake -----------------------------------------------------------------

    def add(self, spans: list[Span], nbytes: int = 0) -> None:
        """Hold ``spans`` (``nbytes``: their wire size, when known) and tell the listeners."""
        n = len(spans)
        if not n:
            return
        with self._lock:
            traces = self._traces
            get = traces.get
            for span in spans:
                tid = span.trace_id
                trace = get(tid)
                if trace is None:
                    traces[tid] = [span]
                else:
                    trace.append(span)
            self._held += n
            stats = self._stats
            stats.spans_in += n
            self._wire_bytes_in += nbytes or n * DEFAULT_WIRE_BYTES
            if self.max_bytes is not None:
                self._cap = max(1, min(self.max_spans, self.max_bytes // self._span_bytes()))
            now = time.monotonic()
            rate = self._rate
            rate.append((now, n))
            if rate[0][0] < now - RATE_WINDOW_S:
                self._trim_rate(now)
            if self._held > self._cap:
                self._evict()
        for listener in self._listeners:
            listener(spans)

    def extend(self, batches: Iterable[list[Span]]) -> None:
        for batch in batches:
            self.add(batch)

    def count_rejected(self, n: int) -> None:
        with self._lock:
            self._stats.rejected += n

    def _span_bytes(self) -> int:
        spans_in = self._stats.spans_in or 1
        return int(SPAN_OVERHEAD_BYTES + WIRE_FACTOR * self._wire_bytes_in / spans_in)

    def _evict(self) -> None:
        traces, stats, cap = self._traces, self._stats, self._cap
        while self._held > cap and len(traces) > 1:
            _, old = traces.popitem(last=False)
            self._held -= len(old)
            stats.evicted_spans += len(old)
            stats.evicted_traces += 1
        if self._held > cap:  # one trace larger than the cap: keep its newest spans
            ((_, only),) = traces.items()
            drop = self._held - cap
            del only[:drop]
            self._held -= drop
            stats.evicted_spans += drop

    def _trim_rate(self, now: float) -> None:
        rate, cutoff = self._rate, now - RATE_WINDOW_S
        while rate and rate[0][0] < cutoff:
            rate.popleft()

    # --- reading ----------------------------------------------------------------

    def stats(self) -> StoreStats:
        with self._lock:
            now = time.monotonic()
            self._trim_rate(now)
            recent = sum(n for _, n in self._rate)
            return StoreStats(
                spans_in=self._stats.spans_in,
                rejected=self._stats.rejected,
                evicted_spans=self._stats.evicted_spans,
                evicted_traces=self._stats.evicted_traces,
                traces_held=len(self._traces),
                spans_held=self._held,
                spans_per_s=recent / RATE_WINDOW_S,
                bytes_held=self._held * self._span_bytes(),
                max_spans=self._cap,
            )

    def __len__(self) -> int:
        return self._held

    def trace(self, trace_id: str) -> list[Span]:
        with self._lock:
            return list(self._traces.get(trace_id, ()))

    def trace_ids(self) -> list[str]:
        """Held trace ids, oldest first."""
        with self._lock:
            return list(self._traces)

    def traces_since(self, start_ns: int) -> list[list[Span]]:
        """Traces whose root (earliest span) started at or after ``start_ns``."""
        with self._lock:
            snapshot = [list(t) for t in self._traces.values()]
        return [t for t in snapshot if min(s.start_ns for s in t) >= start_ns]

    def spans_since(
        self, start_ns: int, predicate: Callable[[Span], bool] | None = None
    ) -> list[Span]:
        """Spans that started at or after ``start_ns`` (and pass ``predicate``), oldest trace first."""
        with self._lock:
            snapshot = [s for t in self._traces.values() for s in t]
        return [
            s for s in snapshot if s.start_ns >= start_ns and (predicate is None or predicate(s))
        ]
