"""The bounded intake queue between the senses and the trace store.

Receivers decode a request on their own thread, then :meth:`Intake.offer` the
spans without blocking: when the queue is full the answer is *no*, and the
receiver tells its client to retry later (HTTP 503 + ``Retry-After``, gRPC
``UNAVAILABLE`` + ``RetryInfo``), so overload never grows memory without bound.
Pull sources (Jaeger, Kafka) call :meth:`Intake.put`, which waits for room
instead: they can simply read more slowly.

One consumer thread takes queued batches, merges them, adds them to the store
(which feeds the detectors). On :meth:`Intake.stop` whatever was accepted is
still delivered: nothing accepted is dropped.

Counted in :class:`IntakeStats`: requests per source, spans accepted per
source, requests refused for overload and the spans in them (the client keeps
and resends those), and bad requests (unreadable payloads, answered 400).
Spans rejected one by one inside a readable payload (partial success) are
counted by the store's ``rejected``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from sre_space.telemetry.batch import SpanBatch
from sre_space.telemetry.otlp import Decoded
from sre_space.telemetry.store import TraceStore

log = logging.getLogger(__name__)

MERGE_SPANS = 16_384  # the consumer hands the store at most this many spans at once


@dataclass
class IntakeStats:
    queued_batches: int = 0
    queued_spans: int = 0
    queue_max_batches: int = 0
    queue_max_spans: int = 0
    refused_requests: int = 0  # answered 429/503 / UNAVAILABLE: the client retries
    refused_spans: int = 0  # spans in refused requests that had been decoded
    bad_requests: int = 0  # unreadable payloads, answered 400 / INVALID_ARGUMENT
    requests: dict[str, int] = field(default_factory=dict)  # per source
    accepted: dict[str, int] = field(default_factory=dict)  # spans queued, per source
    consumer_errors: int = 0


@dataclass(slots=True)
class _Batch:
    spans: SpanBatch
    nbytes: int


class Intake:
    def __init__(
        self,
        store: TraceStore,
        max_batches: int = 256,
        max_spans: int = 131_072,
        retry_after_s: int = 1,
    ) -> None:
        self.store = store
        self.max_batches = max(1, max_batches)
        self.max_spans = max(1, max_spans)
        self.retry_after_s = max(1, retry_after_s)
        self._queue: deque[_Batch] = deque()
        self._queued_spans = 0
        self._busy = False
        self._idle = False  # the consumer is waiting for work (only then notify it)
        self._lock = threading.Lock()
        self._not_empty = threading.Condition(self._lock)
        self._changed = threading.Condition(self._lock)  # room freed, or went idle
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._stats = IntakeStats(queue_max_batches=self.max_batches, queue_max_spans=self.max_spans)

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> Intake:
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._run, name="intake", daemon=True)
            self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop taking batches; deliver what was accepted, then end the consumer."""
        with self._lock:
            self._stopping = True
            self._not_empty.notify_all()
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        self._drain_inline()

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stopping

    # --- producers ------------------------------------------------------------

    def has_room(self) -> bool:
        """A cheap check before decoding: False means answer "retry later" now."""
        return len(self._queue) < self.max_batches and self._queued_spans < self.max_spans

    def offer(self, decoded: Decoded, source: str) -> bool:
        """Queue a decoded payload without waiting; False (and counted) when full."""
        n = len(decoded.spans)
        with self._lock:
            st = self._stats
            st.requests[source] = st.requests.get(source, 0) + 1
            if self._stopping or not self._fits(n):
                st.refused_requests += 1
                st.refused_spans += n + decoded.rejected
                return False
            self._enqueue(decoded, source)
        if decoded.rejected:
            self.store.count_rejected(decoded.rejected)
        return True

    def put(self, decoded: Decoded, source: str, timeout: float | None = None) -> bool:
        """Queue a decoded payload, waiting up to ``timeout`` for room (pull sources)."""
        n = len(decoded.spans)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            st = self._stats
            st.requests[source] = st.requests.get(source, 0) + 1
            while not self._stopping and not self._fits(n):
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._changed.wait(remaining if remaining is not None else 1.0)
            if self._stopping or not self._fits(n):
                st.refused_requests += 1
                st.refused_spans += n + decoded.rejected
                return False
            self._enqueue(decoded, source)
        if decoded.rejected:
            self.store.count_rejected(decoded.rejected)
        return True

    def refuse(self, source: str) -> None:
        """Count a request refused for overload before it was decoded."""
        with self._lock:
            st = self._stats
            st.requests[source] = st.requests.get(source, 0) + 1
            st.refused_requests += 1

    def bad_request(self, source: str) -> None:
        """Count a payload that could not be read at all."""
        with self._lock:
            st = self._stats
            st.requests[source] = st.requests.get(source, 0) + 1
            st.bad_requests += 1

    def _fits(self, n: int) -> bool:
        if not self._queue:
            return True  # an empty queue takes any one batch, however large
        return len(self._queue) < self.max_batches and self._queued_spans + n <= self.max_spans

    def _enqueue(self, decoded: Decoded, source: str) -> None:
        n = len(decoded.spans)
        st = self._stats
        st.accepted[source] = st.accepted.get(source, 0) + n
        if not n:
            return
        self._queue.append(_Batch(decoded.spans, decoded.nbytes))
        self._queued_spans += n
        if self._thread is None:  # not started: deliver on the caller's thread
            self._lock.release()
            try:
                self._drain_inline()
            finally:
                self._lock.acquire()
        elif self._idle:
            self._not_empty.notify()

    # --- the consumer -----------------------------------------------------------

    def _take(self) -> tuple[SpanBatch, int]:
        """Pop up to MERGE_SPANS spans of queued batches (lock held)."""
        first = self._queue.popleft()
        spans, nbytes = first.spans, first.nbytes
        if self._queue and len(spans) < MERGE_SPANS:
            rows = list(spans.rows)  # rows, not spans: merging builds no span
            while self._queue and len(rows) + len(self._queue[0].spans) <= MERGE_SPANS:
                b = self._queue.popleft()
                rows.extend(b.spans.rows)
                nbytes += b.nbytes
            spans = SpanBatch(rows=rows)
        self._queued_spans -= len(spans)
        self._changed.notify_all()
        return spans, nbytes

    def _deliver(self, spans: SpanBatch, nbytes: int) -> None:
        try:
            self.store.add(spans, nbytes)
        except Exception:  # a listener's bug must not stop the intake
            log.exception("intake: adding %d spans failed", len(spans))
            with self._lock:
                self._stats.consumer_errors += 1

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._idle = True
                    self._not_empty.wait()
                    self._idle = False
                if not self._queue:
                    self._changed.notify_all()
                    return
                spans, nbytes = self._take()
                self._busy = True
            self._deliver(spans, nbytes)
            with self._lock:
                self._busy = False
                if not self._queue:
                    self._changed.notify_all()

    def _drain_inline(self) -> None:
        while True:
            with self._lock:
                if not self._queue:
                    return
                spans, nbytes = self._take()
            self._deliver(spans, nbytes)

    # --- reading ------------------------------------------------------------------

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything queued so far is in the store; False at the deadline."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._queue or self._busy:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
        return True

    def stats(self) -> IntakeStats:
        with self._lock:
            st = self._stats
            return IntakeStats(
                queued_batches=len(self._queue),
                queued_spans=self._queued_spans,
                queue_max_batches=self.max_batches,
                queue_max_spans=self.max_spans,
                refused_requests=st.refused_requests,
                refused_spans=st.refused_spans,
                bad_requests=st.bad_requests,
                requests=dict(st.requests),
                accepted=dict(st.accepted),
                consumer_errors=st.consumer_errors,
            )
