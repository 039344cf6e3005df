"""Pull sources: Jaeger's /api/v3 served by a real local HTTP server, Kafka messages replayed.

Jaeger and Kafka themselves cannot run here. The Jaeger tests start a stdlib
HTTP server that answers the v3 API's recorded shapes and checks the query the
source sends; the Kafka tests replay messages recorded from the OpenTelemetry
SDK's protobuf encoder (what the Collector writes to ``otlp_spans``). The e2e
tests at the bottom run against real servers when the environment names them.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from sre_space.errors import Unavailable, UsageError
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.model import SpanKind
from sre_space.telemetry.sources import JaegerSource, KafkaSource, rfc3339
from sre_space.telemetry.store import TraceStore

import helpers
from helpers import wait_until

FIXTURES = helpers.FIXTURES / "telemetry"
KAFKA_FIXTURE = FIXTURES / "kafka_otlp_spans.jsonl"


# --- a real HTTP server with Jaeger v3's answers ---------------------------------


class FakeJaeger(ThreadingHTTPServer):
    daemon_threads = True
    answers: dict[str, Any]
    queries: list[tuple[str, dict[str, list[str]]]]


class _JaegerHandler(BaseHTTPRequestHandler):
    server: FakeJaeger

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        self.server.queries.append((url.path, query))
        answer = self.server.answers.get(url.path)
        if url.path == "/api/v3/traces" and answer is not None:
            for required in ("query.start_time_min", "query.start_time_max"):
                if required not in query:  # Jaeger answers 400 without them
                    answer = (400, {"error": {"httpCode": 400, "message": f"{required} required"}})
        if answer is None:
            answer = (404, {"error": {"httpCode": 404, "message": "trace not found"}})
        code, doc = answer
        body = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def jaeger() -> Iterator[FakeJaeger]:
    server = FakeJaeger(("127.0.0.1", 0), _JaegerHandler)
    server.answers = {}
    server.queries = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def url_of(server: FakeJaeger) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


def v3_traces() -> dict[str, Any]:
    return dict(json.loads((FIXTURES / "jaeger_v3.json").read_text()))


def test_jaeger_poll_sends_v3_query_and_hands_spans_to_the_store(jaeger: FakeJaeger) -> None:
    jaeger.answers["/api/v3/services"] = (200, {"services": ["inventory"]})
    jaeger.answers["/api/v3/traces"] = (200, v3_traces())
    store = TraceStore()
    source = JaegerSource(url_of(jaeger), store, interval_s=5, overlap_s=30, search_depth=50)

    now = 1_700_000_010.0
    assert source.poll_once(now=now) == 2
    spans = {s.name: s for s in store.spans_since(0)}
    assert spans["GET /stock"].service == "inventory" and spans["GET /stock"].kind == SpanKind.SERVER
    assert spans["SELECT stock"].error and spans["SELECT stock"].status_message == "lock wait timeout"
    assert spans["SELECT stock"].parent_id == spans["GET /stock"].span_id

    path, query = jaeger.queries[-1]
    assert path == "/api/v3/traces"
    assert query["query.service_name"] == ["inventory"]
    assert query["query.search_depth"] == ["50"] and query["query.num_traces"] == ["50"]
    assert query["query.start_time_min"] == [rfc3339(now - 5 - 30)]
    assert query["query.start_time_max"] == [rfc3339(now + 1)]
    assert query["query.start_time_min"][0].endswith("Z")

    # The next poll overlaps the last one: the same spans are not handed on twice.
    assert source.poll_once(now=now + 5) == 0
    assert source.stats.duplicates == 2
    assert store.stats().spans_in == 2
    assert jaeger.queries[-1][1]["query.start_time_min"] == [rfc3339(now - 30)]


def test_jaeger_streamed_results_404_and_errors(jaeger: FakeJaeger) -> None:
    # A streaming gateway writes one {"result": ...} per line.
    doc = v3_traces()
    first, second = json.loads(json.dumps(doc)), json.loads(json.dumps(doc))
    first["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"] = doc["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][:1]
    second["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"] = doc["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][1:]
    jaeger.answers["/api/v3/traces"] = (200, (json.dumps(first) + "\n" + json.dumps(second) + "\n").encode())
    store = TraceStore()
    source = JaegerSource(url_of(jaeger), store, services=["inventory"])
    assert len(source.find_traces("inventory", 0, time.time()).spans) == 2

    # No traces: Jaeger answers 404.
    del jaeger.answers["/api/v3/traces"]
    assert source.find_traces("inventory", 0, time.time()).spans == []
    assert source.get_trace("0af7651916cd43dd8448eb211c80319c").spans == []

    jaeger.answers["/api/v3/traces"] = (500, {"error": {"httpCode": 500, "message": "storage down"}})
    with pytest.raises(Unavailable, match="storage down"):
        source.poll_once()
    assert source.stats.errors == 1


def test_jaeger_unreachable_is_unavailable() -> None:
    source = JaegerSource("http://127.0.0.1:9", TraceStore(), timeout_s=2)
    with pytest.raises(Unavailable, match="unreachable"):
        source.services()


def test_jaeger_source_thread_polls_until_stopped(jaeger: FakeJaeger) -> None:
    jaeger.answers["/api/v3/services"] = (200, {"services": ["inventory"]})
    jaeger.answers["/api/v3/traces"] = (200, v3_traces())
    store = TraceStore()
    intake = Intake(store).start()
    source = JaegerSource(url_of(jaeger), intake, interval_s=0.05).start()
    try:
        wait_until(lambda: store.stats().spans_in == 2, 10, what="spans pulled from jaeger")
        wait_until(lambda: source.stats.polls >= 3, 10, what="more polls")
    finally:
        source.stop()
        intake.stop()
    assert store.stats().spans_in == 2
    assert intake.stats().accepted == {"jaeger": 2}


def test_senses_pull_jaeger_only_when_asked(jaeger: FakeJaeger) -> None:
    from sre_space.config import Settings
    from sre_space.telemetry.senses import Senses

    jaeger.answers["/api/v3/services"] = (200, {"services": ["inventory"]})
    jaeger.answers["/api/v3/traces"] = (200, v3_traces())
    quiet = Settings(otlp_http_port=0, otlp_grpc_port=-1, jaeger_url=url_of(jaeger))
    senses = Senses(quiet, TraceStore()).start()
    assert senses.sources == [] and senses.endpoints()["otlp_grpc"] is None
    senses.stop()

    pulling = quiet.model_copy(update={"jaeger_poll_s": 0.05})
    store = TraceStore()
    senses = Senses(pulling, store).start()
    try:
        wait_until(lambda: store.stats().spans_in == 2, 10, what="spans pulled by the mind's senses")
        stats = senses.stats()
        assert stats["sources"]["jaeger"]["spans"] == 2 and stats["accepted"] == {"jaeger": 2}
    finally:
        senses.stop()


# --- Kafka: recorded otlp_proto messages ------------------------------------------


def record_kafka_fixture() -> None:
    """Write KAFKA_FIXTURE from the OpenTelemetry SDK's protobuf encoder (run by hand)."""
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind as OtelKind
    from opentelemetry.trace import Status, StatusCode

    lines = []
    for offset, service in enumerate(["checkout", "payments"]):
        exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        tracer = provider.get_tracer("recorder")
        with tracer.start_as_current_span(f"POST /{service}", kind=OtelKind.SERVER) as parent:
            parent.set_attribute("http.response.status_code", 200 if offset == 0 else 500)
            with tracer.start_as_current_span("db query", kind=OtelKind.CLIENT) as child:
                if offset:
                    child.set_status(Status(StatusCode.ERROR, "deadlock"))
        provider.shutdown()
        spans = exporter.get_finished_spans()
        value = encode_spans(spans).SerializeToString()
        key = f"{spans[0].context.trace_id:032x}"
        lines.append({"topic": "otlp_spans", "partition": offset, "offset": 0, "key": key,
                      "value_b64": base64.b64encode(value).decode()})
    # What a misconfigured producer might leave on the topic.
    lines.append({"topic": "otlp_spans", "partition": 0, "offset": 1, "key": None,
                  "value_b64": base64.b64encode(b"\xff\xfenot protobuf").decode()})
    KAFKA_FIXTURE.write_text("".join(json.dumps(line) + "\n" for line in lines))


