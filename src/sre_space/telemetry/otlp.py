"""OTLP trace decoding (protobuf and JSON) into the internal span model.

OTLP/JSON differs from the proto3 JSON mapping in two ways the spec calls out:
trace and span ids are hex strings (not base64), and enum values are integers.
We accept both spellings of ids (hex in any case) and 64-bit numbers given as
strings, as real exporters send them.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Status

from sre_space.telemetry.model import Span, SpanEvent, SpanKind

_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16


class DecodeFailure(ValueError):
    """The payload as a whole could not be read (bad protobuf, bad JSON)."""


@dataclass
class Decoded:
    spans: list[Span] = field(default_factory=list)
    rejected: int = 0
    reasons: list[str] = field(default_factory=list)

    def reject(self, reason: str) -> None:
        self.rejected += 1
        if len(self.reasons) < 5:
            self.reasons.append(reason)


# --- protobuf ---------------------------------------------------------------


def _any_value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which is None:
        return None
    if which == "array_value":
        return [_any_value(x) for x in v.array_value.values]
    if which == "kvlist_value":
        return _kv(v.kvlist_value.values)
    if which == "bytes_value":
        return v.bytes_value.hex()
    return getattr(v, which)


def _kv(items: Iterable[KeyValue]) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in items}


def decode_protobuf(body: bytes) -> Decoded:
    req = ExportTraceServiceRequest()
    try:
        req.ParseFromString(body)
    except DecodeError as exc:
        raise DecodeFailure(f"invalid OTLP protobuf: {exc}") from None
    out = Decoded()
    for rs in req.resource_spans:
        resource = _kv(rs.resource.attributes)
        service = str(resource.get("service.name") or "unknown_service")
        for ss in rs.scope_spans:
            for s in ss.spans:
                trace_id = s.trace_id.hex()
                span_id = s.span_id.hex()
                if len(trace_id) != 32 or trace_id == _ZERO_TRACE:
                    out.reject("invalid trace_id")
                    continue
                if len(span_id) != 16 or span_id == _ZERO_SPAN:
                    out.reject("invalid span_id")
                    continue
                parent = s.parent_span_id.hex() or None
                out.spans.append(
                    Span(
                        trace_id=trace_id,
                        span_id=span_id,
                        parent_id=parent if parent != _ZERO_SPAN else None,
                        service=service,
                        name=s.name,
                        start_ns=s.start_time_unix_nano,
                        end_ns=s.end_time_unix_nano,
                        kind=SpanKind(s.kind) if 0 <= s.kind <= 5 else SpanKind.UNSPECIFIED,
                        error=s.status.code == Status.STATUS_CODE_ERROR,
                        status_message=s.status.message,
                        attributes=_kv(s.attributes),
                        events=[
                            SpanEvent(e.name, e.time_unix_nano, _kv(e.attributes)) for e in s.events
                        ],
                        resource=resource,
                    )
                )
    return out


# --- JSON -------------------------------------------------------------------


def _json_id(raw: Any, length: int) -> str | None:
    """Hex (any case) per OTLP/JSON; base64 as the proto3 mapping would write it."""
    if not isinstance(raw, str) or not raw:
        return None
    if len(raw) == length:
        try:
            bytes.fromhex(raw)
            return raw.lower()
        except ValueError:
            pass
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return None
    return data.hex() if len(data) * 2 == length else None


def _json_int(raw: Any) -> int:
    if isinstance(raw, bool):
        raise ValueError("boolean is not a number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        return int(raw)
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    raise ValueError(f"not an integer: {raw!r}")


def _json_value(v: Any) -> Any:
    if not isinstance(v, Mapping):
        return None
    if "stringValue" in v:
        return str(v["stringValue"])
    if "boolValue" in v:
        return bool(v["boolValue"])
    if "intValue" in v:
        return _json_int(v["intValue"])
    if "doubleValue" in v:
        return float(v["doubleValue"])
    if "arrayValue" in v:
        return [_json_value(x) for x in (v["arrayValue"] or {}).get("values", [])]
    if "kvlistValue" in v:
        return _json_kv((v["kvlistValue"] or {}).get("values", []))
    if "bytesValue" in v:
        return base64.b64decode(v["bytesValue"]).hex()
    return None


def _json_kv(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        str(kv["key"]): _json_value(kv.get("value"))
        for kv in items
        if isinstance(kv, Mapping) and "key" in kv
    }


_KIND_NAMES = {f"SPAN_KIND_{k.name}": k for k in SpanKind}


def _json_kind(raw: Any) -> SpanKind:
    if isinstance(raw, str):
        return _KIND_NAMES.get(raw, SpanKind.UNSPECIFIED)
    try:
        return SpanKind(_json_int(raw or 0))
    except ValueError:
        return SpanKind.UNSPECIFIED


def _json_status_error(status: Any) -> tuple[bool, str]:
    if not isinstance(status, Mapping):
        return False, ""
    code = status.get("code", 0)
    error = code in (2, "2", "STATUS_CODE_ERROR")
    return error, str(status.get("message", ""))


def decode_json(body: bytes | str | Mapping[str, Any]) -> Decoded:
    if isinstance(body, Mapping):
        doc: Any = body
    else:
        try:
            doc = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise DecodeFailure(f"invalid OTLP JSON: {exc}") from None
    if not isinstance(doc, Mapping) or not isinstance(doc.get("resourceSpans", []), list):
        raise DecodeFailure("invalid OTLP JSON: expected an object with resourceSpans")
    out = Decoded()
    for rs in doc.get("resourceSpans", []):
        if not isinstance(rs, Mapping):
            raise DecodeFailure("invalid OTLP JSON: resourceSpans holds a non-object")
        resource = _json_kv((rs.get("resource") or {}).get("attributes", []))
        service = str(resource.get("service.name") or "unknown_service")
        for ss in rs.get("scopeSpans", []) or []:
            for s in (ss or {}).get("spans", []) or []:
                _json_span(s, service, resource, out)
    return out


def _json_span(s: Any, service: str, resource: dict[str, Any], out: Decoded) -> None:
    if not isinstance(s, Mapping):
        out.reject("span is not an object")
        return
    trace_id = _json_id(s.get("traceId"), 32)
    span_id = _json_id(s.get("spanId"), 16)
    if trace_id is None or trace_id == _ZERO_TRACE:
        out.reject("invalid trace_id")
        return
    if span_id is None or span_id == _ZERO_SPAN:
        out.reject("invalid span_id")
        return
    parent = _json_id(s.get("parentSpanId"), 16) if s.get("parentSpanId") else None
    try:
        start = _json_int(s.get("startTimeUnixNano", 0))
        end = _json_int(s.get("endTimeUnixNano", 0))
        events = [
            SpanEvent(
                str(e.get("name", "")),
                _json_int(e.get("timeUnixNano", 0)),
                _json_kv(e.get("attributes", [])),
            )
            for e in s.get("events", []) or []
            if isinstance(e, Mapping)
        ]
        attributes = _json_kv(s.get("attributes", []))
    except (ValueError, TypeError) as exc:
        out.reject(f"bad field: {exc}")
        return
    error, message = _json_status_error(s.get("status"))
    out.spans.append(
        Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent if parent != _ZERO_SPAN else None,
            service=service,
            name=str(s.get("name", "")),
            start_ns=start,
            end_ns=end,
            kind=_json_kind(s.get("kind", 0)),
            error=error,
            status_message=message,
            attributes=attributes,
            events=events,
            resource=resource,
        )
    )
