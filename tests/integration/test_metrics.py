"""GET /metrics on the OTLP/HTTP listener: real OTLP in, Prometheus's text out, and a real
Prometheus server scraping it."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from prometheus_client.parser import text_string_to_metric_families

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.metrics import Metrics
from sre_space.telemetry.receiver import OtlpHttpReceiver
from sre_space.telemetry.senses import Senses
from sre_space.telemetry.store import TraceStore

from helpers import free_port, stop, wait_until

TOKEN = "metrics-token"


def export_spans(port: int, n: int, **headers: str) -> None:
    """``n`` spans through the real OpenTelemetry SDK exporter, one export each."""
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    exporter = OTLPSpanExporter(
        endpoint=f"http://127.0.0.1:{port}/v1/traces", headers=headers or None, timeout=10
    )
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    for i in range(n):
        with tracer.start_as_current_span(f"op {i}"):
            pass
    provider.shutdown()


def scrape(port: int, **headers: str) -> tuple[int, str, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:  # the error holds the response's socket
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


ACCEPTED = ("sre_space_spans_accepted_total", (("source", "otlp_http"),))


def test_metrics_count_the_spans_a_real_sdk_exporter_pushed() -> None:
    store = TraceStore()
    rx = OtlpHttpReceiver(store, "127.0.0.1", 0, max_body_bytes=64 * 1024).start()
    try:
        code, content_type, text = scrape(rx.port)
        assert code == 200 and content_type.startswith("text/plain")
        before = samples(text)
        assert ACCEPTED not in before  # nothing pushed yet
        assert before[("sre_space_spans_refused_total", (("reason", "overload"),))] == 0
        assert before[("sre_space_notifications_sent_total", ())] == 0

        export_spans(rx.port, 3)
        after = samples(scrape(rx.port)[2])
        assert after[ACCEPTED] == 3
        assert store.stats().spans_in == 3  # the counter says what the store got

        # Unreadable payloads are counted too, and the other GETs are still refused.
        req = urllib.request.Request(
            f"http://127.0.0.1:{rx.port}/v1/traces",
            data=b"\xff not protobuf",
            headers={"Content-Type": "application/x-protobuf"},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(req, timeout=10)
        err.value.close()
        assert err.value.code == 400
        after = samples(scrape(rx.port)[2])
        assert after[("sre_space_requests_refused_total", (("reason", "unreadable"),))] == 1
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(f"http://127.0.0.1:{rx.port}/v1/traces", timeout=10)
        err.value.close()
        assert err.value.code == 405
        # OpenMetrics for a scraper that asks for it
        accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
        code, content_type, text = scrape(rx.port, Accept=accept)
        assert code == 200 and content_type.startswith("application/openmetrics-text")
        assert text.rstrip().endswith("# EOF")
    finally:
        rx.stop()


def test_with_a_token_metrics_need_it_too() -> None:
    rx = OtlpHttpReceiver(TraceStore(), "127.0.0.1", 0, max_body_bytes=64 * 1024, token=TOKEN)
    rx.start()
    try:
        code, _, body = scrape(rx.port)
        assert code == 401 and "sre_space" not in body
        assert scrape(rx.port, Authorization="Bearer wrong")[0] == 401
        export_spans(rx.port, 2, Authorization=f"Bearer {TOKEN}")
        code, _, text = scrape(rx.port, Authorization=f"Bearer {TOKEN}")
        assert code == 200 and samples(text)[ACCEPTED] == 2
    finally:
        rx.stop()


def test_each_mind_counts_into_a_registry_of_its_own(tmp_path: Path) -> None:
    """Two logs with their own Metrics in one process: no collision, no shared counts."""
    one, two = Metrics(), Metrics()
    log_one = IncidentLog(tmp_path / "one.db", metrics=one)
    log_two = IncidentLog(tmp_path / "two.db", metrics=two)
    one.watch_incidents(log_one.counts)
    two.watch_incidents(log_two.counts)
    try:
        now = time.time()
        incident = Incident(id="INC-1", status="open", detected_at=now, first_error_at=now - 3)
        log_one.save(incident)
        incident.status, incident.mitigated_at = "mitigated", now + 12
        incident.remediation = {"action": "rollback", "outcome": "recovered"}
        log_one.save(incident)
        log_one.save(incident)  # nothing new: nothing counted twice
        first, second = samples(one.exposition()[0].decode()), samples(two.exposition()[0].decode())
        assert first[("sre_space_ttd_seconds_count", ())] == 1
        assert first[("sre_space_ttd_seconds_bucket", (("le", "3.0"),))] == 1
        assert first[("sre_space_ttd_seconds_bucket", (("le", "2.0"),))] == 0
        assert first[("sre_space_ttm_seconds_sum", ())] == 12
        rollback = ("sre_space_actions_total", (("action", "rollback"), ("outcome", "recovered")))
        assert first[rollback] == 1
        assert first[("sre_space_incidents", (("fault_class", "unknown"), ("status", "mitigated")))] == 1
        assert second[("sre_space_ttd_seconds_count", ())] == 0 and rollback not in second
        assert not [k for k in second if k[0] == "sre_space_incidents"]
    finally:
        log_one.close()
        log_two.close()


# --- a real Prometheus server scrapes the mind's listener ------------------------------------


def prometheus_query(port: int, query: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            doc = json.loads(resp.read())
    except (OSError, ValueError):  # not listening yet, or starting up
        return []
    return list(doc.get("data", {}).get("result", [])) if doc.get("status") == "success" else []


def test_a_real_prometheus_scrapes_the_minds_listener(tmp_path: Path) -> None:
    exe = shutil.which("prometheus")
    if exe is None:
        pytest.skip("the `prometheus` binary is not installed (Debian: apt-get install prometheus)")
    settings = Settings(
        home=tmp_path, otlp_host="127.0.0.1", otlp_http_port=free_port(), otlp_grpc_port=-1
    )
    # The mind's parts that /metrics reads: its senses (intake, listener) and incident log.
    metrics = Metrics()
    log = IncidentLog(tmp_path / "incidents.db", metrics=metrics)
    metrics.watch_incidents(log.counts)
    senses = Senses(settings, TraceStore(), metrics).start()
    assert senses.http is not None
    port = senses.http.port
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n"
        "scrape_configs:\n"
        "  - job_name: sre-space\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    web = free_port()
    prom_log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [
            exe,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{web}",
        ],
        stdout=prom_log,
        stderr=subprocess.STDOUT,
    )
    try:
        export_spans(port, 4)
        log.save(Incident(id="INC-1", status="open", detected_at=time.time()))

        def scraped() -> list[dict[str, Any]]:
            if proc.poll() is not None:
                raise AssertionError(
                    f"prometheus exited {proc.returncode}: "
                    + (tmp_path / "prometheus.log").read_text()[-2000:]
                )
            found = prometheus_query(web, 'sre_space_spans_accepted_total{source="otlp_http"}')
            return [r for r in found if float(r["value"][1]) == 4]

        [result] = wait_until(scraped, 90, interval=0.5, what="Prometheus to scrape 4 spans")
        assert result["metric"]["job"] == "sre-space"
        assert result["metric"]["instance"] == f"127.0.0.1:{port}"
        [incidents] = wait_until(
            lambda: prometheus_query(web, 'sre_space_incidents{status="open"}'),
            60,
            interval=0.5,
            what="the incidents gauge in Prometheus",
        )
        assert float(incidents["value"][1]) == 1
    finally:
        stop(proc, 30)
        prom_log.close()
        senses.stop()
        log.close()
