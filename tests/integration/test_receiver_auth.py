"""Receivers with a bearer token: what the Compose stack's Collector must send the mind.

Off loopback (the Docker bridge) a receiver refuses to start without a token; with
one, a push without ``Authorization: Bearer <token>`` gets 401 (HTTP) or
UNAUTHENTICATED (gRPC) and none of its spans reach the store.
"""

from __future__ import annotations

import urllib.error
import urllib.request

import grpc
import pytest
import yaml
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as HttpExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from sre_space.config import Settings
from sre_space.errors import Unavailable, UsageError
from sre_space.infra.compose import mind_settings
from sre_space.telemetry.grpc_receiver import OtlpGrpcReceiver
from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.senses import Senses
from sre_space.telemetry.store import TraceStore

import helpers
from helpers import wait_until

TOKEN = "s3cret-token"
COMPOSE_DIR = helpers.ROOT / "compose"


def one_span() -> bytes:
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    kv = rs.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "intruder"
    span = rs.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name, span.kind = b"\x01" * 16, b"\x02" * 8, "op", 2
    return bytes(req.SerializeToString())


def post(port: int, **headers: str) -> tuple[int, dict[str, str]]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/v1/traces",
        data=one_span(),
        headers={"Content-Type": "application/x-protobuf", **headers},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:  # the error holds the response's socket
            return exc.code, dict(exc.headers)


def export_with(exporter: SpanExporter) -> SpanExportResult:
    """One span through a real SDK exporter; the exporter's own verdict."""
    results: list[SpanExportResult] = []

    class Recording(SpanExporter):
        def export(self, spans):  # type: ignore[no-untyped-def]
            results.append(exporter.export(spans))
            return results[-1]

        def shutdown(self) -> None:
            exporter.shutdown()

    provider = TracerProvider(resource=Resource.create({"service.name": "collector"}))
    provider.add_span_processor(SimpleSpanProcessor(Recording()))
    with provider.get_tracer("t").start_as_current_span("pushed"):
        pass
    provider.shutdown()
    return results[0]


def test_http_receiver_with_a_token_answers_401_without_it() -> None:
    store = TraceStore()
    rx = OtlpHttpReceiver(store, "127.0.0.1", 0, max_body_bytes=64 * 1024, token=TOKEN).start()
    try:
        code, headers = post(rx.port)
        assert code == 401 and headers.get("WWW-Authenticate") == "Bearer"
        assert post(rx.port, Authorization="Bearer wrong")[0] == 401
        assert post(rx.port, Authorization=TOKEN)[0] == 401  # no scheme
        assert store.spans_since(0) == []
        endpoint = f"http://127.0.0.1:{rx.port}/v1/traces"
        refused = export_with(HttpExporter(endpoint=endpoint, timeout=10))
        assert refused is SpanExportResult.FAILURE
        assert store.spans_since(0) == []
        sent = export_with(
            HttpExporter(endpoint=endpoint, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)
        )
        assert sent is SpanExportResult.SUCCESS
        assert [s.name for s in store.spans_since(0)] == ["pushed"]
    finally:
        rx.stop()


def test_grpc_receiver_with_a_token_answers_unauthenticated_without_it() -> None:
    store = TraceStore()
    rx = OtlpGrpcReceiver(store, "127.0.0.1", 0, max_message_bytes=64 * 1024, token=TOKEN).start()
    try:
        method = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"
        with grpc.insecure_channel(f"127.0.0.1:{rx.port}") as channel:
            call = channel.unary_unary(method, request_serializer=None, response_deserializer=None)
            with pytest.raises(grpc.RpcError) as refused:
                call(one_span(), timeout=10, metadata=(("authorization", "Bearer wrong"),))
            assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert store.spans_since(0) == []
        endpoint = f"127.0.0.1:{rx.port}"
        assert export_with(GrpcExporter(endpoint=endpoint, insecure=True, timeout=10)) is (
            SpanExportResult.FAILURE
        )
        sent = export_with(
            GrpcExporter(
                endpoint=endpoint,
                insecure=True,
                headers={"authorization": f"Bearer {TOKEN}"},
                timeout=10,
            )
        )
        assert sent is SpanExportResult.SUCCESS
        wait_until(lambda: store.spans_since(0), 10, what="the authenticated span")
    finally:
        rx.stop()


def test_a_receiver_off_loopback_needs_a_token() -> None:
    for host in ("0.0.0.0", "172.17.0.1", "::"):
        with pytest.raises(UsageError, match="needs a bearer token"):
            OtlpHttpReceiver(TraceStore(), host, 0, max_body_bytes=1024)
        with pytest.raises(UsageError, match="needs a bearer token"):
            OtlpGrpcReceiver(TraceStore(), host, 0, max_message_bytes=1024)
        with pytest.raises(UsageError, match="otlp_token"):
            Senses(Settings(otlp_host=host, otlp_http_port=0, otlp_grpc_port=0), TraceStore()).start()
    # Loopback stays open by default, as before.
    OtlpHttpReceiver(TraceStore(), "127.0.0.1", 0, max_body_bytes=1024).stop()
    # The token never shows in the settings' text (logs, tracebacks).
    assert TOKEN not in repr(Settings(otlp_token=TOKEN))


def test_compose_sends_the_token_the_mind_requires() -> None:
    with pytest.raises(Unavailable, match="token"):
        mind_settings({}, via="otlp", bridge_address="172.17.0.1")
    pushed = mind_settings({}, via="otlp", bridge_address="172.17.0.1", otlp_token=TOKEN)
    assert Settings(**pushed).otlp_token is not None
    assert Settings(**pushed).otlp_token.get_secret_value() == TOKEN  # type: ignore[union-attr]
    collector = yaml.safe_load((COMPOSE_DIR / "otel-collector.yaml").read_text())
    headers = collector["exporters"]["otlphttp/mind"]["headers"]
    assert headers == {"Authorization": "Bearer ${env:SRE_SPACE_MIND_OTLP_TOKEN}"}
    stack = yaml.safe_load((COMPOSE_DIR / "docker-compose.yml").read_text())
    env = stack["services"]["otel-collector"]["environment"]
    assert env["SRE_SPACE_MIND_OTLP_TOKEN"] == "${SRE_SPACE_MIND_OTLP_TOKEN:-}"
