"""A reduced OTLP trace schema: only the span fields the hot path reads.

upb builds every field of a parsed message; for a typical span that is a
dozen ``KeyValue``/``AnyValue`` messages of attributes that neither the
store nor the detectors read (the profile in ``docs/performance.md``: the
full parse was about three times the cost of this one). ``LiteRequest``
has the wire shape of ``ExportTraceServiceRequest`` (and ``TracesData``)
with the same field numbers and names, but declares only what the intake
needs per span: ids, name, kind, times, and the status as bytes (read with
``status_code`` when there is one). upb skips the rest
as unknown fields (kept as bytes, never built). Attributes, events and the
status message are read later, on demand, from a full parse of the same
bytes (``otlp.WireRequest``).

The descriptor is built here rather than generated from a ``.proto`` so no
build step is needed.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from opentelemetry.proto.resource.v1 import resource_pb2

_F = descriptor_pb2.FieldDescriptorProto
_ONE, _MANY = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
_PACKAGE = "sre_space.otlp_lite"


def _file() -> descriptor_pb2.FileDescriptorProto:
    fd = descriptor_pb2.FileDescriptorProto(
        name="sre_space/otlp_lite.proto", package=_PACKAGE, syntax="proto3"
    )
    fd.dependency.append(resource_pb2.DESCRIPTOR.name)

    def message(name: str, *fields: tuple[str, int, int, int, str]) -> None:
        m = fd.message_type.add(name=name)
        for field, number, typ, label, type_name in fields:
            f = m.field.add(name=field, number=number, type=typ, label=label)
            if type_name:
                f.type_name = type_name

    # Field numbers as in opentelemetry/proto/trace/v1/trace.proto.
    message("Status", ("code", 3, _F.TYPE_INT32, _ONE, ""))  # an enum on the wire: a varint
    message(
        "Span",
        ("trace_id", 1, _F.TYPE_BYTES, _ONE, ""),
        ("span_id", 2, _F.TYPE_BYTES, _ONE, ""),
        ("parent_span_id", 4, _F.TYPE_BYTES, _ONE, ""),
        # bytes, not string: the few distinct names are decoded once each
        # (``otlp._name``) instead of once per span.
        ("name", 5, _F.TYPE_BYTES, _ONE, ""),
        ("kind", 6, _F.TYPE_INT32, _ONE, ""),  # an open enum: int32 reads it alike
        ("start_time_unix_nano", 7, _F.TYPE_FIXED64, _ONE, ""),
        ("end_time_unix_nano", 8, _F.TYPE_FIXED64, _ONE, ""),
        # The Status message's bytes: reading a bytes field costs a third of
        # reading a submessage, and nearly every span has none (b"").
        ("status", 15, _F.TYPE_BYTES, _ONE, ""),
    )
    message("ScopeSpans", ("spans", 2, _F.TYPE_MESSAGE, _MANY, f".{_PACKAGE}.Span"))
    message(
        "ResourceSpans",
        ("resource", 1, _F.TYPE_MESSAGE, _ONE, ".opentelemetry.proto.resource.v1.Resource"),
        ("scope_spans", 2, _F.TYPE_MESSAGE, _MANY, f".{_PACKAGE}.ScopeSpans"),
    )
    message("Request", ("resource_spans", 1, _F.TYPE_MESSAGE, _MANY, f".{_PACKAGE}.ResourceSpans"))
    return fd


def _request_class(name: str) -> Any:
    pool = descriptor_pool.Default()
    try:
        desc = pool.FindMessageTypeByName(name)
    except KeyError:
        pool.Add(_file())
        desc = pool.FindMessageTypeByName(name)
    return message_factory.GetMessageClass(desc)


LiteRequest: Any = _request_class(f"{_PACKAGE}.Request")
LiteStatus: Any = _request_class(f"{_PACKAGE}.Status")


def status_code(raw: bytes) -> int:
    """The ``code`` of a Status message's bytes (0 when they cannot be read)."""
    status = LiteStatus()
    try:
        status.ParseFromString(raw)
    except Exception:  # the span stays; only its status is unreadable
        return 0
    return int(status.code)
