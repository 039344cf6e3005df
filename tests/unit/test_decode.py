"""Decoding every supported shape into the one Span model, and reading files and stdin."""

from __future__ import annotations

import gzip
import io
import json
import pickle
import sys
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import TracesData

from sre_space.telemetry.files import decode_bytes, read_file, read_spans
from sre_space.telemetry.jaeger import decode_jaeger
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.telemetry.otlp import DecodeFailure, decode_json, decode_protobuf

import helpers

FIXTURES = helpers.FIXTURES / "telemetry"


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def by_name(spans: list[Span]) -> dict[str, Span]:
    return {s.name: s for s in spans}


# --- OTLP JSON --------------------------------------------------------------------


def test_otlp_json_example_shape() -> None:
    decoded = decode_json((FIXTURES / "otlp_trace.json").read_bytes())
    assert decoded.rejected == 0
    spans = by_name(decoded.spans)
    root, db = spans["POST /checkout"], spans["INSERT orders"]
    assert root.trace_id == db.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert root.span_id == "00f067aa0ba902b7" and root.parent_id is None
    assert db.parent_id == root.span_id
    assert root.service == "checkout" and root.resource["service.instance.id"] == "checkout-1"
    assert root.kind == SpanKind.SERVER and db.kind == SpanKind.CLIENT
    assert root.duration_ms == 250.0 and db.start_ns == 1_700_000_000_010_000_000
    assert root.attributes == {
        "http.request.method": "POST",
        "http.response.status_code": 500,
        "retry": False,
        "load": 0.75,
        "tags": ["a", 2],
        "owner": {"team": "payments"},
    }
    assert root.http_status == 500
    assert root.error and root.status_message == "upstream failed"
    assert db.error and db.exception_message == "TimeoutError: connection pool exhausted"


def test_otlp_json_rejects_bad_spans_alone_and_bad_documents_whole() -> None:
    good = {"traceId": "0102030405060708090a0b0c0d0e0f10", "spanId": "0102030405060708", "name": "ok"}
    spans = [
        good,
        {**good, "traceId": "00000000000000000000000000000000"},
        {**good, "spanId": "xyz"},
        {**good, "parentSpanId": "12"},
        {**good, "startTimeUnixNano": "soon"},
        {**good, "attributes": [{"key": "n", "value": {"intValue": "NaN"}}]},
        "not a span",
        # base64 ids, as the plain proto3 JSON mapping writes them
        {**good, "traceId": "AQIDBAUGBwgJCgsMDQ4PEA==", "spanId": "AQIDBAUGBwg=", "kind": "SPAN_KIND_SERVER"},
    ]
    doc = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    decoded = decode_json(json.dumps(doc))
    assert decoded.rejected == 6 and len(decoded.spans) == 2
    assert decoded.spans[1].trace_id == "0102030405060708090a0b0c0d0e0f10"
    assert decoded.spans[1].kind == SpanKind.SERVER
    assert decoded.spans[0].service == "unknown_service"
    assert "6 span(s) rejected" in decoded.message
    for bad in (b"[1, 2]", b"{not json", b'{"resourceSpans": 3}', b'{"resourceSpans": [7]}', b"\xff"):
        with pytest.raises(DecodeFailure):
            decode_json(bad)
    assert decode_json(b"{}").spans == []


def test_otlp_protobuf_ids_kinds_and_lazy_attributes() -> None:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "db"
    ss = rs.scope_spans.add()
    for i in range(3):
        s = ss.spans.add()
        s.trace_id, s.span_id, s.name, s.kind = bytes(range(1, 17)), bytes([i + 1] * 8), f"q{i}", 3
        a = s.attributes.add()
        a.key, a.value.int_value = "row", i
        b = s.attributes.add()
        b.key, b.value.bytes_value = "blob", b"\x01\x02"
    ss.spans[1].parent_span_id = bytes(8)  # all zero: no parent
    ss.spans[2].trace_id = bytes(16)  # invalid: rejected alone
    ss.spans[0].kind = 99  # unknown kind
    e = ss.spans[0].events.add()
    e.name, e.time_unix_nano = "exception", 5
    ea = e.attributes.add()
    ea.key, ea.value.string_value = "exception.message", "boom"
    ss.spans[0].status.code, ss.spans[0].status.message = 2, "failed"

    decoded = decode_protobuf(req.SerializeToString())
    assert decoded.rejected == 1 and "trace_id" in decoded.reasons[0]
    first, second = decoded.spans
    assert first.trace_id == bytes(range(1, 17)).hex() and first.span_id == "01" * 8
    assert first.kind == SpanKind.UNSPECIFIED and second.kind == SpanKind.CLIENT
    assert second.parent_id is None and first.service == "db"
    assert first.error and not second.error
    # Read from the wire message only now.
    assert first.attributes == {"row": 0, "blob": "0102"}
    assert first.exception_message == "boom"
    assert first.status_message == "failed"
    assert first._raw is None  # everything read: the wire bytes are let go
    assert second.attributes["row"] == 1 and second._raw is not None
    # TracesData (the Kafka exporter's otlp_proto) has the same wire shape.
    td = TracesData()
    td.ParseFromString(req.SerializeToString())
    assert len(decode_protobuf(td.SerializeToString()).spans) == 2
    with pytest.raises(DecodeFailure):
        decode_protobuf(b"\x0a\xff\xff\xff\xff\x0f")