class _Msg:
    def __init__(self, value: bytes | None, error: Any = None) -> None:
        self._value, self._error = value, error

    def value(self) -> bytes | None:
        return self._value

    def error(self) -> Any:
        return self._error


class ReplayConsumer:
    """Hands out recorded messages like confluent-kafka's Consumer.poll, then None.

    ``commit(message=..., asynchronous=...)`` is recorded, as are polls, in
    ``log``: the order in which a message is read, accepted and committed.
    """

    def __init__(self, messages: list[_Msg], log: list[str] | None = None) -> None:
        self.messages = list(messages)
        self.closed = False
        self.subscribed: tuple[str, str, str] | None = None
        self.committed: list[_Msg] = []
        self.log = log if log is not None else []

    def poll(self, timeout: float) -> _Msg | None:
        assert not self.closed, "polled after close"
        if self.messages:
            msg = self.messages.pop(0)
            self.log.append(f"poll {msg.value()!r}")
            return msg
        time.sleep(min(timeout, 0.01))
        return None

    def commit(self, *, message: _Msg, asynchronous: bool) -> None:
        assert not self.closed, "committed after close"
        assert asynchronous  # never waits on the broker in the consuming loop
        self.committed.append(message)
        self.log.append(f"commit {message.value()!r}")

    def close(self) -> None:
        self.closed = True


