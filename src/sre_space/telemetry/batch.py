"""Spans as the hot path reads them: one row per span, a :class:`Span` only on demand.

Profiling the intake (``docs/performance.md``) showed that building a
:class:`Span` object per span cost more than parsing the protobuf, and the
store and the detectors read only a handful of its fields. So a decoder
leaves each span as a *row*: a tuple of those fields, made in one
bytecode and one allocation, that the store indexes and the detectors read
directly. The row also says where the rest of the span is (the wire message
the lazy fields come from). Whoever builds a :class:`Span` from a row keeps
it (the store puts it in the row's place; a batch remembers it), so every
reader of the same holder gets the same object.

Row layout (indices ``TRACE_ID`` ... ``SPAN``)::

    [trace_id, span_id, parent_id, service, name, start_ns, end_ns,
     kind, error, resource, wire, idx, span]

``kind`` is the kind's number (``int(SpanKind)``). ``resource`` is the
resource's dict, or its keys and values in a tuple (:func:`resource_key`; the
span gets the one dict of those). ``wire`` and ``idx`` say where the rest of
the span is, the model's ``raw`` and ``idx``: a reader and the span's index
in it; for a span decoded from protobuf bytes, those bytes and the span's
place among all spans of the request (read through
:class:`~sre_space.telemetry.otlp_lazy.WireRequest`); ``None`` and 0 for a
span that was built as an object. ``span`` is that object, else ``None``.

Why bytes and a shared tuple, not a dict and a reader object: a decoded row
then holds only strings, numbers, ``None`` and a tuple the collector already
let go of, so the garbage collector stops tracking it at its first pass
instead of walking every held span again in each older generation (about a
tenth of the intake's time went there). A dict or any other object in a
tuple keeps it tracked.

:class:`SpanBatch` is a sequence of spans over rows: what a decoder returns
and the intake hands the store. Reading it as a sequence builds spans; the
hot path reads ``rows``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any, overload

from sre_space.telemetry.model import Span, SpanKind, WireSpans
from sre_space.telemetry.otlp_lazy import WireRequest

Row = tuple[Any, ...]

TRACE_ID, SPAN_ID, PARENT_ID, SERVICE, NAME, START, END, KIND, ERROR = range(9)
RESOURCE, WIRE, IDX, SPAN = 9, 10, 11, 12

_KINDS = tuple(SpanKind)

# One dict per distinct resource, by its keys and values: what a built span's
# ``resource`` is (the spans of a resource share it, as they did when rows held
# the dict). Bounded like the span names in ``otlp``: past the bound it starts
# over, and spans built after that get a new dict of the same items.
Flat = tuple[Any, ...]  # key, value, key, value, ...
_RESOURCES: dict[Flat, tuple[Flat, dict[str, Any]]] = {}
_MAX_RESOURCES = 4_096


def resource_key(resource: dict[str, Any]) -> Flat | dict[str, Any]:
    """What a row holds for ``resource``: its keys and values in one flat tuple,
    or the dict itself when a value cannot be hashed (a list or map attribute;
    such rows stay tracked)."""
    flat = tuple(chain.from_iterable(resource.items()))
    try:
        known = _RESOURCES.get(flat)
    except TypeError:
        return resource
    if known is None:
        known = _remember(flat, resource)
    # The first tuple of these items: the collector has let go of it by now,
    # where a new one would keep this request's rows tracked a pass longer.
    return known[0]


def _resource(held: Flat | dict[str, Any]) -> dict[str, Any]:
    if type(held) is not tuple:
        return held  # type: ignore[return-value]  # the dict
    known = _RESOURCES.get(held)
    if known is None:
        known = _remember(held, dict(zip(held[::2], held[1::2], strict=True)))
    return known[1]


def _remember(flat: Flat, resource: dict[str, Any]) -> tuple[Flat, dict[str, Any]]:
    if len(_RESOURCES) >= _MAX_RESOURCES:
        _RESOURCES.clear()
    known = _RESOURCES[flat] = (flat, resource)
    return known


def row_of(span: Span) -> Row:
    """The row of a span that already exists (JSON, Jaeger, tests): it keeps the span."""
    return (
        span.trace_id,
        span.span_id,
        span.parent_id,
        span.service,
        span.name,
        span.start_ns,
        span.end_ns,
        int(span.kind),
        span.error,
        span.resource,
        None,
        0,
        span,
    )


def build(row: Row) -> Span:
    """The row's span: the one it was made from, else a new one (keep it)."""
    span: Span | None = row[SPAN]
    if span is None:
        wire = row[WIRE]
        raw: WireSpans | None = WireRequest(wire) if type(wire) is bytes else wire
        span = Span(
            row[TRACE_ID],
            row[SPAN_ID],
            row[PARENT_ID],
            row[SERVICE],
            row[NAME],
            row[START],
            row[END],
            _KINDS[row[KIND]],
            row[ERROR],
            None,
            None,
            None,
            _resource(row[RESOURCE]),
            raw,
            row[IDX],
        )
    return span


class SpanBatch(Sequence[Span]):
    """Spans decoded together, held as rows; a list of spans to anyone who reads it so."""

    __slots__ = ("_built", "rows")

    def __init__(self, spans: Iterable[Span] = (), rows: list[Row] | None = None) -> None:
        self.rows: list[Row] = [] if rows is None else rows
        self._built: dict[int, Span] = {}  # spans built from rows, by position
        if spans:
            self.rows.extend(row_of(s) for s in spans)

    @classmethod
    def of(cls, spans: Sequence[Span]) -> SpanBatch:
        """``spans`` as a batch (itself when it is one)."""
        return spans if isinstance(spans, SpanBatch) else cls(spans)

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, i: int) -> Span: ...

    @overload
    def __getitem__(self, i: slice) -> list[Span]: ...

    def __getitem__(self, i: int | slice) -> Span | list[Span]:
        if isinstance(i, slice):
            return [self._span(j) for j in range(len(self.rows))[i]]
        return self._span(range(len(self.rows))[i])  # a negative index counts from the end

    def _span(self, i: int) -> Span:
        span = self._built.get(i)
        if span is None:
            span = self._built[i] = build(self.rows[i])
        return span

    def __iter__(self) -> Iterator[Span]:
        for i in range(len(self.rows)):
            yield self._span(i)

    def append(self, span: Span) -> None:
        self.rows.append(row_of(span))

    def extend(self, spans: Iterable[Span]) -> None:
        if isinstance(spans, SpanBatch):
            offset = len(self.rows)
            self.rows.extend(spans.rows)
            self._built.update((offset + i, s) for i, s in spans._built.items())
        else:
            self.rows.extend(row_of(s) for s in spans)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (SpanBatch, list, tuple)):
            return len(self) == len(other) and list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable, like the list it stands for

    def __repr__(self) -> str:
        return f"SpanBatch({list(self)!r})"
