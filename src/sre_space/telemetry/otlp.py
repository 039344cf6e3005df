"""OTLP trace decoding (protobuf and JSON) into the internal span model.

Protobuf is parsed by upb; each span then costs a dozen field reads, and its
attributes, events and status message stay on the wire message until someone
asks for them (see :mod:`sre_space.telemetry.model`); the readers that fetch
them live in :mod:`sre_space.telemetry.otlp_lazy` and are re-exported here.

OTLP/JSON differs from the proto3 JSON mapping in two ways the spec calls out:
trace and span ids are hex strings (not base64), and enum values are integers.
We accept both spellings of ids (hex in any case) and of enums, and 64-bit
numbers given as strings, as real exporters send them. Unknown fields are
ignored. A span we cannot use (bad id, bad number) is rejected alone and
counted; a payload we cannot read at all raises :class:`DecodeFailure`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.message import DecodeError

from sre_space.telemetry.batch import SpanBatch, resource_key
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.telemetry.otlp_lazy import _PARSED as _PARSED
from sre_space.telemetry.otlp_lazy import ParsedScope, proto_kv
from sre_space.telemetry.otlp_lazy import _any_value as _any_value
from sre_space.telemetry.otlp_lazy import _Parsed as _Parsed
from sre_space.telemetry.otlp_lazy import proto_attributes as proto_attributes
from sre_space.telemetry.otlp_lazy import proto_events as proto_events
from sre_space.telemetry.wire import LiteRequest, status_code

_ZERO_TRACE = "0" * 32
_ZERO_SPAN = "0" * 16
_ZERO_TRACE_B = bytes(16)
_ZERO_SPAN_B = bytes(8)
_KINDS = tuple(SpanKind)
_STATUS_ERROR = 2
MAX_REASONS = 5


_json_loads: Callable[[bytes | str], Any]
try:  # orjson comes with chromadb; the stdlib is the fallback
    import orjson

    _json_loads = orjson.loads
except ImportError:  # pragma: no cover - depends on the environment
    _json_loads = json.loads


class DecodeFailure(ValueError):
    """The payload as a whole could not be read (bad protobuf, bad JSON)."""


@dataclass(slots=True, init=False)
class Decoded:
    """Spans read from one payload, and the spans in it that were refused."""

    spans: SpanBatch
    rejected: int
    reasons: list[str]
    nbytes: int  # wire size of the payload, for the store's memory estimate

    def __init__(
        self,
        spans: Iterable[Span] = (),
        rejected: int = 0,
        reasons: list[str] | None = None,
        nbytes: int = 0,
    ) -> None:
        self.spans = spans if isinstance(spans, SpanBatch) else SpanBatch(spans)
        self.rejected = rejected
        self.reasons = [] if reasons is None else reasons
        self.nbytes = nbytes

    def reject(self, reason: str, n: int = 1) -> None:
        self.rejected += n
        if reason not in self.reasons and len(self.reasons) < MAX_REASONS:
            self.reasons.append(reason)

    def extend(self, other: Decoded) -> None:
        self.spans.extend(other.spans)
        self.nbytes += other.nbytes
        for reason in other.reasons:
            self.reject(reason, 0)
        self.rejected += other.rejected

    @property
    def message(self) -> str:
        """The partial-success ``error_message``: why spans were refused."""
        if not self.rejected:
            return ""
        return f"{self.rejected} span(s) rejected: " + "; ".join(self.reasons)


# --- protobuf ---------------------------------------------------------------


_NAMES: dict[bytes, str] = {}  # span names seen, as their UTF-8 bytes
_MAX_NAMES = 65_536


def _name(raw: bytes) -> str:
    """A span name from its bytes, checked as upb checks a string field (then remembered)."""
    try:
        name = sys.intern(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise DecodeFailure(
            f"invalid OTLP protobuf: span name is not UTF-8 ({exc.reason})"
        ) from None
    if len(_NAMES) >= _MAX_NAMES:  # unbounded names (ids in them): start over
        _NAMES.clear()
    _NAMES[raw] = name
    return name


def decode_protobuf(body: bytes) -> Decoded:
    """An ``ExportTraceServiceRequest`` (or ``TracesData``: the same wire shape).

    Parsed with the reduced schema of :mod:`~sre_space.telemetry.wire` (what
    the hot path reads); the spans' other fields come from a full parse of
    ``body`` when first read.
    """
    req = LiteRequest()
    try:
        req.ParseFromString(body)
    except (DecodeError, RuntimeError) as exc:  # upb raises RuntimeError past its depth limit
        raise DecodeFailure(f"invalid OTLP protobuf: {exc}") from None
    return decode_request(req, body)


def decode_request(req: Any, body: bytes | None = None) -> Decoded:
    """Spans of a parsed request (full or reduced schema); ``body``, its bytes, is what the spans keep.

    Without ``body`` the spans keep the parsed message instead (more memory):
    then ``req`` must be a full ``ExportTraceServiceRequest``.
    Each span becomes a row (:mod:`~sre_space.telemetry.batch`), not an object.
    """
    out = Decoded(nbytes=len(body) if body is not None else 0)
    append = out.spans.rows.append
    intern = sys.intern
    zero_trace, zero_span = _ZERO_TRACE_B, _ZERO_SPAN_B
    lite = isinstance(req, LiteRequest)
    names, name_of = _NAMES, _name
    last_tid, trace_id = b"", ""
    place = 0  # spans of the request before this scope's
    for rs in req.resource_spans:
        resource = proto_kv(rs.resource.attributes)
        service = intern(str(resource.get("service.name") or "unknown_service"))
        held = resource_key(resource)
        for ss in rs.scope_spans:
            # Where the span's other fields are: the request's bytes and the
            # span's place among all its spans (plain values: see batch.py).
            spans = ss.spans
            holder: bytes | ParsedScope = body if body is not None else ParsedScope(spans)
            first = place if body is not None else 0
            place += len(spans)
            for idx, s in enumerate(spans, first):
                tid = s.trace_id
                if tid != last_tid:  # spans of one trace often follow each other
                    if len(tid) != 16 or tid == zero_trace:
                        out.reject("invalid trace_id (want 16 bytes, not all zero)")
                        continue
                    last_tid, trace_id = tid, tid.hex()  # one str for the run of spans
                sid = s.span_id
                if len(sid) != 8 or sid == zero_span:
                    out.reject("invalid span_id (want 8 bytes, not all zero)")
                    continue
                pid = s.parent_span_id
                if pid:
                    if len(pid) != 8:
                        out.reject("invalid parent_span_id (want 8 bytes or none)")
                        continue
                    parent: str | None = None if pid == zero_span else pid.hex()
                else:
                    parent = None
                k = s.kind
                if lite:  # the status's bytes: b"" for the usual span without one
                    status = s.status
                    error = status_code(status) == _STATUS_ERROR if status else False
                else:
                    error = s.status.code == _STATUS_ERROR
                append(
                    (
                        trace_id,
                        sid.hex(),
                        parent,
                        service,
                        names.get(s.name) or name_of(s.name) if lite else intern(s.name),
                        s.start_time_unix_nano,
                        s.end_time_unix_nano,
                        k if 0 <= k <= 5 else 0,  # SpanKind's number; 0: unspecified
                        error,
                        held,
                        holder,
                        idx,
                        None,
                    )
                )
    return out


# --- JSON -------------------------------------------------------------------


def json_id(raw: Any, length: int) -> str | None:
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


def json_int(raw: Any) -> int:
    """A 64-bit integer given as a JSON number or a decimal string."""
    if isinstance(raw, bool):
        raise ValueError("boolean is not a number")
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        return int(raw.strip())
    if isinstance(raw, float) and raw.is_integer():
        return int(raw)
    raise ValueError(f"not an integer: {str(raw)[:40]!r}")


def _json_float(raw: Any) -> float:
    if isinstance(raw, bool):
        raise ValueError("boolean is not a number")
    if isinstance(raw, (int, float)):
        return float(raw)
    if isinstance(raw, str):  # proto3 JSON: "NaN", "Infinity", "-Infinity", or digits
        value = float(raw)
        if math.isnan(value) and raw != "NaN":
            raise ValueError(f"not a number: {raw[:40]!r}")
        return value
    raise ValueError(f"not a number: {str(raw)[:40]!r}")


def json_value(v: Any) -> Any:
    """An OTLP/JSON ``AnyValue`` (``{"stringValue": ...}`` and friends)."""
    if not isinstance(v, Mapping):
        return None
    if "stringValue" in v:
        return str(v["stringValue"])
    if "boolValue" in v:
        b = v["boolValue"]
        return b if isinstance(b, bool) else str(b).lower() == "true"
    if "intValue" in v:
        return json_int(v["intValue"])
    if "doubleValue" in v:
        return _json_float(v["doubleValue"])
    if "arrayValue" in v:
        arr = v["arrayValue"]
        values = arr.get("values") if isinstance(arr, Mapping) else None
        return [json_value(x) for x in values] if isinstance(values, list) else []
    if "kvlistValue" in v:
        kvl = v["kvlistValue"]
        return json_kv(kvl.get("values") if isinstance(kvl, Mapping) else None)
    if "bytesValue" in v:
        return base64.b64decode(str(v["bytesValue"])).hex()
    return None


def json_kv(items: Any) -> dict[str, Any]:
    if not isinstance(items, list):
        return {}
    return {
        str(kv["key"]): json_value(kv.get("value"))
        for kv in items
        if isinstance(kv, Mapping) and "key" in kv
    }


_KIND_NAMES = {f"SPAN_KIND_{k.name}": k for k in SpanKind}


def _json_kind(raw: Any) -> SpanKind:
    if isinstance(raw, str) and raw.startswith("SPAN_KIND_"):
        return _KIND_NAMES.get(raw, SpanKind.UNSPECIFIED)
    try:
        k = json_int(raw or 0)
    except ValueError:
        return SpanKind.UNSPECIFIED
    return _KINDS[k] if 0 <= k <= 5 else SpanKind.UNSPECIFIED


def _json_status(status: Any) -> tuple[bool, str]:
    if not isinstance(status, Mapping):
        return False, ""
    code = status.get("code", 0)
    error = code in (2, "2", "STATUS_CODE_ERROR")
    message = status.get("message", "")
    return error, message if isinstance(message, str) else str(message)


def loads(body: bytes | str) -> Any:
    """Parse JSON text; anything unreadable is a :class:`DecodeFailure`."""
    try:
        return _json_loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError, TypeError) as exc:
        raise DecodeFailure(f"invalid JSON: {str(exc)[:200]}") from None


def decode_json(body: bytes | str | Mapping[str, Any]) -> Decoded:
    """An OTLP/JSON ``ExportTraceServiceRequest`` (or ``TracesData``)."""
    nbytes = len(body) if isinstance(body, (bytes, str)) else 0
    doc: Any = body if isinstance(body, Mapping) else loads(body)
    if not isinstance(doc, Mapping):
        raise DecodeFailure("invalid OTLP JSON: expected an object with resourceSpans")
    resource_spans = doc.get("resourceSpans", doc.get("resource_spans", []))
    if resource_spans is None:
        resource_spans = []
    if not isinstance(resource_spans, list):
        raise DecodeFailure("invalid OTLP JSON: resourceSpans is not a list")
    out = Decoded(nbytes=nbytes)
    for rs in resource_spans:
        if not isinstance(rs, Mapping):
            raise DecodeFailure("invalid OTLP JSON: resourceSpans holds a non-object")
        res = rs.get("resource")
        try:
            resource = json_kv(res.get("attributes")) if isinstance(res, Mapping) else {}
        except (ValueError, TypeError, binascii.Error, RecursionError) as exc:
            raise DecodeFailure(f"invalid OTLP JSON: bad resource attribute: {exc}") from None
        service = str(resource.get("service.name") or "unknown_service")
        scopes = rs.get("scopeSpans", rs.get("instrumentationLibrarySpans"))
        for ss in scopes if isinstance(scopes, list) else ():
            spans = ss.get("spans") if isinstance(ss, Mapping) else None
            if spans is None:
                continue
            if not isinstance(spans, list):
                raise DecodeFailure("invalid OTLP JSON: spans is not a list")
            for s in spans:
                _json_span(s, service, resource, out)
    return out


def _json_span(s: Any, service: str, resource: dict[str, Any], out: Decoded) -> None:
    if not isinstance(s, Mapping):
        out.reject("span is not an object")
        return
    trace_id = json_id(s.get("traceId"), 32)
    span_id = json_id(s.get("spanId"), 16)
    if trace_id is None or trace_id == _ZERO_TRACE:
        out.reject("invalid traceId (want 32 hex digits, not all zero)")
        return
    if span_id is None or span_id == _ZERO_SPAN:
        out.reject("invalid spanId (want 16 hex digits, not all zero)")
        return
    raw_parent = s.get("parentSpanId")
    parent = json_id(raw_parent, 16) if raw_parent else None
    if raw_parent and parent is None:
        out.reject("invalid parentSpanId (want 16 hex digits or none)")
        return
    try:
        start = json_int(s.get("startTimeUnixNano") or 0)
        end = json_int(s.get("endTimeUnixNano") or 0)
        raw_events = s.get("events")
        events = [
            SpanEvent(
                str(e.get("name", "")),
                json_int(e.get("timeUnixNano") or 0),
                json_kv(e.get("attributes")),
            )
            for e in (raw_events if isinstance(raw_events, list) else ())
            if isinstance(e, Mapping)
        ]
        attributes = json_kv(s.get("attributes"))
    except (ValueError, TypeError, OverflowError, binascii.Error, RecursionError) as exc:
        out.reject(f"bad field: {str(exc)[:100]}")
        return
    error, message = _json_status(s.get("status"))
    name = s.get("name", "")
    out.spans.append(
        Span(
            trace_id=trace_id,
            span_id=span_id,
            parent_id=parent if parent != _ZERO_SPAN else None,
            service=service,
            name=name if isinstance(name, str) else str(name),
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
