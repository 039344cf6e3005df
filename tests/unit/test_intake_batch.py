"""The batch path (reduced-schema parse, rows, no span objects) sees what the span path saw.

One OTLP payload is read twice: by the full protobuf schema span by span (as
the gRPC receiver hands it over), and by ``decode_protobuf`` into a batch of
rows. The spans must be equal field for field, and the window detector fed
one span at a time must end with the same windows, edges and signals as one
fed the batch through the store.
"""

from __future__ import annotations

import gc
import random
from typing import Any

import pytest
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sre_space.detect.window import WindowDetector
from sre_space.telemetry.batch import SpanBatch
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.otlp import DecodeFailure, decode_protobuf, decode_request
from sre_space.telemetry.store import TraceStore

NOW = 1_700_000_000.0


def payload(seed: int = 7, traces: int = 40) -> bytes:
    """Traces across three services: every kind, errors, slow calls, bad spans among them."""
    rnd = random.Random(seed)
    req = ExportTraceServiceRequest()
    scopes = {}
    for service in ("frontend", "checkout", "db"):
        rs = req.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", service
        scopes[service] = (rs.scope_spans.add(), rs.scope_spans.add())
    start = int((NOW - 2) * 1e9)
    for t in range(traces):
        # Some trace ids end in 0: the detector follows those span by span.
        tid = bytes(15) + bytes([t * 8 % 256 or 1]) if t % 3 == 0 else rnd.randbytes(16)
        root, child = rnd.randbytes(8), rnd.randbytes(8)
        chain = [
            ("frontend", root, b"", 2, "GET /"),
            ("frontend", child, root, 3, "POST checkout"),
            ("checkout", rnd.randbytes(8), child, 2, "POST /checkout"),
            ("checkout", rnd.randbytes(8), b"", 1, "tick"),  # an INTERNAL root
            ("db", rnd.randbytes(8), child, rnd.choice([0, 1, 5, 99]), "SELECT"),
        ]
        for i, (service, sid, parent, kind, name) in enumerate(chain):
            s = scopes[service][i % 2].spans.add()
            s.trace_id, s.span_id, s.name, s.kind = tid, sid, name, kind
            if parent:
                s.parent_span_id = parent
            s.start_time_unix_nano = start + t * 1000
            s.end_time_unix_nano = s.start_time_unix_nano + rnd.randrange(-10**6, 2 * 10**9)
            if rnd.random() < 0.2:
                s.status.code, s.status.message = 2, "boom"
            elif rnd.random() < 0.1:
                s.status.message = "ok-ish"  # a status with no code
            a = s.attributes.add()
            a.key, a.value.int_value = "http.response.status_code", rnd.choice([200, 500])
            if rnd.random() < 0.1:
                e = s.events.add()
                e.name, e.time_unix_nano = "exception", s.start_time_unix_nano
                ea = e.attributes.add()
                ea.key, ea.value.string_value = "exception.message", "db down"
    bad = scopes["db"][0].spans
    bad.add(trace_id=bytes(16), span_id=b"\x01" * 8)  # zero trace id
    bad.add(trace_id=b"\x02" * 16, span_id=b"\x03" * 4)  # short span id
    bad.add(trace_id=b"\x02" * 16, span_id=b"\x03" * 8, parent_span_id=b"\x04" * 3)
    bad.add(trace_id=b"\x02" * 16, span_id=b"\x05" * 8, parent_span_id=bytes(8), name="x")
    return bytes(req.SerializeToString())


def both(body: bytes) -> tuple[Any, Any]:
    full = ExportTraceServiceRequest()
    full.ParseFromString(body)
    return decode_request(full), decode_protobuf(body)


def test_batch_decode_equals_span_by_span_decode() -> None:
    old, new = both(payload())
    assert isinstance(new.spans, SpanBatch) and len(new.spans) == len(old.spans) == 201
    assert (new.rejected, new.reasons) == (old.rejected, old.reasons) == (3, old.reasons)
    for a, b in zip(old.spans, new.spans, strict=True):
        assert a == b  # every field, the lazy ones (attributes, events, status) included
        assert a.exception_message == b.exception_message and a.http_status == b.http_status


