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
import math
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


# --- generated systems ---------------------------------------------------------------
#
# Systems of any size, for the benchmark and for tests of the method's reach:
# services in layers (a call goes to a later layer, so there are no cycles),
# each with a few operations; an operation does some own work, may run
# in-process child spans (controller -> repository -> SQL, as Java agents
# record them) and calls operations of other services: in sequence, in
# parallel (fan-out), asynchronously (a message its caller does not wait for),
# through a cache (called only on a miss), with retries on failure.
#
# A fault of every class can be put on any service; what each does to spans is
# what the real fault does (see ``SystemFault``). A case may carry span kinds
# and status codes, or neither (only names, times and parents).

FAULT_KINDS = (
    "saturation", "timeout", "unreachable", "error", "latency", "network", "cpu", "memory",
)  # fmt: skip
# "network": every packet leaving the service waits (netem on its interface): its
# answers reach its callers late and its own calls out leave late; its spans,
# and its callees' spans, look as before. The class to name is latency.
EXPECTED_CLASS = {"network": "latency"}
CALLER_TIMEOUT_MS = 1000.0
POOL_TIMEOUT_MS = 300.0
Failure = tuple[str, str] | None  # (exception.type, exception.message) a caller sees
UNREACHABLE = ("httpx.ConnectError", "[Errno 111] Connection refused")
TIMEOUT = ("httpx.ReadTimeout", "timed out")
HTTP_500 = ("httpx.HTTPStatusError", "Server error '500 Internal Server Error'")


@dataclass
class Invocation:
    op: Operation
    mode: str = "sync"  # sync | parallel | async
    probability: float = 1.0  # < 1: behind a cache, called on a miss only
    retries: int = 0


@dataclass
class Operation:
    service: str
    name: str
    own_ms: float
    spread: float  # lognormal sigma of its own work
    inner: list[str] = field(default_factory=list)  # in-process child spans, nested
    calls: list[Invocation] = field(default_factory=list)


@dataclass
class System:
    services: list[str]
    entries: list[Operation]
    operations: list[Operation]


@dataclass
class SystemFault:
    """A fault at ``service``, active in a share of its requests (``rate``)."""

    kind: str
    service: str
    rate: float = 0.6
    delay_ms: float = 300.0  # latency: the added wait
    factor: float = 3.0  # cpu: own work multiplied
    on_the_way_in: bool = True  # latency: a wait before its span starts (else in its own work)
    operation: str | None = None  # latency in its own work: only this operation (None: all)


@dataclass
class Style:
    kinds: bool = True  # SERVER/CLIENT kinds on spans (else all UNSPECIFIED)
    status: bool = True  # error status, HTTP status codes and exception events
    inner: bool = True  # in-process spans (controller, repository, SQL)
    background_errors: float = 0.002  # a request anywhere fails on its own now and then
    drift: float = 1.0  # every own work multiplied (load a little different from before)


def random_system(rnd: random.Random, n_services: int) -> System:
    """A layered system of ``n_services`` services (the first is the entry)."""
    names = [f"svc-{i:02d}" for i in range(n_services)]
    depth = max(2, min(6, round(math.log2(n_services)) + 1))
    layer_of = [0, *sorted(rnd.randint(1, depth - 1) for _ in range(n_services - 1))]
    ops: dict[str, list[Operation]] = {}
    for i, service in enumerate(names):
        k = 3 if i == 0 else rnd.randint(1, 3)
        ops[service] = []
        for j in range(k):
            resource = rnd.choice(["order", "user", "item", "price", "route", "seat", "station"])
            inner = []
            if rnd.random() < 0.7:
                cls = resource.capitalize()
                inner = [f"{cls}Controller.handle{j}", f"{cls}Repository.find{j}"]
                if rnd.random() < 0.6:
                    inner.append(f"SELECT {resource}")
            ops[service].append(
                Operation(
                    service,
                    f"{rnd.choice(['GET', 'POST'])} /api/{resource}/{j}",
                    rnd.uniform(1.0, 15.0),
                    rnd.uniform(0.1, 0.4),
                    inner,
                )
            )
    # every operation is called by one that is itself reached, in an earlier layer
    reached = {0: list(ops[names[0]])}
    for i in range(1, n_services):
        earlier = [op for s, got in reached.items() if layer_of[s] < layer_of[i] for op in got]
        reached[i] = []
        for op in ops[names[i]]:
            rnd.choice(earlier).calls.append(Invocation(op))
            reached[i].append(op)
    # and some more calls, fan-out included
    for i in range(n_services):
        later = [s for s in range(n_services) if layer_of[s] > layer_of[i]]
        for op in ops[names[i]]:
            while later and len(op.calls) < 4 and rnd.random() < 0.35:
                op.calls.append(Invocation(rnd.choice(ops[names[rnd.choice(later)]])))
    for service_ops in ops.values():
        for op in service_ops:
            for inv in op.calls:
                roll = rnd.random()
                inv.mode = "parallel" if roll < 0.2 else "async" if roll < 0.3 else "sync"
                if rnd.random() < 0.15:
                    inv.probability = rnd.uniform(0.3, 0.8)  # a cache in front of it
                if rnd.random() < 0.3:
                    inv.retries = rnd.randint(1, 2)
    all_ops = [op for service_ops in ops.values() for op in service_ops]
    return System(names, ops[names[0]], all_ops)


