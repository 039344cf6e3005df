"""The bounded trace store and the intake queue in front of it."""

from __future__ import annotations

import threading

import pytest

from sre_space.telemetry.intake import Intake
from sre_space.telemetry.model import Span
from sre_space.telemetry.otlp import Decoded
from sre_space.telemetry.store import SPAN_OVERHEAD_BYTES, TraceStore


def span(trace: int, n: int, start: int = 0) -> Span:
    return Span(f"{trace:032x}", f"{n + 1:016x}", None, "svc", f"op{n}", start, start + 10)


def trace_spans(trace: int, count: int, start: int = 0) -> list[Span]:
    return [span(trace, trace * 1000 + i, start + i) for i in range(count)]


def test_oldest_traces_are_evicted_first_and_late_spans_join_their_trace() -> None:
    store = TraceStore(max_spans=10)
    store.add(trace_spans(1, 4))
    store.add(trace_spans(2, 4))
    store.add([span(1, 99)])  # late span of trace 1: joins it, does not start a new trace
    assert len(store.trace(f"{1:032x}")) == 5 and store.stats().traces_held == 2
    store.add(trace_spans(3, 4))  # 13 > 10: trace 1 (first seen) goes, whole
    st = store.stats()
    assert store.trace_ids() == [f"{2:032x}", f"{3:032x}"]
    assert (st.spans_held, st.evicted_spans, st.evicted_traces) == (8, 5, 1)
    assert st.spans_in == 13 and len(store) == 8


def test_a_trace_larger_than_the_cap_keeps_its_newest_spans() -> None:
    store = TraceStore(max_spans=5)
    store.add(trace_spans(1, 3))
    store.add(trace_spans(2, 8))
    kept = store.trace(f"{2:032x}")
    assert [s.start_ns for s in kept] == [3, 4, 5, 6, 7]
    assert store.stats().spans_held == 5 and store.stats().evicted_spans == 6


def test_byte_cap_uses_the_wire_size_estimate() -> None:
    store = TraceStore(max_spans=1_000_000, max_bytes=100 * (SPAN_OVERHEAD_BYTES + 480))
    for t in range(50):
        store.add(trace_spans(t, 4), nbytes=4 * 480)
    st = store.stats()
    assert st.max_spans == 100 and st.spans_held <= 100
    assert st.bytes_held == st.spans_held * (SPAN_OVERHEAD_BYTES + 480)
    with pytest.raises(ValueError):
        TraceStore(max_spans=0)


def test_since_queries_keep_their_semantics() -> None:
    store = TraceStore()
    store.add(trace_spans(1, 3, start=100))
    store.add(trace_spans(2, 3, start=500))
    store.add([span(1, 77, start=600)])  # late span, after the window start
    assert [t[0].trace_id for t in store.traces_since(400)] == [f"{2:032x}"]  # by the root
    assert len(store.traces_since(0)) == 2
    late = store.spans_since(400)
    assert sorted(s.start_ns for s in late) == [500, 501, 502, 600]
    assert [s.start_ns for s in store.spans_since(0, lambda s: s.name == "op1001")] == [101]


def test_listeners_get_each_batch_and_rate_and_rejections_are_counted() -> None:
    store = TraceStore()
    seen: list[int] = []
    store.subscribe(lambda spans: seen.append(len(spans)))
    store.add(trace_spans(1, 3))
    store.add([])
    store.count_rejected(2)
    st = store.stats()
    assert seen == [3] and st.rejected == 2 and st.spans_per_s == pytest.approx(3 / 5)


# --- the intake queue ---------------------------------------------------------------


def decoded(trace: int, count: int, rejected: int = 0) -> Decoded:
    return Decoded(spans=trace_spans(trace, count), rejected=rejected, nbytes=100 * count)


def test_unstarted_intake_delivers_on_the_callers_thread() -> None:
    store = TraceStore()
    intake = Intake(store)
    assert intake.offer(decoded(1, 3, rejected=1), "test")
    assert store.stats().spans_in == 3 and store.stats().rejected == 1
    assert intake.stats().accepted == {"test": 3} and intake.stats().requests == {"test": 1}


def test_full_queue_refuses_counts_and_loses_nothing_accepted() -> None:
    gate = threading.Event()
    entered = threading.Event()
    store = TraceStore()

    def slow_detector(spans: list[Span]) -> None:
        entered.set()
        gate.wait(10)

    store.subscribe(slow_detector)
    intake = Intake(store, max_batches=2, max_spans=1000).start()
    try:
        assert intake.offer(decoded(1, 5), "http")  # taken by the consumer, which then blocks
        assert entered.wait(30)
        assert intake.offer(decoded(2, 5), "http") and intake.offer(decoded(3, 5), "http")
        assert not intake.has_room()
        assert not intake.offer(decoded(4, 5, rejected=2), "http")  # full: refused, counted
        intake.refuse("grpc")
        st = intake.stats()
        assert (st.queued_batches, st.queued_spans) == (2, 10)
        assert (st.refused_requests, st.refused_spans) == (2, 7)
        assert st.requests == {"http": 4, "grpc": 1}
        # A pull source waits for room instead of being refused.
        waiter = threading.Thread(target=lambda: intake.put(decoded(5, 5), "jaeger", timeout=10))
        waiter.start()
        gate.set()
        waiter.join(10)
        assert intake.flush(10)
        assert intake.stats().accepted == {"http": 15, "jaeger": 5}
    finally:
        gate.set()
        intake.stop()
    assert store.stats().spans_in == 20


def test_put_times_out_and_stop_delivers_what_was_queued() -> None:
    gate = threading.Event()
    store = TraceStore()
    store.subscribe(lambda spans: gate.wait(10))
    intake = Intake(store, max_batches=1, max_spans=100).start()
    assert intake.offer(decoded(1, 2), "x")
    assert intake.put(decoded(2, 2), "x", timeout=5)  # the consumer took the first: room
    assert not intake.put(decoded(3, 2), "x", timeout=0.2)
    gate.set()
    intake.stop()
    assert store.stats().spans_in == 4
    assert not intake.offer(decoded(4, 1), "x")  # stopped: refuses


def test_a_failing_listener_does_not_stop_the_consumer() -> None:
    store = TraceStore()
    calls: list[int] = []

    def flaky(spans: list[Span]) -> None:
        calls.append(len(spans))
        if len(calls) == 1:
            raise RuntimeError("detector bug")

    store.subscribe(flaky)
    intake = Intake(store).start()
    try:
        intake.offer(decoded(1, 1), "x")
        assert intake.flush(5)
        intake.offer(decoded(2, 1), "x")
        assert intake.flush(5)
    finally:
        intake.stop()
    assert store.stats().spans_in == 2 and intake.stats().consumer_errors == 1