def _windows(det: WindowDetector) -> dict[Any, Any]:
    return {
        key: [(b.second, b.count, b.errors, b.slow, b.latencies) for b in op.window]
        for key, op in det._ops.items()
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_detector_sees_the_same_spans_one_by_one_and_in_a_batch(seed: int) -> None:
    body = payload(seed)
    old, _ = both(body)
    one_by_one = WindowDetector(10.0, 800.0, clock=lambda: NOW)
    for span in old.spans:
        one_by_one.observe([span])

    batched = WindowDetector(10.0, 800.0, clock=lambda: NOW)
    store = TraceStore()
    store.subscribe(batched.observe)
    intake = Intake(store)  # not started: delivers on this thread
    assert intake.offer(decode_protobuf(body), "test")

    assert _windows(batched) == _windows(one_by_one) and _windows(batched)
    assert batched.edges() == one_by_one.edges() and batched.edges()
    assert batched._entries == one_by_one._entries
    assert batched.signals() == one_by_one.signals()


def test_store_builds_spans_only_when_read_and_keeps_them() -> None:
    body = payload()
    old, new = both(body)
    store = TraceStore()
    store.add(new.spans, len(body))
    tid = old.spans[0].trace_id
    held = store._traces[tid]
    assert all(type(x) is tuple for x in held)  # rows: nothing built yet
    first = store.trace(tid)
    assert first == [s for s in old.spans if s.trace_id == tid]
    assert [a is b for a, b in zip(first, store.trace(tid), strict=True)] == [True] * len(first)
    since = old.spans[0].start_ns + 20_000
    assert store.spans_since(since) == [s for s in _by_trace(old.spans) if s.start_ns >= since]
    assert [len(t) for t in store.traces_since(since)] == [
        len(t) for t in _group(old.spans).values() if min(s.start_ns for s in t) >= since
    ]


def _group(spans: Any) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for s in spans:
        out.setdefault(s.trace_id, []).append(s)
    return out


def _by_trace(spans: Any) -> list[Any]:
    return [s for t in _group(spans).values() for s in t]


def test_unreadable_fields_the_hot_path_skips() -> None:
    good = ExportTraceServiceRequest()
    s = good.resource_spans.add().scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name = b"\x01" * 16, b"\x02" * 8, "op"
    body = bytes(good.SerializeToString())
    # A span name that is not UTF-8 is refused whole, as the full schema refuses it.
    broken_name = body.replace(b"op", b"\xff\xfe")
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest().ParseFromString(broken_name)
    with pytest.raises(DecodeFailure):
        decode_protobuf(broken_name)
    # Attribute bytes only a full parse reads: the span is kept, with no attributes.
    span = s.SerializeToString() + b"\x4a\x03\xff\xff\xff"  # field 9, not a KeyValue
    scope = b"\x12" + _varint(len(span)) + span
    resource_spans = b"\x12" + _varint(len(scope)) + scope
    corrupt = b"\x0a" + _varint(len(resource_spans)) + resource_spans
    with pytest.raises(DecodeError):
        ExportTraceServiceRequest().ParseFromString(corrupt)
    decoded = decode_protobuf(corrupt)
    assert [x.name for x in decoded.spans] == ["op"] and decoded.spans[0].attributes == {}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def test_decoded_rows_leave_the_collector_and_share_their_resource() -> None:
    """A row holds only plain values, so the collector stops tracking it at its
    first pass; the spans of one resource still share one resource dict."""
    req = ExportTraceServiceRequest()
    for service in ("plain", "with-a-list"):
        rs = req.resource_spans.add()
        kv = rs.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", service
        if service == "with-a-list":  # a value that cannot be hashed: the row keeps the dict
            kv = rs.resource.attributes.add()
            kv.key = "process.command_args"
            kv.value.array_value.values.add().string_value = "-v"
        for i in range(3):
            s = rs.scope_spans.add().spans.add()
            s.trace_id, s.span_id, s.name = b"\x01" * 16, bytes([i + 1]) * 8, service
    body = bytes(req.SerializeToString())
    decode_protobuf(body)  # the first sight of a resource makes its shared tuple
    rows = decode_protobuf(body).spans.rows
    gc.collect(0)
    assert [gc.is_tracked(r) for r in rows] == [False] * 3 + [True] * 3
    spans = SpanBatch(rows=rows)
    assert spans[0].resource == {"service.name": "plain"}
    assert spans[0].resource is spans[2].resource
    assert spans[3].resource == {"service.name": "with-a-list", "process.command_args": ["-v"]}
    assert [s.name for s in spans] == ["plain"] * 3 + ["with-a-list"] * 3