def recorded_messages() -> list[_Msg]:
    lines = [json.loads(line) for line in KAFKA_FIXTURE.read_text().splitlines() if line]
    return [_Msg(base64.b64decode(line["value_b64"])) for line in lines]


def test_kafka_source_consumes_recorded_otlp_proto_messages() -> None:
    consumer = ReplayConsumer([*recorded_messages(), _Msg(None, error="broker transport failure")])

    def factory(brokers: str, group: str, topic: str) -> ReplayConsumer:
        consumer.subscribed = (brokers, group, topic)
        return consumer

    store = TraceStore()
    intake = Intake(store).start()
    source = KafkaSource("127.0.0.1:9092", intake, consumer_factory=factory).start()
    try:
        wait_until(lambda: not consumer.messages, 10, what="all messages consumed")
        assert intake.flush(10)
    finally:
        source.stop()
        intake.stop()
    assert consumer.subscribed == ("127.0.0.1:9092", "sre-space", "otlp_spans")
    assert consumer.closed
    spans = store.spans_since(0)
    assert sorted((s.service, s.name) for s in spans) == [
        ("checkout", "POST /checkout"), ("checkout", "db query"),
        ("payments", "POST /payments"), ("payments", "db query"),
    ]
    failed = next(s for s in spans if s.service == "payments" and s.name == "db query")
    assert failed.error and failed.status_message == "deadlock"
    assert len(store.trace(failed.trace_id)) == 2
    assert source.stats.spans == 4 and source.stats.bad_payloads == 1 and source.stats.errors == 1
    assert intake.stats().bad_requests == 1
    # Every message was done with (two accepted, one unreadable); the error event has no offset.
    assert [m.value() for m in consumer.committed] == [m.value() for m in recorded_messages()]


class ScriptedIntake(Intake):
    """An intake whose put answers from a script: True takes the spans, False has no room."""

    def __init__(self, answers: list[bool], log: list[str]) -> None:
        super().__init__(TraceStore())
        self.answers, self.log = answers, log
        self.on_full: Any = None  # what happens while it has no room (the source stops)

    def put(self, decoded: Any, source: str, timeout: float | None = None) -> bool:
        accepted = self.answers.pop(0) if self.answers else True
        self.log.append(f"put {'accepted' if accepted else 'full'}")
        if not accepted and self.on_full is not None:
            self.on_full()
        return accepted


