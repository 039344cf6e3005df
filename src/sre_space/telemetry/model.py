"""The one internal span model every source decodes into.

A :class:`Span` decoded from OTLP protobuf keeps a reference to its wire message
and reads ``attributes``, ``events`` and ``status_message`` from it on first
use: the hot path (store, detectors) needs only ids, names, times, kind and the
error flag, and building a dict per span for every attribute would cost more
than parsing the protobuf itself. Spans built any other way (JSON, Jaeger,
tests) carry plain values. Both behave the same to a reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Protocol


class SpanKind(IntEnum):
    """OTLP's span kinds (numbering of the proto enum)."""

    UNSPECIFIED = 0
    INTERNAL = 1
    SERVER = 2
    CLIENT = 3
    PRODUCER = 4
    CONSUMER = 5


@dataclass(slots=True)
class SpanEvent:
    name: str
    time_ns: int
    attributes: dict[str, Any] = field(default_factory=dict)


class WireSpans(Protocol):
    """Where a decoder left spans it has not fully read (``otlp.WireScope`` is one).

    The decoder that built the spans reads their lazy fields, so this model
    never imports a wire format.
    """

    def __getitem__(self, idx: int) -> Any: ...  # the wire message of span ``idx``

    def attributes(self, idx: int) -> dict[str, Any]: ...

    def events(self, idx: int) -> list[SpanEvent]: ...


_FIELDS = (
    "trace_id",
    "span_id",
    "parent_id",
    "service",
    "name",
    "start_ns",
    "end_ns",
    "kind",
    "error",
    "status_message",
    "attributes",
    "events",
    "resource",
)


class Span:
    """A span: ids are lowercase hex (32 and 16 digits), times Unix nanoseconds.

    Constructed like a dataclass with the fields in ``_FIELDS`` order; compares
    and prints by value.
    """

    __slots__ = (
        "_attributes",
        "_events",
        "_idx",
        "_raw",
        "_status_message",
        "end_ns",
        "error",
        "kind",
        "name",
        "parent_id",
        "resource",
        "service",
        "span_id",
        "start_ns",
        "trace_id",
    )

    _status_message: str | None
    _attributes: dict[str, Any] | None
    _events: list[SpanEvent] | None
    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    start_ns: int
    end_ns: int
    kind: SpanKind
    error: bool
    resource: dict[str, Any]

    def __init__(
        self,
        trace_id: str,
        span_id: str,
        parent_id: str | None,
        service: str,
        name: str,
        start_ns: int,
        end_ns: int,
        kind: SpanKind = SpanKind.INTERNAL,
        error: bool = False,
        status_message: str | None = "",
        attributes: dict[str, Any] | None = None,
        events: list[SpanEvent] | None = None,
        resource: dict[str, Any] | None = None,
        raw: WireSpans | None = None,
        idx: int = 0,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self.parent_id = parent_id
        self.service = service
        self.name = name
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.kind = kind
        self.error = error
        self.resource = {} if resource is None else resource
        self._raw = raw  # the wire spans' container: the message is raw[idx]
        self._idx = idx
        if raw is None:
            self._status_message = status_message or ""
            self._attributes = {} if attributes is None else attributes
            self._events = [] if events is None else events
        else:
            self._status_message = status_message
            self._attributes = attributes
            self._events = events

    # --- lazily decoded fields ------------------------------------------------

    # Each reader takes ``_raw`` once: another thread may read the last lazy
    # field meanwhile and let go of it, after which every field is set.

    @property
    def attributes(self) -> dict[str, Any]:
        attrs = self._attributes
        if attrs is None:
            raw = self._raw
            if raw is None:
                return self._attributes or {}
            attrs = self._attributes = raw.attributes(self._idx)
            self._release()
        return attrs

    @attributes.setter
    def attributes(self, value: dict[str, Any]) -> None:
        self._attributes = value
        self._release()

    @property
    def events(self) -> list[SpanEvent]:
        events = self._events
        if events is None:
            raw = self._raw
            if raw is None:
                return self._events or []
            events = self._events = raw.events(self._idx)
            self._release()
        return events

    @events.setter
    def events(self, value: list[SpanEvent]) -> None:
        self._events = value
        self._release()

    @property
    def status_message(self) -> str:
        msg = self._status_message
        if msg is None:
            raw = self._raw
            if raw is None:
                return self._status_message or ""
            msg = self._status_message = str(raw[self._idx].status.message)
            self._release()
        return msg

    @status_message.setter
    def status_message(self, value: str) -> None:
        self._status_message = value
        self._release()

    def _release(self) -> None:
        """Drop the wire message once everything it held has been read."""
        if (
            self._raw is not None
            and self._attributes is not None
            and self._events is not None
            and self._status_message is not None
        ):
            self._raw = None

    def materialize(self) -> Span:
        """Read every lazy field now (and let go of the wire message)."""
        _ = self.attributes, self.events, self.status_message
        return self

    # --- value semantics --------------------------------------------------------

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in _FIELDS)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Span):
            return NotImplemented
        return self._values() == other._values()

    __hash__ = None  # type: ignore[assignment]  # mutable, like the dataclass it replaces

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in _FIELDS)
        return f"Span({inner})"

    def __reduce__(self) -> tuple[type[Span], tuple[Any, ...]]:
        return (Span, self._values())

    def to_dict(self) -> dict[str, Any]:
        """Plain values (what ``dataclasses.asdict`` gave for the old dataclass)."""
        doc = {name: getattr(self, name) for name in _FIELDS}
        doc["kind"] = int(self.kind)
        doc["events"] = [
            {"name": e.name, "time_ns": e.time_ns, "attributes": dict(e.attributes)}
            for e in self.events
        ]
        return doc

    # --- derived ------------------------------------------------------------------

    @property
    def duration_ms(self) -> float:
        return max(0, self.end_ns - self.start_ns) / 1e6

    @property
    def exception_message(self) -> str:
        """The recorded exception (OTel semantic conventions), else the status message."""
        for ev in self.events:
            if ev.name == "exception":
                typ = str(ev.attributes.get("exception.type", ""))
                msg = str(ev.attributes.get("exception.message", ""))
                return f"{typ}: {msg}" if typ and msg else (msg or typ)
        return self.status_message

    @property
    def http_status(self) -> int | None:
        for key in ("http.response.status_code", "http.status_code"):
            value = self.attributes.get(key)
            if value is not None:
                try:
                    return int(value)
                except (TypeError, ValueError):
                    return None
        return None
