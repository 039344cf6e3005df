"""The lab's telemetry contract, from a running lab under faults.

The squad learns from what the lab emits, so the lab must emit only what an
ordinary instrumented service does: spans from OpenTelemetry's instrumentation
libraries with their semantic-convention attributes, resources that say which
service, version, instance and environment, and nowhere a word of sre-space or
of the fault that was injected.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from sre_space.config import Settings
from sre_space.lab.control import LabClient
from sre_space.lab.faults import FAULTS
from sre_space.lab.launcher import start_lab, stop_lab
from test_lab import CLIENT, SERVER, Rec, Sink

from helpers import wait_until

pytestmark = pytest.mark.lab

FORBIDDEN = re.compile(
    r"sre_space|sre-space|" + "|".join(rf"\b{re.escape(name)}\b" for name in FAULTS), re.I
)
RESOURCE_KEYS = (
    "service.name",
    "service.version",
    "service.instance.id",
    "deployment.environment.name",
)


class RawSink(Sink):
    """The test lab's sink, keeping every export request as it came."""

    def __init__(self) -> None:
        self.raw: list[ExportTraceServiceRequest] = []
        super().__init__()

    def add(self, req: ExportTraceServiceRequest) -> None:
        with self.lock:
            self.raw.append(req)
        super().add(req)


@pytest.fixture(scope="module")
def sink() -> Iterator[RawSink]:
    s = RawSink()
    yield s
    s.server.shutdown()


@pytest.fixture(scope="module")
def client(sink: RawSink, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabClient]:
    st = Settings(home=tmp_path_factory.mktemp("lab") / "home", otlp_http_port=sink.port)
    start_lab(st, timeout_s=120)
    yield LabClient.from_settings(st)
    stop_lab(st)


def _exception_types(sink: Sink, since_n: int) -> set[str]:
    with sink.lock:
        spans = sink.spans[since_n:]
    return {
        str(attrs.get("exception.type"))
        for s in spans
        for name, attrs in s.events
        if name == "exception"
    }


def _under(client: LabClient, sink: Sink, fault: str, expect: str, **kw: Any) -> None:
    """Inject the fault until its failure shows (as the library names it), then revert."""
    mark = len(sink.spans)
    client.inject(fault, **kw)
    try:
        wait_until(
            lambda: expect in _exception_types(sink, mark), 120, what=f"{expect} under {fault}"
        )
    finally:
        client.revert(fault)


def _texts(req: ExportTraceServiceRequest) -> Iterator[tuple[str, str]]:
    """Every piece of text in an export: resource, scope, span, attribute, event, status."""
    for rs in req.resource_spans:
        for a in rs.resource.attributes:
            yield "resource", f"{a.key}={a.value}"
        for ss in rs.scope_spans:
            yield "scope", ss.scope.name
            for s in ss.spans:
                yield "span", s.name
                yield "status", s.status.message
                for a in s.attributes:
                    yield f"attribute of {s.name}", f"{a.key}={a.value}"
                for e in s.events:
                    yield f"event of {s.name}", e.name
                    for a in e.attributes:
                        yield f"event attribute of {s.name}", f"{a.key}={a.value}"


def test_the_labs_telemetry_is_what_instrumented_services_emit(
    sink: RawSink, client: LabClient
) -> None:
    wait_until(
        lambda: (
            {s.service for s in sink.select(lambda s: True)}
            >= {"frontend", "checkout", "payments", "inventory"}
        ),
        60,
        what="spans from every service",
    )
    # The failures users meet, each in the words of the library that raises it.
    _under(client, sink, "db-timeout", "sqlalchemy.exc.TimeoutError")
    _under(client, sink, "http-errors", "KeyError", params={"error_rate": 1.0})
    _under(client, sink, "dependency-down", "httpx.ConnectError")
    _under(client, sink, "hang", "httpx.ReadTimeout", replicas="all")

    with sink.lock:
        requests = list(sink.raw)
    spans = sink.select(lambda s: True)
    assert spans and requests

    # Every span from one of OpenTelemetry's instrumentation libraries.
    scopes = {ss.scope.name for r in requests for rs in r.resource_spans for ss in rs.scope_spans}
    assert scopes and all(name.startswith("opentelemetry.instrumentation.") for name in scopes), (
        scopes
    )
    assert {
        "opentelemetry.instrumentation.asgi",
        "opentelemetry.instrumentation.httpx",
        "opentelemetry.instrumentation.sqlalchemy",
    } <= scopes

    # Resources say which service, release, instance and environment.
    for s in spans:
        assert all(s.resource.get(k) for k in RESOURCE_KEYS), s.resource

    # HTTP and database spans carry their semantic-convention attributes.
    def has(rec: Rec, *keys: str) -> bool:
        return all(k in rec.attrs for k in keys)

    servers = [s for s in spans if s.kind == SERVER]
    assert servers and all(
        has(s, "http.request.method", "url.path", "url.scheme", "http.route") for s in servers
    )
    answered = [s for s in servers if "http.response.status_code" in s.attrs]
    assert len(answered) > 0.5 * len(servers)  # the rest were hung and cut short by the caller
    http_clients = [s for s in spans if s.kind == CLIENT and "url.full" in s.attrs]
    assert http_clients and all(
        has(s, "http.request.method", "server.address", "server.port") for s in http_clients
    )
    db = [s for s in spans if s.kind == CLIENT and "db.system.name" in s.attrs]
    assert db and all(has(s, "server.address", "server.port", "db.namespace") for s in db)
    assert any(has(s, "db.query.text", "db.operation.name") for s in db)
    # Errors as the SDK records them: an exception event and status ERROR on the span.
    failed = [s for s in spans if s.error and s.events]
    assert failed and all(
        {"exception.type", "exception.message", "exception.stacktrace"}
        <= set(dict(s.events)["exception"])
        for s in failed
        if "exception" in dict(s.events)
    )

    # Nowhere a word of the tool, or of the fault.
    leaks = [
        (where, text[:200]) for r in requests for where, text in _texts(r) if FORBIDDEN.search(text)
    ]
    assert not leaks, leaks[:5]
