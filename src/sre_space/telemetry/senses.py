"""Every way in for traces, started and stopped together for the mind.

One :class:`Intake` (bounded queue + consumer thread) in front of the store;
the OTLP/HTTP and OTLP/gRPC receivers on loopback by default; a Kafka consumer
when ``kafka_brokers`` is set; a Jaeger v3 poller when ``jaeger_url`` is set and
``jaeger_poll_s`` > 0 (not by default: with the Compose stack the same spans
also come through Kafka, and would be counted twice).
"""

from __future__ import annotations

import gc
import logging
from dataclasses import asdict
from typing import Any

from sre_space.config import Settings
from sre_space.errors import Unavailable
from sre_space.metrics import Metrics
from sre_space.telemetry.intake import Intake
from sre_space.telemetry.receiver import OtlpHttpReceiver, check_bind
from sre_space.telemetry.store import TraceStore

log = logging.getLogger(__name__)

# The store holds hundreds of thousands of long-lived spans; with CPython's
# default gen-0 threshold (700) the cyclic GC runs every few hundred spans and
# its older generations rescan the whole store. Spans form no cycles.
GC_GEN0_THRESHOLD = 50_000


def tune_gc() -> None:
    """Collect less often (measured: about +15 % ingest speed); never lowers a host's choice."""
    gen0, gen1, gen2 = gc.get_threshold()
    if 0 < gen0 < GC_GEN0_THRESHOLD:
        gc.set_threshold(GC_GEN0_THRESHOLD, max(gen1, 20), max(gen2, 100))


class Senses:
    def __init__(
        self,
        settings: Settings,
        store: TraceStore,
        metrics: Metrics | None = None,
        alerts: Any = None,
    ) -> None:
        self.settings = settings
        self.alerts = alerts  # an alerts.AlertBox: POST /api/alerts on the OTLP/HTTP listener
        self.store = store
        self.intake = Intake(
            store,
            max_batches=settings.intake_queue_batches,
            max_spans=settings.intake_queue_spans,
            retry_after_s=settings.intake_retry_after_s,
        )
        # Served on the OTLP/HTTP listener's GET /metrics: the intake's counts and the mind's.
        self.metrics = metrics or Metrics()
        self.metrics.watch_intake(self.intake)
        self.http: OtlpHttpReceiver | None = None
        self.grpc: Any = None
        self.sources: list[Any] = []

    def start(self) -> Senses:
        """Listen and pull; :class:`Unavailable` (nothing left running) if a port is taken."""
        s = self.settings
        token = s.otlp_token.get_secret_value() if s.otlp_token else None
        check_bind(s.otlp_host, token)  # before anything runs: nothing to stop
        tune_gc()
        self.intake.start()
        try:
            self.http = OtlpHttpReceiver(
                self.intake,
                s.otlp_host,
                s.otlp_http_port,
                s.max_body_bytes,
                max_connections=s.otlp_max_connections,
                token=token,
                metrics=self.metrics,
                alerts=self.alerts,
            ).start()
        except OSError as exc:
            self.stop()
            raise Unavailable(
                f"cannot listen on {s.otlp_host}:{s.otlp_http_port}: {exc.strerror or exc}"
            ) from None
        if s.otlp_grpc_port >= 0:
            from sre_space.telemetry.grpc_receiver import OtlpGrpcReceiver

            try:
                self.grpc = OtlpGrpcReceiver(
                    self.intake, s.otlp_host, s.otlp_grpc_port, s.max_body_bytes, token=token
                ).start()
            except OSError as exc:
                self.stop()
                raise Unavailable(
                    f"cannot listen on {s.otlp_host}:{s.otlp_grpc_port} (OTLP/gRPC): "
                    f"{exc.strerror or exc}"
                ) from None
        try:
            self._start_sources()
        except Exception:
            self.stop()
            raise
        return self

    def _start_sources(self) -> None:
        s = self.settings
        if s.jaeger_url and s.jaeger_poll_s > 0:
            from sre_space.telemetry.sources import JaegerSource

            self.sources.append(
                JaegerSource(s.jaeger_url, self.intake, interval_s=s.jaeger_poll_s).start()
            )
        if s.kafka_brokers:
            from sre_space.telemetry.sources import KafkaSource

            self.sources.append(
                KafkaSource(s.kafka_brokers, self.intake, s.kafka_topic, s.kafka_group).start()
            )

    def stop(self) -> None:
        for source in self.sources:
            source.stop()
        self.sources.clear()
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.grpc is not None:
            self.grpc.stop()
            self.grpc = None
        self.intake.stop()  # delivers whatever was accepted

    def trace(self, trace_id: str) -> list[Any]:
        """A trace's spans: from the store, else (evicted, or seen by another Scout) Jaeger's."""
        spans = self.store.trace(trace_id)
        if spans or not self.settings.jaeger_url:
            return spans
        from sre_space.telemetry.sources import JaegerSource

        try:
            found = JaegerSource(self.settings.jaeger_url, self.intake).get_trace(trace_id)
        except Unavailable as exc:
            log.warning("evidence trace %s: %s", trace_id, exc)
            return []
        return [s for s in found.spans if s.trace_id == trace_id]

    def endpoints(self) -> dict[str, str | None]:
        return {
            "otlp_http": self.http.endpoint if self.http else None,
            "otlp_grpc": self.grpc.endpoint if self.grpc else None,
        }

    def stats(self) -> dict[str, Any]:
        """The store's counters and the intake's, in one flat dict (no key is shared)."""
        doc = asdict(self.store.stats())
        doc.update(asdict(self.intake.stats()))
        doc["sources"] = {src.name: asdict(src.stats) for src in self.sources}
        doc["endpoints"] = self.endpoints()
        return doc