class _Gen:
    """One trace of a generated system."""

    def __init__(self, rnd: random.Random, fault: SystemFault | None, style: Style) -> None:
        self.rnd, self.fault, self.style = rnd, fault, style
        self.tid = f"{rnd.getrandbits(128):032x}"
        self.spans: list[Span] = []

    def _id(self) -> str:
        return f"{self.rnd.getrandbits(64):016x}"

    def _hit(self, service: str) -> bool:
        f = self.fault
        return f is not None and f.service == service and self.rnd.random() < f.rate

    def span(
        self,
        span_id: str,
        parent: str | None,
        service: str,
        name: str,
        start: float,
        end: float,
        kind: SpanKind,
        *,
        error: bool = False,
        exception: Failure = None,
        status: int | None = None,
        address: str | None = None,
    ) -> None:
        style = self.style
        attrs: dict[str, object] = {}
        if address is not None and style.kinds:  # an HTTP client's semconv attributes
            attrs["server.address"], attrs["server.port"] = address, 8080
        events: list[SpanEvent] = []
        if style.status:
            if status is not None:
                attrs["http.response.status_code"] = status
            if exception is not None:
                events.append(
                    SpanEvent(
                        "exception",
                        int(end * MS),
                        {"exception.type": exception[0], "exception.message": exception[1]},
                    )
                )
        self.spans.append(
            Span(
                self.tid,
                span_id,
                parent,
                service,
                name,
                int(start * MS),
                int(end * MS),
                kind if style.kinds else SpanKind.UNSPECIFIED,
                error=error and style.status,
                attributes=attrs,
                events=events,
            )
        )

    def own(self, op: Operation, hit: bool) -> float:
        ms = op.own_ms * math.exp(self.rnd.gauss(0.0, op.spread)) * self.style.drift
        f = self.fault
        if f is not None and f.service == op.service:
            if f.kind == "cpu":
                ms *= f.factor * self.rnd.uniform(0.8, 1.2)
            elif f.kind == "memory" and hit:
                ms += self.rnd.expovariate(1 / 150.0)  # collection pauses
            elif (
                f.kind == "latency"
                and hit
                and not f.on_the_way_in
                and f.operation in (None, op.name)
            ):
                ms += f.delay_ms * self.rnd.uniform(0.8, 1.2)
        return ms

    def serve(self, op: Operation, at: float, parent: str | None) -> tuple[float, Failure]:
        """Serve ``op`` from ``at`` (its caller's send): (end as the caller sees it, failure)."""
        f, rnd = self.fault, self.rnd
        hit = self._hit(op.service)
        kind = f.kind if f is not None and hit else ""
        if kind == "unreachable":  # nothing listens: refused at once, no span of its own
            return at + rnd.uniform(0.5, 2.0), UNREACHABLE
        if kind == "timeout":  # it took the request and never answered: no span is ever sent
            return at + CALLER_TIMEOUT_MS, TIMEOUT
        start = at + rnd.uniform(0.2, 1.0)
        if kind == "latency" and f is not None and f.on_the_way_in:
            start += f.delay_ms * rnd.uniform(0.8, 1.2)
        span_id = self._id()
        own = self.own(op, hit)
        t = start + own / 2
        failure: Failure = None
        if kind == "saturation" and f is not None:  # waits for a pooled connection
            if rnd.random() < 0.5:
                t += POOL_TIMEOUT_MS
                failure = (
                    "sqlalchemy.exc.TimeoutError",
                    "QueuePool limit of size 10 overflow 0 reached, connection timed out, "
                    "timeout 0.30",
                )
            else:
                t += rnd.uniform(0.3, 0.9) * POOL_TIMEOUT_MS
        elif kind == "memory" and rnd.random() < 0.5:
            failure = ("MemoryError", "")
        elif kind == "error":
            failure = ("KeyError", f"'sku-{rnd.randint(1, 999)}'")
        elif rnd.random() < self.style.background_errors:
            failure = ("ValueError", "invalid literal for int() with base 10: ''")
        # Java-style: a controller span holds the calls; a repository (and its
        # SQL) runs before them. A failing handler stops where it failed.
        inner = op.inner if self.style.inner else []
        holder = self._id() if inner else span_id
        if inner[1:] and failure is None:
            self._nested(op.service, inner[1:], holder, start + 0.1, t - 0.1)
        if failure is None:
            t, failure = self._calls(op, holder, t)
            end = t + own / 2
        else:
            end = t + own / 20  # it stops at the exception
        if inner:
            self.span(holder, span_id, op.service, inner[0], start + 0.05, end - 0.05,
                      SpanKind.INTERNAL)  # fmt: skip
        self.span(
            span_id, parent, op.service, op.name, start, end, SpanKind.SERVER,
            error=failure is not None, exception=failure,
            status=500 if failure else 200,
        )  # fmt: skip
        back = end + rnd.uniform(0.2, 1.0)
        if kind == "network" and f is not None:  # its answer leaves late
            back += f.delay_ms * rnd.uniform(0.8, 1.2)
        return back, (HTTP_500 if failure else None)

    def _nested(self, service: str, names: list[str], parent: str, lo: float, hi: float) -> None:
        for name in names:  # each a little inside the one above
            width = hi - lo
            lo, hi = lo + 0.05 * width, hi - 0.05 * width
            sid = self._id()
            self.span(sid, parent, service, name, lo, hi, SpanKind.INTERNAL)
            parent = sid

    def _calls(self, op: Operation, span_id: str, t: float) -> tuple[float, Failure]:
        """Its calls out, from ``t``: (when the last one it waits for ended, a failure)."""
        fan_end = t
        for inv in op.calls:
            if self.rnd.random() > inv.probability:
                continue  # a cache hit
            end, failure = self._invoke(op, inv, span_id, t)
            if inv.mode == "parallel":
                fan_end = max(fan_end, end)
            elif inv.mode == "sync":
                t = max(end, fan_end)
            if failure is not None and self.rnd.random() < 0.8:  # it gives up and fails too
                return max(t, fan_end), failure
        return max(t, fan_end), None

    def _invoke(
        self, op: Operation, inv: Invocation, parent: str, at: float
    ) -> tuple[float, Failure]:
        """A call out (with retries): a CLIENT span in the caller, the callee's under it."""
        t = at
        failure: Failure = None
        for _ in range(inv.retries + 1):
            client = self._id()
            n_before = len(self.spans)
            send = t + self.rnd.uniform(0.1, 0.5)
            f = self.fault
            if f is not None and f.kind == "network" and self._hit(op.service):
                send += f.delay_ms * self.rnd.uniform(0.8, 1.2)  # the request leaves late
            if inv.mode == "async":
                self.span(client, parent, op.service, f"publish {inv.op.name}", t, send,
                          SpanKind.PRODUCER)  # fmt: skip
                self._consume(inv.op, send, client)
                return send, None
            end, failure = self.serve(inv.op, send, client)
            end = max(end, send)
            self.span(client, parent, op.service, f"{inv.op.name.split(' ')[0]} {inv.op.service}",
                      t, end, SpanKind.CLIENT, error=failure is not None,
                      exception=failure if failure is not HTTP_500 else None,
                      status=None if failure is not None and failure is not HTTP_500
                      else 500 if failure else 200,
                      address=f"{inv.op.service}.internal")  # fmt: skip
            self.spans.insert(n_before, self.spans.pop())  # the client before its callee's
            t = end
            if failure is None:
                break
        return t, failure

    def _consume(self, op: Operation, at: float, producer: str) -> None:
        consumer = self._id()
        start = at + self.rnd.uniform(1.0, 5.0)
        end, _ = self.serve(op, start, consumer)
        self.span(consumer, producer, op.service, f"consume {op.name}", start, max(start, end),
                  SpanKind.CONSUMER)  # fmt: skip


def system_trace(
    rnd: random.Random,
    system: System,
    start_ms: float,
    fault: SystemFault | None = None,
    style: Style | None = None,
) -> list[Span]:
    gen = _Gen(rnd, fault, style or Style())
    entry = rnd.choice(system.entries)
    gen.serve(entry, start_ms, None)
    return gen.spans


def system_window(
    rnd: random.Random,
    system: System,
    n: int,
    *,
    start_ms: float = 1.7e12,
    every_ms: float = 50.0,
    fault: SystemFault | None = None,
    style: Style | None = None,
) -> list[list[Span]]:
    return [
        t
        for i in range(n)
        if (t := system_trace(rnd, system, start_ms + i * every_ms, fault, style))
    ]
