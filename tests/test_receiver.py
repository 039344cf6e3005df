"""The OTLP/HTTP receiver against the real OpenTelemetry SDK exporter, and bad input."""

from __future__ import annotations

import gzip
import json
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceResponse
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import Status, StatusCode

from sre_space.telemetry.model import SpanKind
from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.store import TraceStore

from helpers import wait_until


@pytest.fixture
def receiver() -> Iterator[tuple[OtlpHttpReceiver, TraceStore]]:
    store = TraceStore(max_spans=10_000)
    rx = OtlpHttpReceiver(store, "127.0.0.1", 0, max_body_bytes=64 * 1024).start()
    yield rx, store
    rx.stop()


def post(port: int, body: bytes, content_type: str, **headers: str) -> tuple[int, bytes]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=body,
        headers={"Content-Type": content_type, **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def test_real_sdk_exporter_spans_arrive_intact(receiver: tuple[OtlpHttpReceiver, TraceStore]) -> None:
    rx, store = receiver
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter = OTLPSpanExporter(endpoint=f"http://127.0.0.1:{rx.port}/v1/traces")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /checkout", kind=OtelKind.SERVER) as parent:
        parent.set_attribute("http.response.status_code", 500)
        with tracer.start_as_current_span("INSERT orders", kind=OtelKind.CLIENT) as child:
            child.record_exception(TimeoutError("database connection timeout"))
            child.set_status(Status(StatusCode.ERROR, "db"))
    provider.shutdown()

    spans = wait_until(lambda: store.spans_since(0), 5, what="spans at the store")
    assert len(spans) == 2
    by_name = {s.name: s for s in spans}
    server, client = by_name["POST /checkout"], by_name["INSERT orders"]
    assert server.service == client.service == "checkout"
    assert server.kind == SpanKind.SERVER and client.kind == SpanKind.CLIENT
    assert client.parent_id == server.span_id and client.trace_id == server.trace_id
    assert client.error and not server.error
    assert client.exception_message == "TimeoutError: database connection timeout"
    assert server.http_status == 500
    assert store.stats().spans_in == 2


def test_json_with_invalid_trace_id_is_a_partial_success(
    receiver: tuple[OtlpHttpReceiver, TraceStore],
) -> None:
    rx, store = receiver
    span = {
        "traceId": "5B8EFFF798038103D269B633813FC60C",  # upper-case hex is allowed
        "spanId": "EEE19B7EC3C1B174",
        "name": "GET /",
        "kind": 2,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712661000000000",
        "attributes": [{"key": "http.response.status_code", "value": {"intValue": "200"}}],
    }
    bad = {**span, "traceId": "not-hex"}
    doc = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "fe"}}]
                },
                "scopeSpans": [{"spans": [span, bad]}],
            }
        ]
    }
    code, body = post(rx.port, json.dumps(doc).encode(), "application/json")
    assert code == 200
    reply = json.loads(body)
    assert reply["partialSuccess"]["rejectedSpans"] == "1"
    [got] = store.spans_since(0)
    assert got.trace_id == "5b8efff798038103d269b633813fc60c"
    assert got.duration_ms == 1000.0 and got.http_status == 200
    assert store.stats().rejected == 1


def test_bad_input_gets_documented_codes_and_receiver_survives(
    receiver: tuple[OtlpHttpReceiver, TraceStore],
) -> None:
    rx, store = receiver
    code, body = post(rx.port, b"\xff\x00garbage", "application/x-protobuf")
    assert code == 400
    status = status_pb2.Status()
    status.ParseFromString(body)
    assert "invalid" in status.message.lower()
    assert post(rx.port, b"{not json", "application/json")[0] == 400
    assert post(rx.port, b"hello", "text/plain")[0] == 415
    assert post(rx.port, b"x" * (65 * 1024), "application/x-protobuf")[0] == 413
    assert post(rx.port, b"\x1f\x8bnope", "application/x-protobuf", **{"Content-Encoding": "gzip"})[0] == 400
    # Still serving, and gzip of a valid (empty) request is accepted.
    code, body = post(rx.port, gzip.compress(b""), "application/x-protobuf", **{"Content-Encoding": "gzip"})
    assert code == 200
    ExportTraceServiceResponse().ParseFromString(body)
    assert store.stats().spans_in == 0
