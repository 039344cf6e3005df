"""The mind's metrics, for Prometheus: ``GET /metrics`` on its OTLP/HTTP listener.

Each mind (and each bare receiver) has a :class:`Metrics` of its own, with a
dedicated ``CollectorRegistry`` (never the process-wide default one), so tests
and several minds in one process do not count into each other. Names are
prefixed ``sre_space_``:

- ``sre_space_spans_accepted_total{source}``: spans the intake took in (read
  from its own counters when scraped).
- ``sre_space_spans_refused_total{reason}``: ``overload`` (in requests answered
  503: the client resends them) and ``invalid`` (refused one by one inside a
  readable payload, a partial success).
- ``sre_space_requests_refused_total{reason}``: ``overload`` and ``unreadable``
  (answered 400).
- ``sre_space_incidents{status,fault_class}``: incidents in the log now, read
  from it when scraped, so a person's ``resolve`` from another process shows.
- ``sre_space_ttd_seconds`` and ``sre_space_ttm_seconds``: histograms of time
  to detect and to mitigate, observed when the incident log first records them.
- ``sre_space_actions_total{action,outcome}``: each remediation outcome the
  incident log records (recovered, undone, failed, refused, denied, proposed,
  dry-run).
- ``sre_space_notifications_sent_total`` / ``..._failed_total``: for the
  notification sinks (:meth:`Metrics.notification`).
- ``sre_space_alerts_total{source,outcome}``: alerts received on ``POST
  /api/alerts`` (``alerts.py``), by source (alertmanager, grafana, unknown)
  and outcome: ``accepted`` (new, stored), ``repeat`` (seen before: dropped),
  ``refused`` (a notification answered 4xx, counted once: its alerts could
  not be read), ``failed`` (not stored, answered 5xx). Their sum is every
  alert received.

The counting happens where the events do (the intake's counters, the incident
log's saves); this module only holds the instruments and renders them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from sre_space.vocabulary import AWAITING_APPROVAL, PENDING

# Seconds: detection is seconds, mitigation tens of seconds to minutes.
TTD_BUCKETS = (0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0)
TTM_BUCKETS = (5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)
# Outcomes that are not an end of an action (it is still running or waits on a person).
UNSETTLED = frozenset({"", PENDING, AWAITING_APPROVAL})
UNCLASSIFIED = "unknown"  # the fault_class label of an incident not diagnosed (yet)


class _Scraped:
    """A collector whose families are built by a function when Prometheus scrapes."""

    def __init__(self, build: Callable[[], Iterable[Metric]]) -> None:
        self._build = build

    def collect(self) -> Iterator[Metric]:
        yield from self._build()


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._lock = threading.Lock()
        self._watched: set[int] = set()
        self.ttd = Histogram(
            "sre_space_ttd_seconds",
            "Time to detect: from the first failed request to the incident opening.",
            buckets=TTD_BUCKETS,
            registry=self.registry,
        )
        self.ttm = Histogram(
            "sre_space_ttm_seconds",
            "Time to mitigate: from detection to verified recovery.",
            buckets=TTM_BUCKETS,
            registry=self.registry,
        )
        self.actions = Counter(
            "sre_space_actions",
            "Remediation outcomes recorded in the incident log, by action.",
            ["action", "outcome"],
            registry=self.registry,
        )
        self.notifications_sent = Counter(
            "sre_space_notifications_sent",
            "Notifications delivered to a sink.",
            registry=self.registry,
        )
        self.notifications_failed = Counter(
            "sre_space_notifications_failed",
            "Notifications a sink did not take.",
            registry=self.registry,
        )
        self.alerts = Counter(
            "sre_space_alerts",
            "Alerts received (Alertmanager, Grafana), by source and outcome: "
            "accepted, repeat, refused, failed.",
            ["source", "outcome"],
            registry=self.registry,
        )

    # --- what is read when scraped ---------------------------------------------

    def watch_intake(self, intake: Any) -> None:
        """Export an :class:`~sre_space.telemetry.intake.Intake`'s counters (once per intake)."""
        with self._lock:
            if id(intake) in self._watched:
                return
            self._watched.add(id(intake))
        self.registry.register(_Scraped(lambda: _intake_families(intake)))

    def watch_incidents(self, counts: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        """Export the incident log's (status, fault class, count) rows as a gauge."""

        def families() -> Iterator[Metric]:
            gauge = GaugeMetricFamily(
                "sre_space_incidents",
                "Incidents in the log, by status and fault class.",
                labels=["status", "fault_class"],
            )
            for status, fault_class, n in counts():
                gauge.add_metric([status, fault_class or UNCLASSIFIED], n)
            yield gauge

        self.registry.register(_Scraped(families))

    # --- what is counted as it happens -------------------------------------------

    def detected(self, ttd_s: float) -> None:
        self.ttd.observe(max(0.0, ttd_s))

    def mitigated(self, ttm_s: float) -> None:
        self.ttm.observe(max(0.0, ttm_s))

    def outcome(self, action: str, outcome: str) -> None:
        """An action's outcome, as the incident log records it (unsettled ones are not counted)."""
        if outcome not in UNSETTLED:
            self.actions.labels(action=action or "none", outcome=outcome).inc()

    def notification(self, ok: bool) -> None:
        (self.notifications_sent if ok else self.notifications_failed).inc()

    def alert(self, source: str, outcome: str, n: int = 1) -> None:
        """``n`` alerts received from ``source`` with this outcome (see alerts.py)."""
        self.alerts.labels(source=source, outcome=outcome).inc(n)

    # --- rendering -------------------------------------------------------------------

    def exposition(self, accept: str | None = None) -> tuple[bytes, str]:
        """The body and content type for a scrape: the text format, or OpenMetrics if asked."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


def _intake_families(intake: Any) -> Iterator[Metric]:
    st = intake.stats()
    accepted = CounterMetricFamily(
        "sre_space_spans_accepted", "Spans taken in by the intake.", labels=["source"]
    )
    for source, n in sorted(st.accepted.items()):
        accepted.add_metric([source], n)
    yield accepted
    refused = CounterMetricFamily(
        "sre_space_spans_refused",
        "Spans refused: in requests answered 'retry later' (overload), or one by one "
        "inside a readable payload (invalid).",
        labels=["reason"],
    )
    refused.add_metric(["overload"], st.refused_spans)
    refused.add_metric(["invalid"], intake.store.stats().rejected)
    yield refused
    requests = CounterMetricFamily(
        "sre_space_requests_refused",
        "Requests refused: overload (answered 503 / UNAVAILABLE) or unreadable (400).",
        labels=["reason"],
    )
    requests.add_metric(["overload"], st.refused_requests)
    requests.add_metric(["unreadable"], st.bad_requests)
    yield requests


__all__ = ["Metrics"]
