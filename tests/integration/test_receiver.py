"""The OTLP/HTTP receiver against the real OpenTelemetry SDK exporter, and bad input."""

from __future__ import annotations

import gzip
import http.client
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from google.rpc import status_pb2
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import Status, StatusCode

from sre_space.telemetry.intake import Intake
from sre_space.telemetry.model import SpanKind
from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.store import TraceStore

import helpers
from helpers import BlockedStore, wait_until

FIXTURES = helpers.FIXTURES / "telemetry"
PB = "application/x-protobuf"


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
        with exc:  # the error holds the response's socket
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

    spans = wait_until(lambda: store.spans_since(0), 30, what="spans at the store")
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


# --- more of the OTLP/HTTP spec ---------------------------------------------------


def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send bytes as they are (chunked bodies, odd methods); read one response."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(data)
        resp = http.client.HTTPResponse(sock)
        resp.begin()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()


def one_span_request(trace: bytes = b"\x01" * 16, span: bytes = b"\x02" * 8) -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "svc"
    s = rs.scope_spans.add().spans.add()
    s.trace_id, s.span_id, s.name, s.kind = trace, span, "op", 2
    return bytes(req.SerializeToString())


def test_chunked_protobuf_and_gzip_json_are_accepted(
    receiver: tuple[OtlpHttpReceiver, TraceStore],
) -> None:
    rx, store = receiver
    body = one_span_request()
    chunked = b"".join(
        b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:])
    ) + b"0\r\n\r\n"
    code, headers, reply = raw_request(
        rx.port,
        b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-protobuf\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunked,
    )
    assert code == 200 and headers["content-type"] == "application/x-protobuf"
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(reply)
    assert not resp.HasField("partial_success")  # full success: left unset

    doc = json.loads((FIXTURES / "otlp_trace.json").read_text())
    code, reply = post(
        rx.port, gzip.compress(json.dumps(doc).encode()), "application/json; charset=utf-8",
        **{"Content-Encoding": "gzip"},
    )
    assert code == 200 and json.loads(reply) == {}
    assert store.stats().spans_in == 3


def test_protobuf_partial_success_and_json_error_bodies(
    receiver: tuple[OtlpHttpReceiver, TraceStore],
) -> None:
    rx, store = receiver
    req = ExportTraceServiceRequest()
    req.ParseFromString(one_span_request())
    bad = req.resource_spans[0].scope_spans[0].spans.add()
    bad.trace_id, bad.span_id = bytes(16), b"\x03" * 8
    code, body = post(rx.port, req.SerializeToString(), "application/x-protobuf")
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(body)
    assert code == 200 and resp.partial_success.rejected_spans == 1
    assert "trace_id" in resp.partial_success.error_message

    code, body = post(rx.port, b'{"resourceSpans": 5}', "application/json")
    assert code == 400
    status = json.loads(body)  # a JSON request gets a JSON Status
    assert "resourceSpans" in status["message"]
    assert status["details"][0]["@type"].endswith("google.rpc.BadRequest")
    assert store.stats().rejected == 1 and store.stats().spans_in == 1
    assert rx.intake.stats().bad_requests == 1


