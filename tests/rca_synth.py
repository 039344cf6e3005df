"""Synthetic traces of a small shop, with faults whose root cause is known by construction.

    frontend  GET /checkout
      ├─ catalog   GetProduct            (x2)
      ├─ checkout  PlaceOrder
      │    ├─ payments   Charge
      │    └─ inventory  Reserve
      └─ catalog   GetRecommendations

Each call out is a CLIENT span in the caller and a SERVER span in the callee
(or, with ``internal=True``, both INTERNAL, as some real instrumentations
do). Times jitter by a seeded random generator so that baselines have spread.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field

from sre_space.telemetry.model import Span, SpanEvent, SpanKind

MS = 1_000_000
_ids = itertools.count(1)


@dataclass
class Fault:
    own_ms: dict[str, float] = field(default_factory=dict)  # service -> extra own work
    gap_to: dict[str, float] = field(default_factory=dict)  # callee -> extra wait before it answers
    gap_from: dict[str, float] = field(
        default_factory=dict
    )  # caller -> extra wait on all its calls
    error: str | None = None  # service whose own span fails
    stop_after: str | None = None  # frontend gives up right after this callee answers
    skip_own_calls: str | None = None  # this service stops making its own calls


@dataclass
class Node:
    service: str
    op: str
    own_ms: float
    children: list[Node] = field(default_factory=list)


def shop() -> Node:
    return Node(
        "frontend",
        "GET /checkout",
        2.0,
        [
            Node("catalog", "GetProduct", 3.0),
            Node("catalog", "GetProduct", 3.0),
            Node(
                "checkout",
                "PlaceOrder",
                4.0,
                [Node("payments", "Charge", 20.0), Node("inventory", "Reserve", 6.0)],
            ),
            Node("catalog", "GetRecommendations", 5.0),
        ],
    )


def trace(
    rnd: random.Random,
    start_ms: float,
    fault: Fault | None = None,
    *,
    internal: bool = False,
    trace_id: str | None = None,
) -> list[Span]:
    fault = fault or Fault()
    tid = trace_id or f"{rnd.getrandbits(128):032x}"
    spans: list[Span] = []

    def jitter(ms: float) -> float:
        return ms * rnd.uniform(0.8, 1.25)

    def serve(node: Node, at: float, parent: Span | None) -> tuple[float, bool]:
        """Emit the node's server span (and below) starting at ``at``: (its end, failed)."""
        span_id = f"{next(_ids):016x}"
        t = at + jitter(node.own_ms / 2) + fault.own_ms.get(node.service, 0.0) / 2
        children = node.children
        if fault.skip_own_calls == node.service:
            children = []
        origin = fault.error == node.service
        failed = origin
        for child in children:
            client_id = f"{next(_ids):016x}"
            gap = jitter(1.0) + fault.gap_to.get(child.service, 0.0)
            gap += fault.gap_from.get(node.service, 0.0)
            client_start = t
            server_end, child_failed = serve_child(child, client_start + gap / 2, client_id, tid)
            failed = failed or child_failed
            client_end = server_end + gap / 2
            spans.append(
                Span(
                    tid,
                    client_id,
                    span_id,
                    node.service,
                    child.op,
                    int(client_start * MS),
                    int(client_end * MS),
                    SpanKind.INTERNAL if internal else SpanKind.CLIENT,
                    error=child_failed,
                    attributes={} if internal else {"peer.service": child.service},
                )
            )
            t = client_end
            if node.service == "frontend" and fault.stop_after == child.service:
                break
        end = t + jitter(node.own_ms / 2) + fault.own_ms.get(node.service, 0.0) / 2
        kind = SpanKind.SERVER if parent is None or not internal else SpanKind.INTERNAL
        exception = {"exception.type": "Declined", "exception.message": "card declined 42"}
        events = [SpanEvent("exception", int(end * MS), exception)] if origin else []
        spans.append(
            Span(
                tid,
                span_id,
                parent.span_id if parent else None,
                node.service,
                node.op,
                int(at * MS),
                int(end * MS),
                kind,
                error=failed,
                events=events,
            )
        )
        return end, failed

    def serve_child(node: Node, at: float, client_id: str, trace_id: str) -> tuple[float, bool]:
        parent = Span(trace_id, client_id, None, "", "", 0, 0)
        return serve(node, at, parent)

    serve(shop(), start_ms, None)
    return spans


def window(
    n: int,
    fault: Fault | None = None,
    *,
    seed: int = 1,
    start_ms: float = 1.7e12,
    every_ms: float = 100.0,
    internal: bool = False,
) -> list[list[Span]]:
    """``n`` traces, one every ``every_ms``, all with the same fault (or none)."""
    rnd = random.Random(seed)
    return [trace(rnd, start_ms + i * every_ms, fault, internal=internal) for i in range(n)]


def to_otlp_json(traces: list[list[Span]]) -> dict[str, object]:
    """The traces as one OTLP/JSON ``ExportTraceServiceRequest``, a resource per service."""
    by_service: dict[str, list[dict[str, object]]] = {}
    for t in traces:
        for s in t:
            doc: dict[str, object] = {
                "traceId": s.trace_id,
                "spanId": s.span_id,
                "name": s.name,
                "kind": int(s.kind),
                "startTimeUnixNano": str(s.start_ns),
                "endTimeUnixNano": str(s.end_ns),
                "attributes": [
                    {"key": k, "value": {"stringValue": str(v)}} for k, v in s.attributes.items()
                ],
                "events": [
                    {
                        "name": e.name,
                        "timeUnixNano": str(e.time_ns),
                        "attributes": [
                            {"key": k, "value": {"stringValue": str(v)}}
                            for k, v in e.attributes.items()
                        ],
                    }
                    for e in s.events
                ],
                "status": {"code": 2} if s.error else {},
            }
            if s.parent_id:
                doc["parentSpanId"] = s.parent_id
            by_service.setdefault(s.service, []).append(doc)
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
                },
                "scopeSpans": [{"spans": spans}],
            }
            for service, spans in by_service.items()
        ]
    }
