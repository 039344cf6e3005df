"""Jaeger JSON decoding into the internal span model.

Shapes read:

- the v1 query API and the UI's download: ``{"data": [trace, ...]}``;
- a bare trace: ``{"traceID": ..., "spans": [...], "processes": {...}}``;
- a list of traces;
- the v3 API (Jaeger v2): ``{"result": {"resourceSpans": [...]}}``, which is
  OTLP JSON and goes to :func:`.otlp.decode_json`.

In a v1 span, times are microseconds; the service is the span's process
(``processID`` into the trace's ``processes``, or an inline ``process``);
the parent is the first ``CHILD_OF`` reference (else the first reference, else
a legacy ``parentSpanID``); the ``error`` tag may be a bool or a string;
``span.kind`` and ``otel.status_code``/``otel.status_description`` tags become
the kind and status; logs become events named by their ``event`` field.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any

from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.telemetry.otlp import Decoded, DecodeFailure, decode_json, json_int

_KINDS = {
    "server": SpanKind.SERVER,
    "client": SpanKind.CLIENT,
    "producer": SpanKind.PRODUCER,
    "consumer": SpanKind.CONSUMER,
    "internal": SpanKind.INTERNAL,
}
_HEX = frozenset("0123456789abcdefABCDEF")
_STATUS_TAGS = ("span.kind", "otel.status_code", "otel.status_description", "error")


def is_jaeger(doc: Any) -> bool:
    """Whether ``doc`` has one of the Jaeger shapes above."""
    if isinstance(doc, list):
        return bool(doc) and all(isinstance(t, Mapping) and "spans" in t for t in doc)
    if not isinstance(doc, Mapping):
        return False
    if "result" in doc and isinstance(doc["result"], Mapping):
        return True
    return isinstance(doc.get("data"), list) or ("spans" in doc and "traceID" in doc)


def decode_jaeger(doc: Any) -> Decoded:
    """Spans of a Jaeger JSON document (any shape in the module docstring)."""
    if isinstance(doc, Mapping) and isinstance(doc.get("result"), Mapping):
        return decode_json(doc["result"])
    if isinstance(doc, Mapping) and isinstance(doc.get("data"), list):
        traces: list[Any] = doc["data"]
    elif isinstance(doc, Mapping) and "spans" in doc:
        traces = [doc]
    elif isinstance(doc, list):
        traces = doc
    else:
        raise DecodeFailure("not Jaeger JSON: expected data, result, or a trace with spans")
    out = Decoded()
    for trace in traces:
        if not isinstance(trace, Mapping) or not isinstance(trace.get("spans", []), list):
            raise DecodeFailure("invalid Jaeger JSON: a trace is not an object with spans")
        processes = trace.get("processes")
        procs = processes if isinstance(processes, Mapping) else {}
        for span in trace.get("spans") or []:
            _span(span, procs, out)
    return out


def _hex_id(raw: Any, digits: int) -> str | None:
    """Jaeger writes ids as hex without leading zeros sometimes, and 64-bit trace ids."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = f"{raw:x}"
    if not isinstance(raw, str) or not raw or len(raw) > digits or not _HEX.issuperset(raw):
        return None
    value = int(raw, 16)
    return None if value == 0 else f"{value:0{digits}x}"


def _tag_value(tag: Mapping[str, Any]) -> Any:
    value = tag.get("value")
    typ = str(tag.get("type", "")).lower()
    if typ == "bool":
        return value if isinstance(value, bool) else str(value).lower() == "true"
    if typ == "int64":
        return json_int(value)
    if typ == "float64":
        return float(value if isinstance(value, (int, float, str)) else "nan")
    if typ == "binary" and isinstance(value, str):
        try:
            return base64.b64decode(value).hex()
        except (binascii.Error, ValueError):
            return value
    return value


def _tags(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        str(t["key"]): _tag_value(t) for t in items if isinstance(t, Mapping) and "key" in t
    }


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def _parent(span: Mapping[str, Any]) -> tuple[bool, str | None]:
    refs = span.get("references")
    if isinstance(refs, list) and refs:
        refs = [r for r in refs if isinstance(r, Mapping)]
        child_of = [r for r in refs if str(r.get("refType", "")).upper() == "CHILD_OF"]
        ref = (child_of or refs or [None])[0]
        if ref is not None:
            parent = _hex_id(ref.get("spanID"), 16)
            return parent is not None, parent
    legacy = span.get("parentSpanID")
    if legacy in (None, "", "0", 0):
        return True, None
    parent = _hex_id(legacy, 16)
    return parent is not None, parent


def _span(span: Any, procs: Mapping[str, Any], out: Decoded) -> None:
    if not isinstance(span, Mapping):
        out.reject("span is not an object")
        return
    trace_id = _hex_id(span.get("traceID"), 32)
    span_id = _hex_id(span.get("spanID"), 16)
    if trace_id is None:
        out.reject("invalid traceID")
        return
    if span_id is None:
        out.reject("invalid spanID")
        return
    ok, parent = _parent(span)
    if not ok:
        out.reject("invalid parent reference")
        return
    try:
        start_us = json_int(span.get("startTime") or 0)
        duration_us = json_int(span.get("duration") or 0)
        attributes = _tags(span.get("tags"))
        logs = span.get("logs")
        events = [
            _event(log) for log in (logs if isinstance(logs, list) else []) if isinstance(log, Mapping)
        ]
        process = span.get("process")
        if not isinstance(process, Mapping):
            process = procs.get(str(span.get("processID", "")))
        resource = _tags(process.get("tags")) if isinstance(process, Mapping) else {}
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        out.reject(f"bad field: {str(exc)[:100]}")
        return
    service = process.get("serviceName") if isinstance(process, Mapping) else None
    service = str(service or resource.get("service.name") or "unknown_service")
    resource.setdefault("service.name", service)
    kind = _KINDS.get(str(attributes.get("span.kind", "")).lower(), SpanKind.UNSPECIFIED)
    status_code = str(attributes.get("otel.status_code", "")).upper()
    error = status_code == "ERROR" or _truthy(attributes.get("error", False))
    message = str(attributes.get("otel.status_description", "") or "")
    for key in _STATUS_TAGS:
        attributes.pop(key, None)
    name = span.get("operationName", "")
    start_ns = start_us * 1000
    out.spans.append(
        Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent,
            service=service,
            name=name if isinstance(name, str) else str(name),
            start_ns=start_ns,
            end_ns=start_ns + max(0, duration_us) * 1000,
            kind=kind,
            error=error,
            status_message=message,
            attributes=attributes,
            events=events,
            resource=resource,
        )
    )


def _event(log: Mapping[str, Any]) -> SpanEvent:
    fields = _tags(log.get("fields"))
    name = str(fields.pop("event", "") or "log")
    return SpanEvent(name, json_int(log.get("timestamp") or 0) * 1000, fields)
