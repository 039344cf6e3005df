"""Root-cause localisation on hand-built traces whose answer is known by construction."""

from __future__ import annotations

import itertools

from sre_space.rca.localize import localize, message_template
from sre_space.telemetry.model import Span, SpanEvent, SpanKind

_ids = itertools.count(1)
MS = 1_000_000


def span(
    trace: str,
    service: str,
    name: str,
    start_ms: float,
    end_ms: float,
    parent: Span | None = None,
    kind: SpanKind = SpanKind.SERVER,
    error: str | None = None,
    **attributes: object,
) -> Span:
    events = (
        [SpanEvent("exception", 0, {"exception.type": "Boom", "exception.message": error})]
        if error
        else []
    )
    return Span(
        trace_id=trace,
        span_id=f"{next(_ids):016x}",
        parent_id=parent.span_id if parent else None,
        service=service,
        name=name,
        start_ns=int(start_ms * MS),
        end_ns=int(end_ms * MS),
        kind=kind,
        error=error is not None,
        attributes=dict(attributes),
        events=events,
    )


def call_chain(trace: str, failing: str | None, slow_callee_ms: float = 0.0) -> list[Span]:
    """frontend -> checkout -> payments (client + server spans at each hop)."""
    fe = span(
        trace,
        "frontend",
        "POST /api/checkout",
        0,
        100 + slow_callee_ms,
        error="upstream" if failing else None,
    )
    fe_c = span(
        trace,
        "frontend",
        "POST /checkout",
        1,
        99 + slow_callee_ms,
        fe,
        SpanKind.CLIENT,
        error="500" if failing else None,
    )
    co = span(
        trace,
        "checkout",
        "POST /checkout",
        2,
        98 + slow_callee_ms,
        fe_c,
        error="upstream" if failing else None,
    )
    co_c = span(
        trace,
        "checkout",
        "POST /charge",
        3,
        97 + slow_callee_ms,
        co,
        SpanKind.CLIENT,
        error="500" if failing else None,
    )
    pay = span(
        trace,
        "payments",
        "POST /charge",
        4,
        96 + slow_callee_ms,
        co_c,
        error="card processor failed id 42" if failing == "payments" else None,
    )
    return [fe, fe_c, co, co_c, pay]


def test_propagated_errors_are_blamed_on_their_origin() -> None:
    traces = [call_chain(f"{i:032x}", failing="payments") for i in range(20)]
    traces += [call_chain(f"{i + 100:032x}", failing=None) for i in range(20)]
    top = localize(traces)[0]
    assert (top.service, top.operation) == ("payments", "POST /charge")
    assert top.fault_class == "error"
    assert top.score == 1.0
    assert top.evidence["explained_traces"] == 20
    assert top.evidence["exception"] == "Boom: card processor failed id <n>"


def test_unanswered_client_call_blames_the_callee() -> None:
    traces = []
    for i in range(10):
        t = f"{i:032x}"
        root = span(t, "checkout", "POST /checkout", 0, 50, error="upstream down")
        client = span(
            t,
            "checkout",
            "GET /reserve",
            1,
            40,
            root,
            SpanKind.CLIENT,
            error="Connection refused",
            **{"peer.service": "inventory"},
        )
        traces.append([root, client])
    top = localize(traces)[0]
    assert top.service == "inventory"
    assert top.fault_class == "crash"


def test_latency_is_attributed_to_the_hop_that_added_it() -> None:
    traces = [call_chain(f"{i:032x}", failing=None, slow_callee_ms=2000) for i in range(10)]
    top = localize(traces, latency_threshold_ms=800)[0]
    # All the added time sits in payments' own server span, not in the callers.
    assert top.service == "payments"
    assert top.fault_class == "latency"


def test_a_healthy_window_names_no_one() -> None:
    traces = [call_chain(f"{i:032x}", failing=None) for i in range(30)]
    assert localize(traces) == []


def test_message_template_masks_numbers_and_ids() -> None:
    assert (
        message_template("pool exhausted (20/20 in use, waited 250 ms) trace 5b8efff798038103")
        == "pool exhausted (<n>/<n> in use, waited <n> ms) trace <id>"
    )