def test_kafka_commits_a_message_only_after_the_intake_accepted_it() -> None:
    """A fake consumer and intake (no broker here): the commit decision, step by step.

    Offsets are committed by hand, asynchronously, each after its spans are
    accepted; a message the source stopped waiting on is never committed (the
    group reads it again on the next start), and nothing is polled after it.
    """
    first, second, third = [*recorded_messages()[:2], _Msg(b"never polled")]
    log: list[str] = []
    consumer = ReplayConsumer([first, second, third], log)
    intake = ScriptedIntake([True, False, False], log)
    source = KafkaSource("b:9092", intake, consumer_factory=lambda *_: consumer)

    assert source.poll_once(0.01) == 2
    assert log == [f"poll {first.value()!r}", "put accepted", f"commit {first.value()!r}"]

    # The second waits for room: still none when the source is told to stop.
    log.clear()
    intake.on_full = source.stop
    assert source.poll_once(0.01) == 0
    assert log == [f"poll {second.value()!r}", "put full"]
    assert consumer.committed == [first] and consumer.closed
    assert source.stats.spans == 2
    # Stopping, it polls nothing more: committing a later offset would skip the second.
    assert source.poll_once(0.01) == 0
    assert consumer.messages == [third]


def test_kafka_commits_unreadable_messages_but_not_error_events() -> None:
    """A fake consumer (no broker): a bad payload is done with; an error event has no offset."""
    bad, event, empty = _Msg(b"\xff\xfenot protobuf"), _Msg(None, error="_PARTITION_EOF"), _Msg(b"")
    consumer = ReplayConsumer([bad, event, empty])
    source = KafkaSource("b:9092", TraceStore(), consumer_factory=lambda *_: consumer)
    assert [source.poll_once(0.01) for _ in range(3)] == [0, 0, 0]
    assert consumer.committed == [bad, empty]
    assert source.stats.bad_payloads == 1 and source.stats.errors == 1