def test_paths_methods_encodings_and_lengths(receiver: tuple[OtlpHttpReceiver, TraceStore]) -> None:
    rx, _ = receiver
    req = urllib.request.Request(f"http://127.0.0.1:{rx.port}/v1/metrics", data=b"", method="POST",
                                 headers={"Content-Type": "application/x-protobuf"})
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=5)
    err.value.close()
    assert err.value.code == 404
    code, headers, _ = raw_request(rx.port, b"GET /v1/traces HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 405 and headers["allow"] == "POST"
    assert post(rx.port, b"x", "application/x-protobuf", **{"Content-Encoding": "br"})[0] == 415
    code, _, _ = raw_request(rx.port, b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/x-protobuf\r\n\r\n")
    assert code == 411
    # A small gzip bomb: fine on the wire, past the limit once inflated.
    bomb = gzip.compress(b"\x00" * (1 << 20))
    assert len(bomb) < 64 * 1024
    assert post(rx.port, bomb, "application/x-protobuf", **{"Content-Encoding": "gzip"})[0] == 413
    truncated = gzip.compress(one_span_request())[:-6]
    assert post(rx.port, truncated, "application/x-protobuf", **{"Content-Encoding": "gzip"})[0] == 400


def test_full_intake_answers_503_with_retry_after_then_recovers() -> None:
    blocked = BlockedStore()
    store, entered = blocked.store, blocked.entered
    intake = Intake(store, max_batches=1, max_spans=1000, retry_after_s=2).start()
    rx = OtlpHttpReceiver(intake, "127.0.0.1", 0, max_body_bytes=1 << 20).start()
    try:
        assert post(rx.port, one_span_request(b"\x01" * 16), PB)[0] == 200  # consumer blocks on it
        assert entered.wait(30)
        assert post(rx.port, one_span_request(b"\x02" * 16), PB)[0] == 200  # queued
        for content_type in (PB, "application/json"):
            body = one_span_request(b"\x03" * 16) if content_type == PB else b"{}"
            req = urllib.request.Request(f"http://127.0.0.1:{rx.port}/v1/traces", data=body,
                                         headers={"Content-Type": content_type}, method="POST")
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == 503 and err.value.headers["Retry-After"] == "2"
            assert "retry later" in err.value.read().decode("latin-1")
            err.value.close()  # the error holds the response's socket
        assert intake.stats().refused_requests == 2
        blocked.release()
        assert intake.flush(5)
        assert post(rx.port, one_span_request(b"\x03" * 16), PB)[0] == 200
        assert intake.flush(5)
    finally:
        blocked.release()
        rx.stop()
        intake.stop()
    assert store.stats().spans_in == 3  # every accepted span arrived


def test_connections_past_the_limit_get_503() -> None:
    store = TraceStore()
    rx = OtlpHttpReceiver(store, "127.0.0.1", 0, max_body_bytes=1 << 20, max_connections=1).start()
    try:
        with socket.create_connection(("127.0.0.1", rx.port), timeout=5) as held:
            held.sendall(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 2\r\n\r\n{}")
            assert held.recv(12).startswith(b"HTTP/1.1 200")
            code, headers, _ = raw_request(rx.port, b"POST /v1/traces HTTP/1.1\r\n\r\n")
            assert code == 503 and headers["retry-after"] == "1"
    finally:
        rx.stop()


def test_python_sdk_json_like_traffic_many_batches_lazy_attributes(
    receiver: tuple[OtlpHttpReceiver, TraceStore],
) -> None:
    """Attributes are decoded on demand, long after their batch (and many others) arrived."""
    rx, store = receiver
    for i in range(40):
        req = ExportTraceServiceRequest()
        s = req.resource_spans.add().scope_spans.add().spans.add()
        s.trace_id, s.span_id, s.name = bytes([i + 1]) * 16, bytes([i + 1]) * 8, f"op{i}"
        a = s.attributes.add()
        a.key, a.value.int_value = "batch", i
        assert post(rx.port, req.SerializeToString(), PB)[0] == 200
    spans = store.spans_since(0)
    assert sorted(s.attributes["batch"] for s in spans) == list(range(40))


def test_senses_start_both_receivers_and_report_flat_stats() -> None:
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    from sre_space.config import Settings
    from sre_space.errors import Unavailable
    from sre_space.telemetry.senses import Senses

    settings = Settings(otlp_http_port=0, otlp_grpc_port=0)
    store = TraceStore()
    senses = Senses(settings, store).start()
    try:
        endpoints = senses.endpoints()
        provider = TracerProvider(resource=Resource.create({"service.name": "both"}))
        provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=endpoints["otlp_http"])))
        provider.add_span_processor(
            SimpleSpanProcessor(GrpcExporter(endpoint=endpoints["otlp_grpc"], insecure=True))
        )
        with provider.get_tracer("t").start_as_current_span("twice"):
            pass
        provider.shutdown()
        wait_until(lambda: store.stats().spans_in == 2, 10, what="one span per protocol")
        stats = senses.stats()
        for key in ("spans_in", "rejected", "evicted_spans", "traces_held", "spans_per_s"):
            assert key in stats  # what the status command prints
        assert stats["accepted"] == {"otlp_http": 1, "otlp_grpc": 1}
        # A taken port is Unavailable, and leaves nothing running.
        busy = Settings(otlp_http_port=0, otlp_grpc_port=int(endpoints["otlp_grpc"].rsplit(":", 1)[1]))
        with pytest.raises(Unavailable, match="OTLP/gRPC"):
            Senses(busy, TraceStore()).start()
    finally:
        senses.stop()
