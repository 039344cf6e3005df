"""Lazy readers of decoded OTLP protobuf spans: where a span's wire message sits.

:func:`~sre_space.telemetry.otlp.decode_request` leaves each span's attributes,
events and status message on the wire: a span keeps a reader (the model's
``WireSpans``) and its index. :class:`ParsedScope` holds the parsed message;
:class:`WireRequest` holds only the request's bytes and re-parses them on
first read, through a small cache of recent parses (``_PARSED``). ``proto_kv``
and friends turn protobuf ``KeyValue`` lists into dicts. Moved out of :mod:`~sre_space.telemetry.otlp`, which re-exports them.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1 import trace_pb2

from sre_space.telemetry.model import SpanEvent

_EMPTY_SPAN = trace_pb2.Span()
log = logging.getLogger(__name__)


def _any_value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "string_value":
        return v.string_value
    if which == "int_value":
        return v.int_value
    if which == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return proto_kv(v.kvlist_value.values)
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def proto_kv(items: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in items}


def proto_attributes(raw: Any) -> dict[str, Any]:
    """A wire span's attributes as a dict."""
    return proto_kv(raw.attributes)


def proto_events(raw: Any) -> list[SpanEvent]:
    """A wire span's events."""
    return [SpanEvent(e.name, e.time_unix_nano, proto_kv(e.attributes)) for e in raw.events]


class _ScopeReader:
    """Reads a lazy span's fields for :class:`Span` (the model's ``WireSpans``)."""

    __slots__ = ()

    def __getitem__(self, idx: int) -> Any:
        raise NotImplementedError

    def attributes(self, idx: int) -> dict[str, Any]:
        return proto_attributes(self[idx])

    def events(self, idx: int) -> list[SpanEvent]:
        return proto_events(self[idx])


class ParsedScope(_ScopeReader):
    """A scope's spans kept as the parsed message (when the request's bytes are not kept)."""

    __slots__ = ("spans",)

    def __init__(self, spans: Any) -> None:
        self.spans = spans

    def __getitem__(self, idx: int) -> Any:
        return self.spans[idx]


class _Parsed:
    """Recently re-parsed requests (up to ``max_wire_bytes`` of their wire size),
    so reading many spans of one batch parses it once.

    Keyed by the identity of the request's bytes (hashing them would read them
    all); an entry holds the bytes, so the id is not reused while it is here.
    """

    def __init__(self, max_wire_bytes: int = 8 << 20) -> None:
        self.max_wire_bytes = max_wire_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[int, tuple[bytes, ExportTraceServiceRequest]] = OrderedDict()
        self._bytes = 0

    def get(self, body: bytes) -> ExportTraceServiceRequest:
        key = id(body)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0] is body:
                self._items.move_to_end(key)
                return hit[1]
        msg = ExportTraceServiceRequest()
        try:
            msg.ParseFromString(body)
        except (DecodeError, RuntimeError):
            # The reduced schema skipped fields the full one cannot read (a
            # corrupt attribute): those spans read as having none.
            log.warning("otlp: a request's attributes cannot be read; its spans show none")
            msg = ExportTraceServiceRequest()
        with self._lock:
            if key not in self._items:
                self._items[key] = (body, msg)
                self._bytes += len(body)
            while self._bytes > self.max_wire_bytes and len(self._items) > 1:
                _, (old, _) = self._items.popitem(last=False)
                self._bytes -= len(old)
        return msg


_PARSED = _Parsed()


class WireRequest(_ScopeReader):
    """The spans of one export request, kept as its bytes; ``idx`` counts them
    across all its scopes, in wire order.

    A parsed upb message costs about four times its wire size; the spans keep
    only the bytes and where they sit in them, and a reader who asks for an
    attribute re-parses the request (cached for the next few reads). A row
    holds just the bytes and the index (see :mod:`~sre_space.telemetry.batch`).
    """

    __slots__ = ("body",)

    def __init__(self, body: bytes) -> None:
        self.body = body

    def __getitem__(self, idx: int) -> Any:
        for rs in _PARSED.get(self.body).resource_spans:
            for ss in rs.scope_spans:
                spans = ss.spans
                if idx < len(spans):
                    return spans[idx]
                idx -= len(spans)
        return _EMPTY_SPAN  # the full parse failed (see _Parsed.get)
