"""Pull sources: a Jaeger v2 query API (``/api/v3``) poller and a Kafka consumer.

Both hand spans to an :class:`~sre_space.telemetry.intake.Intake` with
:meth:`~sre_space.telemetry.intake.Intake.put`, which waits for room: a pull
source under overload just reads more slowly, and drops nothing.

**Jaeger** (stdlib ``urllib``): ``GET /api/v3/services`` lists services;
``GET /api/v3/traces`` with ``query.service_name``, ``query.start_time_min`` and
``query.start_time_max`` (RFC 3339), ``query.search_depth`` (and its older
name ``query.num_traces``), optional ``query.operation_name``,
``query.duration_min``/``query.duration_max`` (Go durations such as ``250ms``)
finds traces; ``GET /api/v3/traces/{trace_id}`` fetches one. Answers are OTLP
JSON under ``result`` (one document, or one per line from a streaming
gateway); 404 means no traces. Each poll looks back over the last interval
plus an overlap, and spans already seen are skipped.

**Kafka** (optional): the Collector's Kafka exporter writes each batch of spans
to the ``otlp_spans`` topic as one message, encoded ``otlp_proto`` (a
serialized ``TracesData``, the wire shape of ``ExportTraceServiceRequest``) or
``otlp_json``, keyed by trace id when ``partition_traces_by_id`` is set. The
consumer is confluent-kafka's, imported only when a Kafka source starts
(``pip install 'sre-space[kafka]'``); any object with ``poll(timeout)``,
``commit(message=..., asynchronous=...)`` and ``close()`` whose messages have
``value()`` and ``error()`` will do.

Offsets are committed by hand, never automatically: a message's offset is
committed (asynchronously) only once the intake has accepted its spans, or once
it is known unreadable (counted as a bad payload; read again it would fail
again). A message polled while the source stops and not accepted is left
uncommitted, and nothing is polled after it, so the group reads it again on
its next start: nothing polled is dropped (at least once; a redelivered span
the store already holds is a duplicate, not a loss).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from sre_space.errors import Unavailable, UsageError
from sre_space.telemetry.files import decode_bytes
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.otlp import Decoded, DecodeFailure, decode_json, decode_protobuf
from sre_space.telemetry.store import TraceStore

log = logging.getLogger(__name__)

KAFKA_EXTRA_HINT = "pip install 'sre-space[kafka]' (the confluent-kafka client)"


@dataclass
class SourceStats:
    polls: int = 0
    spans: int = 0
    duplicates: int = 0
    bad_payloads: int = 0
    errors: int = 0
    last_error: str = ""


def _intake(sink: Intake | TraceStore) -> Intake:
    return sink if isinstance(sink, Intake) else Intake(sink)


def rfc3339(t: datetime | float) -> str:
    """A UTC timestamp as Jaeger's API parses it (RFC 3339 with fractions)."""
    dt = t if isinstance(t, datetime) else datetime.fromtimestamp(t, UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class _Seen:
    """A bounded set of (trace id, span id) already handed on."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self._keys: OrderedDict[tuple[str, str], None] = OrderedDict()

    def add(self, key: tuple[str, str]) -> bool:
        """True when ``key`` is new."""
        if key in self._keys:
            return False
        self._keys[key] = None
        if len(self._keys) > self.cap:
            self._keys.popitem(last=False)
        return True


class _Poller:
    """A daemon thread calling ``poll_once`` every ``interval_s`` until stopped."""

    name = "source"
    interval_s = 5.0

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def poll_once(self) -> int:
        raise NotImplementedError

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Exception as exc:  # a source must outlive a bad poll
                log.warning("%s: %s", self.name, exc)
            self._stop.wait(self.interval_s)

    def start(self) -> _Poller:
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None


# --- Jaeger ---------------------------------------------------------------------


class JaegerSource(_Poller):
    """Pull traces from a Jaeger v2 query service's ``/api/v3``."""

    name = "jaeger"

    def __init__(
        self,
        base_url: str,
        sink: Intake | TraceStore,
        services: list[str] | None = None,
        interval_s: float = 5.0,
        overlap_s: float = 30.0,
        search_depth: int = 200,
        timeout_s: float = 10.0,
        seen_cap: int = 200_000,
    ) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.intake = _intake(sink)
        self.fixed_services = services
        self.interval_s = interval_s
        self.overlap_s = overlap_s
        self.search_depth = search_depth
        self.timeout_s = timeout_s
        self.stats = SourceStats()
        self._seen = _Seen(seen_cap)
        self._since: float | None = None

    # --- the API ------------------------------------------------------------------

    def _get(self, path: str, params: dict[str, str] | None = None) -> bytes | None:
        url = f"{self.base_url}{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        req = urllib.request.Request(url, headers={"Accept": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return None
            detail = exc.read()[:300].decode("utf-8", "replace")
            raise Unavailable(f"jaeger {path}: HTTP {exc.code} {detail}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise Unavailable(f"jaeger at {self.base_url} unreachable: {reason}") from None

    def services(self) -> list[str]:
        body = self._get("/api/v3/services")
        if body is None:
            return []
        try:
            doc = json.loads(body)
        except ValueError:
            raise Unavailable("jaeger /api/v3/services: not JSON") from None
        names = doc.get("services") if isinstance(doc, dict) else None
        return [str(s) for s in names] if isinstance(names, list) else []

    def find_traces(
        self,
        service: str,
        start: datetime | float,
        end: datetime | float,
        operation: str | None = None,
        duration_min: str | None = None,
        duration_max: str | None = None,
        search_depth: int | None = None,
    ) -> Decoded:
        depth = str(search_depth or self.search_depth)
        params = {
            "query.service_name": service,
            "query.start_time_min": rfc3339(start),
            "query.start_time_max": rfc3339(end),
            "query.search_depth": depth,
            "query.num_traces": depth,  # the name before Jaeger renamed it
        }
        if operation:
            params["query.operation_name"] = operation
        if duration_min:
            params["query.duration_min"] = duration_min
        if duration_max:
            params["query.duration_max"] = duration_max
        return self._decode(self._get("/api/v3/traces", params))

    def get_trace(self, trace_id: str) -> Decoded:
        return self._decode(self._get(f"/api/v3/traces/{urllib.parse.quote(trace_id)}"))

    def _decode(self, body: bytes | None) -> Decoded:
        if not body:
            return Decoded()
        try:
            return decode_bytes(body)
        except DecodeFailure as exc:
            self.stats.bad_payloads += 1
            raise Unavailable(f"jaeger answered something unreadable: {exc}") from None

    # --- polling --------------------------------------------------------------------

    def poll_once(self, now: float | None = None) -> int:
        """Fetch traces that started since the last poll (minus an overlap); hand on new spans."""
        now = time.time() if now is None else now
        start = (self._since if self._since is not None else now - self.interval_s) - self.overlap_s
        self.stats.polls += 1
        try:
            services = self.fixed_services or self.services()
            fresh = Decoded()
            for service in services:
                found = self.find_traces(service, start, now + 1)
                fresh.rejected += found.rejected
                for span in found.spans:
                    if self._seen.add((span.trace_id, span.span_id)):
                        fresh.spans.append(span)
                    else:
                        self.stats.duplicates += 1
        except Unavailable as exc:
            self.stats.errors += 1
            self.stats.last_error = str(exc)
            raise
        self._since = now
        if fresh.spans or fresh.rejected:
            while not self.intake.put(fresh, self.name, timeout=1.0):
                if self._stop.is_set():
                    return 0
        self.stats.spans += len(fresh.spans)
        return len(fresh.spans)


# --- Kafka ------------------------------------------------------------------------


class KafkaMessage(Protocol):
    def value(self) -> bytes | None: ...
    def error(self) -> Any: ...


class KafkaConsumer(Protocol):
    def poll(self, timeout: float) -> KafkaMessage | None: ...
    def commit(self, *, message: Any, asynchronous: bool) -> Any: ...
    def close(self) -> None: ...


def confluent_consumer(brokers: str, group: str, topic: str) -> KafkaConsumer:
    """A confluent-kafka consumer subscribed to ``topic`` (the optional extra)."""
    try:
        from confluent_kafka import Consumer
    except ImportError:
        raise Unavailable(f"reading Kafka needs its client: {KAFKA_EXTRA_HINT}") from None
    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": group,
            "auto.offset.reset": "latest",
            # Committed by KafkaSource once the intake has a message's spans, not
            # on a timer: an auto-commit could commit a message polled but never
            # accepted (the source stopping while it waited for room).
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([topic])
    return consumer  # type: ignore[no-any-return]


_DECODERS: dict[str, Callable[[bytes], Decoded]] = {
    "otlp_proto": decode_protobuf,
    "otlp_json": decode_json,
}


class KafkaSource:
    """Consume the Collector's ``otlp_spans`` topic into an intake."""

    name = "kafka"

    def __init__(
        self,
        brokers: str,
        sink: Intake | TraceStore,
        topic: str = "otlp_spans",
        group: str = "sre-space",
        encoding: str = "otlp_proto",
        consumer_factory: Callable[[str, str, str], KafkaConsumer] = confluent_consumer,
    ) -> None:
        if encoding not in _DECODERS:
            raise UsageError(
                f"unsupported Kafka encoding {encoding!r}; use one of {', '.join(_DECODERS)}"
            )
        self.brokers, self.topic, self.group = brokers, topic, group
        self.intake = _intake(sink)
        self.stats = SourceStats()
        self._decode = _DECODERS[encoding]
        self._factory = consumer_factory
        self._consumer: KafkaConsumer | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def handle(self, value: bytes) -> int | None:
        """Decode one message and hand its spans on, waiting for room.

        The spans handed on; 0 for a payload that cannot be read (counted, done
        with); None when the source stopped before the intake took them: the
        message is not done with, and its offset must not be committed.
        """
        try:
            decoded = self._decode(value)
        except DecodeFailure as exc:
            self.stats.bad_payloads += 1
            self.stats.last_error = str(exc)
            self.intake.bad_request(self.name)
            return 0
        while not self.intake.put(decoded, self.name, timeout=1.0):
            if self._stop.is_set():
                return None
        self.stats.spans += len(decoded.spans)
        return len(decoded.spans)

    def poll_once(self, timeout: float = 1.0) -> int:
        """Read at most one message, commit it once handled; spans handed on."""
        if self._stop.is_set():
            return 0  # stopping: a message polled now could not be accepted
        if self._consumer is None:
            self._consumer = self._factory(self.brokers, self.group, self.topic)
        consumer = self._consumer
        msg = consumer.poll(timeout)
        self.stats.polls += 1
        if msg is None:
            return 0
        err = msg.error()
        if err:  # an event (partition end, transport failure), not a message: no offset
            self.stats.errors += 1
            self.stats.last_error = str(err)
            return 0
        value = msg.value()
        spans = self.handle(value) if value else 0
        if spans is None:
            return 0  # left uncommitted: the group reads it again on the next start
        consumer.commit(message=msg, asynchronous=True)
        return spans

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except Unavailable as exc:  # no client library: nothing to retry
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                log.error("kafka: %s", exc)
                return
            except Exception as exc:  # keep consuming past one bad message
                self.stats.errors += 1
                self.stats.last_error = str(exc)
                log.warning("kafka: %s", exc)
                self._stop.wait(1.0)

    def start(self) -> KafkaSource:
        if self._consumer is None:  # fail here (missing client, bad config), not in a thread
            self._consumer = self._factory(self.brokers, self.group, self.topic)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="kafka", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
