"""The OTLP/gRPC receiver against the real OpenTelemetry SDK gRPC exporter, and bad input."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.trace import SpanKind as OtelKind
from opentelemetry.trace import Status, StatusCode

from sre_space.telemetry.grpc_receiver import OtlpGrpcReceiver
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.model import SpanKind
from sre_space.telemetry.store import TraceStore

from helpers import BlockedStore, wait_until

METHOD = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def receiver() -> Iterator[tuple[OtlpGrpcReceiver, TraceStore]]:
    store = TraceStore(max_spans=10_000)
    rx = OtlpGrpcReceiver(store, "127.0.0.1", 0, max_message_bytes=64 * 1024).start()
    yield rx, store
    rx.stop()


def export_raw(port: int, body: bytes) -> tuple[grpc.StatusCode, bytes, Any]:
    """Call Export with bytes as they are; the status code, reply and trailing metadata."""
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
        try:
            reply, info = call.with_call(body, timeout=5)
            return info.code(), reply, info.trailing_metadata()
        except grpc.RpcError as err:
            return err.code(), b"", err.trailing_metadata()


def rich_status(metadata: Any) -> status_pb2.Status:
    status = status_pb2.Status()
    for key, value in metadata or ():
        if key == "grpc-status-details-bin":
            status.ParseFromString(value)
    return status


@pytest.mark.parametrize("compression", [grpc.Compression.NoCompression, grpc.Compression.Gzip])
def test_real_sdk_grpc_exporter_spans_arrive_intact(
    receiver: tuple[OtlpGrpcReceiver, TraceStore], compression: grpc.Compression
) -> None:
    rx, store = receiver
    provider = TracerProvider(resource=Resource.create({"service.name": "payments"}))
    exporter = OTLPSpanExporter(
        endpoint=f"127.0.0.1:{rx.port}", insecure=True, compression=compression
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("POST /charge", kind=OtelKind.SERVER) as parent:
        parent.set_attribute("http.response.status_code", 502)
        with tracer.start_as_current_span("card api", kind=OtelKind.CLIENT) as child:
            child.record_exception(ConnectionError("card processor refused"))
            child.set_status(Status(StatusCode.ERROR, "refused"))
    provider.shutdown()

    spans = wait_until(lambda: store.spans_since(0), 30, what="spans at the store")
    by_name = {s.name: s for s in spans}
    server, client = by_name["POST /charge"], by_name["card api"]
    assert server.service == client.service == "payments"
    assert server.kind == SpanKind.SERVER and client.kind == SpanKind.CLIENT
    assert client.parent_id == server.span_id and client.trace_id == server.trace_id
    assert client.error and not server.error and server.http_status == 502
    assert client.exception_message == "ConnectionError: card processor refused"


def test_bad_payload_is_invalid_argument_with_bad_request(
    receiver: tuple[OtlpGrpcReceiver, TraceStore],
) -> None:
    rx, store = receiver
    code, _, metadata = export_raw(rx.port, b"\xff\x00garbage")
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    status = rich_status(metadata)
    assert "invalid" in status.message.lower()
    bad_request = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(bad_request)
    assert rx.intake.stats().bad_requests == 1

    # Too big: gRPC's own RESOURCE_EXHAUSTED, without RetryInfo (not retryable).
    code, _, metadata = export_raw(rx.port, b"\x0a" + b"\x00" * (70 * 1024))
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert not rich_status(metadata).details

    # Partial success: a span with a zero trace id is refused alone.
    req = ExportTraceServiceRequest()
    scope = req.resource_spans.add().scope_spans.add()
    good, bad = scope.spans.add(), scope.spans.add()
    good.trace_id, good.span_id, good.name = b"\x01" * 16, b"\x02" * 8, "ok"
    bad.trace_id, bad.span_id = bytes(16), b"\x03" * 8
    code, reply, _ = export_raw(rx.port, req.SerializeToString())
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(reply)
    assert code == grpc.StatusCode.OK and resp.partial_success.rejected_spans == 1
    # Empty request: success, partial_success unset.
    code, reply, _ = export_raw(rx.port, b"")
    resp = ExportTraceServiceResponse()
    resp.ParseFromString(reply)
    assert code == grpc.StatusCode.OK and not resp.HasField("partial_success")
    assert store.stats().spans_in == 1 and store.stats().rejected == 1


def test_full_intake_is_unavailable_with_retry_info() -> None:
    blocked = BlockedStore()
    store, entered = blocked.store, blocked.entered
    intake = Intake(store, max_batches=1, max_spans=100, retry_after_s=3).start()
    rx = OtlpGrpcReceiver(intake, "127.0.0.1", 0, max_message_bytes=1 << 20).start()
    try:
        req = ExportTraceServiceRequest()
        s = req.resource_spans.add().scope_spans.add().spans.add()
        s.trace_id, s.span_id = b"\x01" * 16, b"\x02" * 8
        body = req.SerializeToString()
        assert export_raw(rx.port, body)[0] == grpc.StatusCode.OK
        assert entered.wait(30)
        assert export_raw(rx.port, body)[0] == grpc.StatusCode.OK  # queued
        code, _, metadata = export_raw(rx.port, body)
        assert code == grpc.StatusCode.UNAVAILABLE
        retry = error_details_pb2.RetryInfo()
        assert rich_status(metadata).details[0].Unpack(retry)
        assert retry.retry_delay.seconds == 3
        assert intake.stats().refused_requests == 1
    finally:
        blocked.release()
        rx.stop()
        intake.stop()
    assert store.stats().spans_in == 2


def test_port_in_use_is_an_os_error(receiver: tuple[OtlpGrpcReceiver, TraceStore]) -> None:
    rx, store = receiver
    with pytest.raises(OSError):
        OtlpGrpcReceiver(store, "127.0.0.1", rx.port, max_message_bytes=1024)


def test_generated_servicer_registration_works_too() -> None:
    """The servicer is opentelemetry-proto's TraceServiceServicer: the generated helper registers it."""
    from concurrent.futures import ThreadPoolExecutor

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2_grpc import (
        add_TraceServiceServicer_to_server,
    )

    from sre_space.telemetry.grpc_receiver import OtlpTraceServicer

    store = TraceStore()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    add_TraceServiceServicer_to_server(OtlpTraceServicer(Intake(store)), server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        provider = TracerProvider(resource=Resource.create({"service.name": "generated"}))
        provider.add_span_processor(
            SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True))
        )
        with provider.get_tracer("t").start_as_current_span("via generated stub") as span:
            span.set_attribute("k", "v")
        provider.shutdown()
    finally:
        server.stop(1).wait(5)
    [got] = store.spans_since(0)
    assert got.service == "generated" and got.attributes == {"k": "v"}
