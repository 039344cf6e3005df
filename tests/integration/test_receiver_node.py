"""The OTLP/HTTP receiver against the Node.js SDK's protobuf exporter (a second real client).

Needs ``tests/node/node_modules``: ``npm ci --prefix tests/node``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from typing import Any

import pytest

from sre_space.telemetry.intake import Intake
from sre_space.telemetry.model import Span, SpanKind
from sre_space.telemetry.otlp import Decoded
from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.store import TraceStore

import helpers

NODE_DIR = helpers.TESTS / "node"

pytestmark = [
    pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed"),
    pytest.mark.skipif(
        not (NODE_DIR / "node_modules" / "@opentelemetry" / "exporter-trace-otlp-proto").is_dir(),
        reason="the Node.js exporter is not installed: run `npm ci --prefix tests/node`",
    ),
]


def run_node(endpoint: str, compression: str) -> list[dict[str, Any]]:
    proc = subprocess.run(
        ["node", str(NODE_DIR / "export.mjs"), endpoint, compression],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    sent = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert len(sent) == 2, proc.stdout
    return sent


def check_arrived(sent: list[dict[str, Any]], arrived: list[Span]) -> None:
    got = {s.span_id: s for s in arrived}
    assert len(got) == len(sent)
    for want in sent:
        span = got[want["spanId"]]
        assert span.trace_id == want["traceId"]
        assert span.parent_id == want["parentSpanId"]
        assert span.name == want["name"] and span.service == "node-frontend"
        assert span.kind == SpanKind(want["kind"] + 1)  # the JS API counts from INTERNAL = 0
        assert span.attributes == want["attributes"]
        assert span.error == (want["status"]["code"] == 2)
        assert span.status_message == want["status"].get("message", "")
        assert [e.name for e in span.events] == want["events"]
        assert span.resource["deployment.environment"] == "test"
    client = next(s for s in arrived if s.kind == SpanKind.CLIENT)
    assert client.exception_message == "Error: checkout timed out"


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_node_exporter_spans_arrive_intact(compression: str) -> None:
    store = TraceStore()
    arrived: list[Span] = []
    store.subscribe(arrived.extend)  # each span as it reaches the store
    rx = OtlpHttpReceiver(store, "127.0.0.1", 0, max_body_bytes=1 << 20).start()
    try:
        sent = run_node(rx.endpoint, compression)
    finally:
        rx.stop()
    check_arrived(sent, arrived)
    assert rx.intake.stats().bad_requests == 0


def test_node_exporter_retries_after_503_and_nothing_is_lost() -> None:
    gate, entered = threading.Event(), threading.Event()
    store = TraceStore()
    arrived: list[Span] = []

    def detector(spans: list[Span]) -> None:
        if not entered.is_set():
            entered.set()
            gate.wait(10)
        arrived.extend(s for s in spans if s.service == "node-frontend")

    store.subscribe(detector)
    intake = Intake(store, max_batches=1, max_spans=10, retry_after_s=1).start()
    rx = OtlpHttpReceiver(intake, "127.0.0.1", 0, max_body_bytes=1 << 20).start()
    filler = Span("f" * 32, "f" * 16, None, "filler", "x", 0, 0)
    try:
        intake.offer(Decoded(spans=[filler]), "test")  # the consumer blocks on it
        assert entered.wait(30)
        intake.offer(Decoded(spans=[filler]), "test")  # and the queue is full

        def open_after_first_refusal() -> None:  # room again once the exporter was told 503
            deadline = time.monotonic() + 30
            while intake.stats().refused_requests == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
            gate.set()

        threading.Thread(target=open_after_first_refusal, daemon=True).start()
        sent = run_node(rx.endpoint, "none")
        assert intake.flush(10)
    finally:
        gate.set()
        rx.stop()
        intake.stop()
    assert intake.stats().refused_requests >= 1  # the first try was refused...
    check_arrived(sent, arrived)  # ...and the retry delivered every span