def test_span_keeps_dataclass_manners() -> None:
    kwargs: dict[str, Any] = dict(
        trace_id="a" * 32, span_id="b" * 16, parent_id=None, service="s", name="n",
        start_ns=1, end_ns=2_000_001, kind=SpanKind.SERVER, error=True,
        status_message="m", attributes={"k": 1}, events=[SpanEvent("e", 1, {})],
    )
    a, b = Span(**kwargs), Span(**kwargs)
    assert a == b and a != Span(**{**kwargs, "name": "other"})
    assert "name='n'" in repr(a) and a.duration_ms == 2.0
    assert pickle.loads(pickle.dumps(a)) == a
    assert a.to_dict()["attributes"] == {"k": 1} and a.to_dict()["kind"] == 2
    minimal = Span("a" * 32, "b" * 16, None, "s", "n", 0, 0)
    assert minimal.attributes == {} and minimal.events == [] and minimal.status_message == ""
    assert minimal.kind == SpanKind.INTERNAL and minimal.http_status is None
    # A lazily decoded span compares and pickles by value too.
    lazy = decode_json((FIXTURES / "otlp_trace.json").read_bytes()).spans[0]
    req = ExportTraceServiceRequest()
    from google.protobuf import json_format

    raw = json.loads((FIXTURES / "otlp_trace.json").read_text())
    for s in raw["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        s.pop("unknownFieldFromTheFuture", None)
        for key in ("traceId", "spanId", "parentSpanId"):  # proto3 JSON wants base64
            s[key] = __import__("base64").b64encode(bytes.fromhex(s[key])).decode()
    json_format.ParseDict(raw, req)
    wire = decode_protobuf(req.SerializeToString()).spans[0]
    assert wire == lazy
    assert pickle.loads(pickle.dumps(wire)) == lazy


# --- Jaeger -----------------------------------------------------------------------


def test_jaeger_v1_data_shape() -> None:
    decoded = decode_jaeger(fixture("jaeger_v1.json"))
    assert decoded.rejected == 0
    spans = by_name(decoded.spans)
    root, db, health = spans["GET /api/products"], spans["SELECT products"], spans["healthcheck"]
    assert root.service == "frontend" and root.resource == {"hostname": "fe-0", "service.name": "frontend"}
    assert db.service == "catalog"
    assert root.kind == SpanKind.SERVER and db.kind == SpanKind.CLIENT
    assert db.parent_id == root.span_id  # CHILD_OF wins over an earlier FOLLOWS_FROM
    assert root.error and db.error and not health.error  # bool, "true", "false"
    assert root.status_message == "catalog unavailable"
    assert root.exception_message == "ConnectionError: catalog refused"
    assert root.events[0].time_ns == 1_700_000_000_110_000_000
    assert root.start_ns == 1_700_000_000_000_000_000 and root.duration_ms == 120.0
    assert root.http_status == 503 and db.attributes == {"db.rows": 12.5, "cached": False}
    assert "error" not in root.attributes and "span.kind" not in root.attributes
    assert health.trace_id == "00000000000000007a1b2c3d4e5f6071"  # 64-bit id, padded
    assert health.span_id == "0000000000000abc"


def test_jaeger_bare_trace_v3_and_bad_spans() -> None:
    spans = by_name(decode_jaeger(fixture("jaeger_trace.json")).spans)
    assert spans["charge card"].parent_id == spans["charge"].span_id  # legacy parentSpanID
    assert spans["charge card"].error and spans["charge"].resource["region"] == "eu"
    assert spans["charge"].service == "payments"

    v3 = by_name(decode_jaeger(fixture("jaeger_v3.json")).spans)
    assert v3["SELECT stock"].error and v3["GET /stock"].http_status == 200

    trace = fixture("jaeger_trace.json")
    trace["spans"].append({**trace["spans"][0], "spanID": "not hex"})
    trace["spans"].append({**trace["spans"][0], "spanID": "00000000000000a3", "startTime": "later"})
    trace["spans"].append({**trace["spans"][0], "spanID": "00000000000000a4",
                           "references": [{"refType": "CHILD_OF", "spanID": "zz"}]})
    decoded = decode_jaeger(trace)
    assert len(decoded.spans) == 2 and decoded.rejected == 3
    with pytest.raises(DecodeFailure):
        decode_jaeger({"what": 1})


# --- files and stdin ----------------------------------------------------------------


@pytest.mark.parametrize(
    "name, count",
    [("otlp_trace.json", 2), ("jaeger_v1.json", 3), ("jaeger_trace.json", 2), ("jaeger_v3.json", 2)],
)
def test_read_spans_sniffs_json_formats_plain_and_gzip(tmp_path: Path, name: str, count: int) -> None:
    data = (FIXTURES / name).read_bytes()
    plain, packed = tmp_path / name, tmp_path / f"{name}.gz"
    plain.write_bytes(data)
    packed.write_bytes(gzip.compress(data))
    assert len(read_spans(plain)) == count
    assert [s.span_id for s in read_spans(str(packed))] == [s.span_id for s in read_spans(plain)]


def test_read_spans_protobuf_json_lines_lists_and_stdin(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    json_doc = json.loads((FIXTURES / "otlp_trace.json").read_text())
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    s = rs.scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name = b"\x01" * 16, b"\x02" * 8, "from protobuf"
    pb = tmp_path / "traces.pb"
    pb.write_bytes(req.SerializeToString())
    assert [x.name for x in read_spans(pb)] == ["from protobuf"]

    # The Collector's file exporter: one OTLP JSON request per line.
    lines = tmp_path / "collector.jsonl"
    lines.write_text(json.dumps(json_doc) + "\n\n" + json.dumps(json_doc) + "\n")
    assert len(read_spans(lines)) == 4
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps([json_doc, fixture("jaeger_trace.json")]))
    assert len(read_spans(listed)) == 4

    stdin = io.TextIOWrapper(io.BytesIO(gzip.compress(json.dumps(fixture("jaeger_v1.json")).encode())))
    monkeypatch.setattr(sys, "stdin", stdin)
    assert len(read_spans("-")) == 3

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert read_spans(empty) == []
    bad = tmp_path / "bad.json"
    bad.write_text('{"hello": "world"}')
    with pytest.raises(DecodeFailure, match="neither OTLP"):
        read_spans(bad)
    broken = tmp_path / "broken.json"
    broken.write_text('{"resourceSpans": [\n{"oops"\n')
    with pytest.raises(DecodeFailure):
        read_spans(broken)
    with pytest.raises(DecodeFailure, match="gzip"):
        read_spans(_write(tmp_path / "x.gz", b"\x1f\x8b\x08\x00broken"))
    assert decode_bytes(b"  \n").spans == []


def test_read_file_counts_rejected_spans(tmp_path: Path) -> None:
    doc = fixture("otlp_trace.json")
    doc["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"] = "nope"
    path = _write(tmp_path / "partial.json", json.dumps(doc).encode())
    decoded = read_file(path)
    assert len(decoded.spans) == 1 and decoded.rejected == 1


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_lazy_attributes_survive_the_reparse_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    from sre_space.telemetry import otlp

    monkeypatch.setattr(otlp._PARSED, "max_wire_bytes", 1)  # keep one parsed request at a time
    batches = []
    for i in range(20):
        req = ExportTraceServiceRequest()
        scope = req.resource_spans.add().scope_spans.add()
        for j in range(3):
            s = scope.spans.add()
            s.trace_id, s.span_id = bytes([i + 1]) * 16, bytes([j + 1]) * 8
            a = s.attributes.add()
            a.key, a.value.string_value = "at", f"{i}/{j}"
        batches.append(decode_protobuf(req.SerializeToString()).spans)
    # Interleaved reads: every read may re-parse; every answer is still right.
    for j in range(3):
        for i, spans in enumerate(batches):
            assert spans[j].attributes == {"at": f"{i}/{j}"}
