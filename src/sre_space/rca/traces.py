"""Trace trees as the localiser reads them: calls, hops, self time, shape.

Every span becomes a :class:`Call`. A call is an *exit* (a hop to another
service) when its kind says so (CLIENT, PRODUCER) or when its children run in
another service: real instrumentations often mark every span INTERNAL, and
only the tree tells a call from local work. An exit's self time is the *gap*:
time the caller waited that the callee's own span does not cover (network,
the callee's accept queue, or the caller's own scheduling).

Spans are de-duplicated by (trace id, span id): exporters retry, and a span
sent twice must not count twice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import pairwise

from sre_space.telemetry.model import Span, SpanKind

OpKey = tuple[str, str]  # (service, span name)
Shape = frozenset[OpKey]  # the distinct operations a call made, whatever their count
Step = tuple[OpKey, OpKey]  # (previous child call or START, next child call or END)
START: OpKey = ("", "^")
END: OpKey = ("", "$")

EXIT_KINDS = frozenset({SpanKind.CLIENT, SpanKind.PRODUCER})
# A 4xx answer is the callee refusing the request as designed (a wrong password,
# a missing item): HTTP semantic conventions fail the client span, not the
# server's. Only a timeout (408) or "too many requests" (429) says the callee
# is in trouble.
CALLEE_TROUBLE_4XX = frozenset({408, 429})


# A framework that hands a failed request to its error handler records the
# handler as a span of its own: Spring Boot's default error controller, named
# Class.method by OpenTelemetry's Java agent. Where spans carry no status, it
# is the sign that the request failed; it is no call the code chose to make.
ERROR_DISPATCH = frozenset({"BasicErrorController.error", "BasicErrorController.errorHtml"})


def failed(span: Span) -> bool:
    """Whether a span counts as a failure: ERROR, unless a callee refused a request."""
    if not span.error or span.kind != SpanKind.CLIENT:
        return span.error or span.name in ERROR_DISPATCH
    status = span.http_status
    return status is None or not (400 <= status < 500 and status not in CALLEE_TROUBLE_4XX)


PEER_ATTRIBUTES = ("peer.service", "server.address", "net.peer.name", "db.system.name", "db.system")


@dataclass(slots=True)
class Call:
    """One span, with what the localiser needs to judge it."""

    span: Span
    key: OpKey
    self_ms: float
    exit: bool  # a call out of the service
    callee: str | None  # the service that answered (its span is a child here), if any
    callee_op: str | None  # that service's span name
    shape: Shape  # distinct child operations
    sequence: tuple[OpKey, ...]  # child operations in start order
    last_child: OpKey | None  # the child that finished last
    error_origin: bool  # failed, and none of its children failed
    entry_op: str  # the operation of its service this call ran in (the request it served)
    # who asked: the calling service and the request it served ("" at the root)
    context: str = ""
    visit: str = ""  # the span id of the span that entered its service: one visit there

    @property
    def service(self) -> str:
        return self.key[0]

    @property
    def step_key(self) -> OpKey:
        """The operation as its callers use it: what it calls, and in what order,
        depends on who asked (one service's request may reach it by several routes)."""
        if not self.context:
            return self.key
        return (self.key[0], f"{self.key[1]} <- {self.context}")

    def steps(self) -> list[Step]:
        """What it did first, after each child call, and last: START -> a -> b -> END."""
        seq = (START, *self.sequence, END)
        return list(pairwise(seq))


@dataclass(slots=True)
class TraceView:
    trace_id: str
    calls: list[Call]
    start_ns: int
    root_ms: float  # end-to-end: from the first span's start to the last span's end
    complete: bool = True  # no span whose parent is missing (a trace in flight, or cut)
    # services with spans whose parent is missing: they took a call and are still in it
    in_flight: frozenset[str] = frozenset()


def group(spans: Iterable[Span]) -> list[list[Span]]:
    """Spans grouped by trace id (first-seen order), duplicates dropped."""
    by_trace: dict[str, dict[str, Span]] = {}
    for s in spans:
        trace = by_trace.get(s.trace_id)
        if trace is None:
            trace = by_trace[s.trace_id] = {}
        trace.setdefault(s.span_id, s)
    return [list(t.values()) for t in by_trace.values()]


def peer_of(span: Span) -> str | None:
    """The callee an exit span names in its attributes, if any."""
    if span.kind not in EXIT_KINDS:
        return None
    attrs = span.attributes
    for key in PEER_ATTRIBUTES:
        value = attrs.get(key)
        if value:
            return str(value)
    return None


def peer_address(span: Span) -> str | None:
    """Where a call out went, by its attributes: ``host:port`` (or the URL's), if known.

    Instrumentations name client spans by method ("POST"), so one span name
    covers calls to several services; the address tells them apart, and the
    reference learns which service answers at it.
    """
    attrs = span.attributes
    host = attrs.get("server.address") or attrs.get("net.peer.name")
    port = attrs.get("server.port") or attrs.get("net.peer.port")
    if host:
        return f"{host}:{port}" if port else str(host)
    url = attrs.get("url.full") or attrs.get("http.url")
    if url:
        rest = str(url).split("://", 1)[-1]
        return rest.split("/", 1)[0] or None
    return None


_NO_SHAPE: Shape = frozenset()
# Tuples of plain ints: membership by int equality (C), not by Enum.__hash__ (Python).
_EXIT_KIND_VALUES = (int(SpanKind.CLIENT), int(SpanKind.PRODUCER))
_ENTRY_KIND_VALUES = (int(SpanKind.SERVER), int(SpanKind.CONSUMER))


def _start(span: Span) -> int:
    return span.start_ns


def view(trace: list[Span]) -> TraceView:
    """The calls of one trace (spans already de-duplicated, see :func:`group`).

    Walked top-down, so each span knows the request it served in its own
    service (``entry_op``): the nearest SERVER or CONSUMER ancestor in that
    service, or failing that (instrumentations that mark everything INTERNAL)
    the topmost ancestor still in it.
    """
    by_id = {s.span_id: s for s in trace}
    children: dict[str, list[Span]] = {}
    roots: list[Span] = []
    orphans: set[str] = set()
    complete = True
    for s in trace:
        pid = s.parent_id
        if pid and pid in by_id and pid != s.span_id:
            kids = children.get(pid)
            if kids is None:
                children[pid] = [s]
            else:
                kids.append(s)
        else:
            roots.append(s)
            if pid:
                complete = False
                orphans.add(s.service)
    calls: list[Call] = []
    exit_kinds, entry_kinds = _EXIT_KIND_VALUES, _ENTRY_KIND_VALUES
    # (span, the request it served, the span that entered its service: its
    # visit, and who asked: the calling service's request)
    stack: list[tuple[Span, str, str, str]] = [(r, r.name, r.span_id, "") for r in roots]
    waits: dict[str, list[tuple[int, int, str]]] = {}  # per visit, its answered calls out
    seen = 0
    while stack:
        s, entry, visit, context = stack.pop()
        seen += 1
        service = s.service
        start, end = s.start_ns, s.end_ns
        kids = children.get(s.span_id)
        callee: str | None = None
        callee_op: str | None = None
        last: Span | None = None
        failed_child = False
        if kids:
            if len(kids) > 1:
                kids.sort(key=_start)
            sequence = tuple([(c.service, c.name) for c in kids if c.name not in ERROR_DISPATCH])
            shape = frozenset(sequence)
            covered = 0
            cur_start = cur_end = start
            for c in kids:
                c_start, c_end = c.start_ns, c.end_ns
                if last is None or c_end > last.end_ns:
                    last = c
                if failed(c):
                    failed_child = True
                if c.service != service:
                    if callee is None:
                        callee, callee_op = c.service, c.name
                    stack.append((c, c.name, c.span_id, f"{service} {entry}"))
                else:
                    stack.append((c, c.name if c.kind in entry_kinds else entry, visit, context))
                # union of the children's intervals, clipped to the span
                c_start = c_start if c_start > start else start
                c_end = c_end if c_end < end else end
                if c_end <= c_start:
                    continue
                if c_start > cur_end:
                    covered += cur_end - cur_start
                    cur_start, cur_end = c_start, c_end
                elif c_end > cur_end:
                    cur_end = c_end
            covered += cur_end - cur_start
            self_ns = end - start - covered if end > start else 0
        else:
            shape = _NO_SHAPE
            sequence = ()
            self_ns = end - start if end > start else 0
        if callee is not None:
            waits.setdefault(visit, []).append((start, end, s.span_id))
        calls.append(
            Call(
                s,
                (service, s.name),
                self_ns / 1e6,
                callee is not None or s.kind in exit_kinds,
                callee,
                callee_op,
                shape,
                sequence,
                (last.service, last.name) if last is not None else None,
                failed(s) and not failed_child,
                entry,
                context,
                visit,
            )
        )
    if waits:
        _discount_waits(calls, children, waits)
    if seen < len(trace):  # a parent cycle: keep those spans, as their own roots
        done = {c.span.span_id for c in calls}
        for s in trace:
            if s.span_id not in done:
                calls.append(view([s]).calls[0])
    first = min(s.start_ns for s in trace)
    last_end = max(s.end_ns for s in trace)
    return TraceView(
        trace[0].trace_id,
        calls,
        first,
        max(0, last_end - first) / 1e6,
        complete,
        frozenset(orphans),
    )


def own_times(v: TraceView, calls_out: Callable[[Call], bool]) -> list[tuple[OpKey, float]]:
    """Per visit to a service: its entry operation and the time it worked on its own.

    A request's own time in a service is its spans' self time without the
    calls out (their time is a wait on someone else; ``calls_out`` says which
    calls are, where a call whose callee never answered has no child to say
    so). However the service's instrumentation nests its spans (a controller,
    a repository, a query, or one span), the sum is the same: a CPU-starved
    service is slower in it, whichever of its spans the slowness lands in.
    """
    own: dict[str, float] = {}
    entry: dict[str, OpKey] = {}
    for c in v.calls:
        if c.span.span_id == c.visit:
            entry[c.visit] = c.key
        if not calls_out(c):
            own[c.visit] = own.get(c.visit, 0.0) + c.self_ms
    return [(key, own.get(visit, 0.0)) for visit, key in entry.items()]


def _discount_waits(
    calls: list[Call], children: dict[str, list[Span]], waits: dict[str, list[tuple[int, int, str]]]
) -> None:
    """Time a service spent waiting on another service is not its own work.

    Most spans nest their calls out, so their children already account for the
    wait. Reactive and asynchronous handlers do not: Spring WebFlux's handler
    span, for one, has no children and lasts as long as the call out beside
    it, so its self time would be the callee's time. A span's self time is the
    part of it covered neither by its children nor by a call out of the same
    visit of its service that another service answered.
    """
    for c in calls:
        out = waits.get(c.visit)
        if not out or c.self_ms <= 0 or c.callee is not None:
            continue
        span = c.span
        start, end = span.start_ns, span.end_ns
        beside = [(a, b) for a, b, sid in out if sid != span.span_id and a < end and b > start]
        if beside:
            kids = [(k.start_ns, k.end_ns) for k in children.get(span.span_id, ())]
            c.self_ms = _uncovered(start, end, beside + kids) / 1e6


def _uncovered(start: int, end: int, intervals: list[tuple[int, int]]) -> int:
    """How much of [start, end] none of ``intervals`` covers."""
    covered = 0
    cur_start = cur_end = start
    for a, b in sorted(intervals):
        a, b = max(a, start), min(b, end)
        if b <= a:
            continue
        if a > cur_end:
            covered += cur_end - cur_start
            cur_start, cur_end = a, b
        elif b > cur_end:
            cur_end = b
    covered += cur_end - cur_start
    return max(0, end - start - covered)


def views(traces: Iterable[list[Span]], limit: int | None = None) -> list[TraceView]:
    """Views of traces (each de-duplicated), oldest first.

    ``limit``: at most this many, the most recent (a reference), chosen before
    any is built so that a large store costs little.
    """
    grouped = [t for t in group(s for trace in traces for s in trace) if t]
    starts = [min(s.start_ns for s in t) for t in grouped]
    order = sorted(range(len(grouped)), key=starts.__getitem__)
    if limit is not None and len(order) > limit:
        order = order[len(order) - limit :]
    return [view(grouped[i]) for i in order]