def test_the_confluent_consumer_does_not_auto_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stand-in confluent_kafka module (the client may not be installed): its config."""
    import sys
    import types

    from sre_space.telemetry.sources import confluent_consumer

    made: list[Any] = []

    class Consumer:
        def __init__(self, config: dict[str, Any]) -> None:
            self.config, self.topics = config, []
            made.append(self)

        def subscribe(self, topics: list[str]) -> None:
            self.topics = topics

    module = types.ModuleType("confluent_kafka")
    module.Consumer = Consumer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "confluent_kafka", module)
    confluent_consumer("b:9092", "sre-space", "otlp_spans")
    assert made[0].config["enable.auto.commit"] is False
    assert made[0].config["group.id"] == "sre-space" and made[0].topics == ["otlp_spans"]


def test_kafka_needs_its_optional_client_and_a_known_encoding() -> None:
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        with pytest.raises(Unavailable, match=r"sre-space\[kafka\]"):
            KafkaSource("127.0.0.1:9", TraceStore()).start()
    with pytest.raises(UsageError, match="unsupported Kafka encoding"):
        KafkaSource("127.0.0.1:9", TraceStore(), encoding="zipkin_thrift")


def test_senses_without_the_kafka_client_say_how_to_install_it() -> None:
    pytest.importorskip("grpc")
    try:
        import confluent_kafka  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("confluent-kafka is installed here")
    from sre_space.config import Settings
    from sre_space.telemetry.senses import Senses

    settings = Settings(otlp_http_port=0, otlp_grpc_port=0, kafka_brokers="127.0.0.1:9")
    senses = Senses(settings, TraceStore())
    with pytest.raises(Unavailable, match=r"sre-space\[kafka\]"):
        senses.start()
    assert senses.http is None and senses.grpc is None  # nothing left listening


def test_kafka_otlp_json_encoding() -> None:
    doc = (FIXTURES / "otlp_trace.json").read_bytes()
    store = TraceStore()
    source = KafkaSource("x", store, encoding="otlp_json",
                         consumer_factory=lambda *_: ReplayConsumer([_Msg(doc)]))
    assert source.poll_once(0.01) == 2
    assert store.stats().spans_in == 2


# --- against real servers, where they exist -----------------------------------------

JAEGER_URL = os.environ.get("SRE_SPACE_TEST_JAEGER_URL")  # e.g. http://127.0.0.1:16686
JAEGER_OTLP = os.environ.get("SRE_SPACE_TEST_JAEGER_OTLP", "http://127.0.0.1:4318/v1/traces")
KAFKA_BROKERS = os.environ.get("SRE_SPACE_TEST_KAFKA_BROKERS")  # e.g. 127.0.0.1:9092


@pytest.mark.e2e
@pytest.mark.skipif(
    not JAEGER_URL,
    reason="no Jaeger v2 here: set SRE_SPACE_TEST_JAEGER_URL (query API) and "
    "SRE_SPACE_TEST_JAEGER_OTLP (its OTLP/HTTP endpoint) to run against one",
)
def test_e2e_spans_exported_to_jaeger_come_back_through_api_v3() -> None:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor

    service = f"sre-space-e2e-{os.getpid()}-{int(time.time())}"
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=JAEGER_OTLP)))
    with provider.get_tracer("e2e").start_as_current_span("e2e root"):
        pass
    provider.shutdown()
    store = TraceStore()
    source = JaegerSource(str(JAEGER_URL), store, services=[service], interval_s=1)
    wait_until(lambda: source.poll_once() or store.stats().spans_in, 60, interval=1,
               what="the span back from jaeger")
    assert [s.name for s in store.spans_since(0)] == ["e2e root"]


@pytest.mark.e2e
@pytest.mark.skipif(
    not KAFKA_BROKERS,
    reason="no Kafka broker here: set SRE_SPACE_TEST_KAFKA_BROKERS (and install "
    "sre-space[kafka]) to run against one",
)
def test_e2e_kafka_otlp_spans_topic() -> None:
    confluent_kafka = pytest.importorskip("confluent_kafka", reason="pip install 'sre-space[kafka]'")
    topic = f"otlp_spans_e2e_{os.getpid()}"
    producer = confluent_kafka.Producer({"bootstrap.servers": KAFKA_BROKERS})
    store = TraceStore()
    source = KafkaSource(str(KAFKA_BROKERS), store, topic=topic, group=topic)
    source.poll_once(5)  # join the group before producing (offsets reset to latest)
    for msg in recorded_messages()[:2]:
        producer.produce(topic, msg.value())
    producer.flush(30)
    wait_until(lambda: source.poll_once(1) or store.stats().spans_in >= 4, 60,
               what="spans consumed from kafka")
    source.stop()
    assert store.stats().spans_in == 4


if __name__ == "__main__":
    record_kafka_fixture()


def test_the_mind_fetches_an_evidence_trace_it_no_longer_holds_from_jaeger(
    jaeger: FakeJaeger, tmp_path: Path
) -> None:
    """The mind's /trace (the cockpit's waterfall) falls back on Jaeger's /api/v3/traces/ID."""
    from sre_space.config import Settings
    from sre_space.mind import Mind

    from helpers import free_port

    doc = v3_traces()
    trace_id = doc["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0]["traceId"]
    jaeger.answers[f"/api/v3/traces/{trace_id}"] = (200, doc)
    settings = Settings(
        home=tmp_path, otlp_http_port=free_port(), otlp_grpc_port=-1, jaeger_url=url_of(jaeger)
    )
    mind = Mind(settings)
    assert mind.store.trace(trace_id) == []  # not in the store ...
    spans = mind.trace(trace_id)  # ... but Jaeger has it
    assert spans and {s.trace_id for s in spans} == {trace_id}
    assert (f"/api/v3/traces/{trace_id}", {}) in jaeger.queries
    assert mind.trace("0" * 32) == []  # Jaeger's 404: no such trace, no error
