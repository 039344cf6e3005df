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
intake's consumer thread); it does one dict lookup and one append per span,
of the span's row (:mod:`~sre_space.telemetry.batch`): a :class:`Span` is
built only when a reader asks for the trace, and then replaces the row.
Listeners (the detectors) are called after the lock is released, with the
batch (a sequence of spans whose ``rows`` the detectors read).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from sre_space.telemetry.batch import START, SpanBatch, build
from sre_space.telemetry.model import Span

Listener = Callable[[Sequence[Span]], None]

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
        # Per trace: its spans, each a row until a reader builds it (then the Span).
        self._traces: OrderedDict[str, list[Any]] = OrderedDict()
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

    def add(self, spans: Sequence[Span], nbytes: int = 0) -> None:
        """Hold ``spans`` (``nbytes``: their wire size, when known) and tell the listeners."""
        n = len(spans)
        if not n:
            return
        batch = SpanBatch.of(spans)
        with self._lock:
            traces = self._traces
            get = traces.get
            last, trace = "", None  # a trace's spans often come one after another
            for row in batch.rows:
                tid = row[0]  # batch.TRACE_ID
                if tid != last or trace is None:
                    trace = get(tid)
                    if trace is None:
                        trace = traces[tid] = []
                    last = tid
                trace.append(row)
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
            listener(batch)

    def extend(self, batches: Iterable[Sequence[Span]]) -> None:
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
            held = self._traces.get(trace_id)
            return _built(held) if held is not None else []

    def trace_ids(self) -> list[str]:
        """Held trace ids, oldest first."""
        with self._lock:
            return list(self._traces)

    def traces_since(self, start_ns: int) -> list[list[Span]]:
        """Traces whose root (earliest span) started at or after ``start_ns``."""
        with self._lock:  # only the traces asked for are built
            return [
                _built(t) for t in self._traces.values() if min(map(_start, t)) >= start_ns
            ]

    def spans_since(
        self, start_ns: int, predicate: Callable[[Span], bool] | None = None
    ) -> list[Span]:
        """Spans that started at or after ``start_ns`` (and pass ``predicate``), oldest trace first."""
        snapshot: list[Span] = []
        with self._lock:  # only the spans asked for are built
            for held in self._traces.values():
                for i, item in enumerate(held):
                    if type(item) is tuple:
                        if item[START] < start_ns:
                            continue
                        item = held[i] = build(item)
                    elif item.start_ns < start_ns:
                        continue
                    snapshot.append(item)
        return [s for s in snapshot if predicate is None or predicate(s)]


def _built(held: list[Any]) -> list[Span]:
    """A trace's spans, building (and keeping in place) those still held as rows (lock held)."""
    for i, item in enumerate(held):
        if type(item) is tuple:
            held[i] = build(item)
    return list(held)


def _start(item: Any) -> int:
    return item[START] if type(item) is tuple else item.start_ns  # type: ignore[no-any-return]
