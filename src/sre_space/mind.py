"""The mind: senses, Scout's detectors and the squad, hosted in one process.

`run` hosts it headless and `watch` hosts it under the TUI. At most one mind
acts on a home at a time (an flock on ``mind.lock``); the others observe.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from typing import IO, Any

from sre_space.clock import SYSTEM, Clock
from sre_space.config import Settings
from sre_space.detect.rules import Rules
from sre_space.detect.window import WindowDetector
from sre_space.errors import Unavailable, UsageError
from sre_space.incidents import Incident, IncidentLog
from sre_space.paths import Paths
from sre_space.squad.policy import policy_from
from sre_space.telemetry.senses import Senses
from sre_space.telemetry.store import TraceStore

log = logging.getLogger(__name__)

RESOLVE_QUIET_S = 30.0
CONFIRM_S = 2.0  # an anomaly must hold this long before Scout opens an incident


def span_json(span: Any) -> dict[str, Any]:
    """A span as JSON for clients of the mind's API (the TUI's waterfall)."""
    return {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "parent_id": span.parent_id,
        "service": span.service,
        "name": span.name,
        "start_ns": span.start_ns,
        "end_ns": span.end_ns,
        "kind": int(span.kind),
        "error": span.error,
        "status_message": span.status_message,
        "attributes": span.attributes,
        "events": [
            {"name": e.name, "time_ns": e.time_ns, "attributes": e.attributes} for e in span.events
        ],
        "resource": span.resource,
    }


def scout_rules(settings: Settings) -> Rules:
    """The static rules with the per-service overrides of ``service_rules``."""
    try:
        return Rules.from_mapping(
            {"latency_ms": settings.latency_threshold_ms, "services": settings.service_rules}
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(f"service_rules: {exc}") from None


class MindLock:
    """An exclusive, non-blocking flock; released by the kernel if the mind dies."""

    def __init__(self, paths: Paths) -> None:
        self._path = paths.mind_lock
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        fh = open(self._path, "a+")  # noqa: SIM115 - held for the mind's lifetime
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "?"
            fh.close()
            raise Unavailable(
                f"another mind is already acting on this home (pid {holder})"
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


class Mind:
    def __init__(self, settings: Settings, *, clock: Clock = SYSTEM) -> None:
        self.settings = settings
        self.clock = clock  # Scout's windows and the squad's waits (replay: recorded time)
        self.policy = policy_from(settings)  # a bad policy is refused before anything starts
        self.paths = Paths(settings.home).ensure()
        self.store = TraceStore(settings.store_max_spans, settings.store_max_bytes)
        self.detector = WindowDetector(
            settings.detect_window_s,
            settings.latency_threshold_ms,
            rules=scout_rules(settings),
            clock=clock.time,
        )
        self.store.subscribe(self.detector.observe)
        self.log = IncidentLog(self.paths.incidents_db)
        self._lock = MindLock(self.paths)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.senses = Senses(settings, self.store)  # receivers -> intake queue -> store
        self._api: Any = None
        self._memory: Any = None
        self._graph: Any = None
        self._checkpoints: sqlite3.Connection | None = None
        self._review_due = 0.0
        self.started_at = time.time()

    # --- lifecycle ------------------------------------------------------------

    def start(self) -> Mind:
        self._lock.acquire()
        try:
            self.senses.start()  # Unavailable when a port is taken
            self._start_squad()
        except BaseException:
            self._teardown()  # nothing half-started is left listening or locked
            raise
        self._write_state()
        self.log.emit("mind", f"listening for OTLP/HTTP on {self.settings.otlp_endpoint}")
        loop = threading.Thread(target=self._loop, name="squad", daemon=True)
        loop.start()
        self._threads.append(loop)
        return self

    def _start_squad(self) -> None:
        # Heavy imports (chromadb, onnxruntime, langgraph) only once we know we can run.
        from sre_space.localapi import LocalApi
        from sre_space.memory.api import routes as memory_routes
        from sre_space.squad.agents import SquadContext
        from sre_space.squad.graph import build

        actuator = self._actuator()
        self._memory = self._open_memory()
        ctx = SquadContext(
            self.settings, self.store, self.log, self._memory, actuator, self.policy, self.clock
        )
        self._checkpoints = sqlite3.connect(self.paths.checkpoints_db, check_same_thread=False)
        self._graph = build(ctx, self._checkpoints)
        self._api = LocalApi(
            {
                "/status": lambda _: self.status(),
                **memory_routes(self._memory),
                "/trace": lambda p: [span_json(s) for s in self.trace(p["id"])],
            },
            self.paths.mind_token,
        ).start()

    def _open_memory(self) -> Any:
        from sre_space.memory.store import MemoryStore

        return MemoryStore(self.settings)

    def _actuator(self) -> Any:
        """The Fixer's hands, as the ``actuator`` setting says (see config.py)."""
        from sre_space.infra.compose import running_stack

        choice = self.settings.actuator
        if choice == "auto":
            choice = "docker" if running_stack(self.settings.home) is not None else "lab"
        if choice.startswith("plan-"):
            from sre_space.actuators.plan import PlanActuator

            return PlanActuator.from_settings(self.settings, style=choice.removeprefix("plan-"))
        if choice == "docker":
            from sre_space.actuators.docker import DockerActuator

            return DockerActuator.from_settings(self.settings)
        from sre_space.actuators.lab import LabActuator

        return LabActuator(self.settings)

    def stop(self) -> None:
        self._stop.set()
        # An incident in flight finishes first (verification has a deadline of its
        # own), so Jules does not archive into a memory that is already closed.
        for t in self._threads:
            t.join(timeout=self.settings.verify_timeout_s + 30)
            if t.is_alive():
                log.warning("the squad is still busy; stopping without it")
        self._teardown()

    def _teardown(self) -> None:
        self.senses.stop()
        if self._api:
            self._api.stop()
            self._api = None
        if self._memory is not None:
            self._memory.close()  # releases the memory's single-writer lock
            self._memory = None
        if self._checkpoints is not None:
            self._checkpoints.close()
            self._checkpoints = None
        with contextlib.suppress(FileNotFoundError):
            self.paths.mind_state.unlink()
        self._lock.release()

    def wait(self, timeout: float | None = None) -> bool:
        return self._stop.wait(timeout)

    def _write_state(self) -> None:
        doc = {
            "pid": os.getpid(),
            "otlp_endpoint": self.settings.otlp_endpoint,
            "api_port": self._api.port if self._api else None,
            "policy": self.settings.policy,
            "actuator": self.settings.actuator,
            "started_at": self.started_at,
        }
        tmp = self.paths.mind_state.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc))
        os.replace(tmp, self.paths.mind_state)

    # --- API ------------------------------------------------------------------

    def trace(self, trace_id: str) -> list[Any]:
        """A trace's spans: from the store, else (evicted, or seen by another Scout) Jaeger's."""
        spans = self.store.trace(trace_id)
        if spans or not self.settings.jaeger_url:
            return spans
        from sre_space.telemetry.sources import JaegerSource

        try:
            found = JaegerSource(self.settings.jaeger_url, self.senses.intake).get_trace(trace_id)
        except Unavailable as exc:
            log.warning("evidence trace %s: %s", trace_id, exc)
            return []
        return [s for s in found.spans if s.trace_id == trace_id]

    def status(self) -> dict[str, Any]:
        return {
            "pid": os.getpid(),
            "otlp_endpoint": self.settings.otlp_endpoint,
            "policy": self.settings.policy,
            "actuator": self.settings.actuator,
            "store": self.senses.stats(),
            "active_incidents": [i.id for i in self.log.active()],
            "uptime_s": round(time.time() - self.started_at, 1),
        }

    # --- the squad loop ---------------------------------------------------------

    def _daily_review(self) -> None:
        """Jules's review, written once a day at the configured local time."""
        from sre_space import review

        if time.time() < self._review_due:
            return
        self._review_due = review.next_run(self.settings.review_at, self.settings.review_tz)
        doc = review.build(self.log, 86400.0)
        reports = self.paths.home / "reports"
        reports.mkdir(exist_ok=True)
        day = time.strftime("%Y-%m-%d")
        (reports / f"review-{day}.md").write_text(review.markdown(doc))
        self.log.emit("jules", f"daily review written: {reports / f'review-{day}.md'}")

    def _loop(self) -> None:
        from sre_space import review
        from sre_space.detect.incidents import IncidentTracker

        self._review_due = review.next_run(self.settings.review_at, self.settings.review_tz)
        # Grouping, confirmation and quiet-period resolution: one cascade is one
        # incident, one bad second is none, and an incident handed to a human is
        # not reopened while its failure goes on.
        tracker = IncidentTracker(confirm_s=CONFIRM_S, quiet_s=RESOLVE_QUIET_S)
        quiet_since = self.clock.time()
        while not self.clock.wait(self._stop, 0.5):
            try:
                now = self.clock.time()
                self._daily_review()
                if self._resume_decided():
                    continue  # a paused incident holds the squad until a human answers
                anomalies = self.detector.anomalous(
                    self.settings.error_rate_threshold, self.settings.min_requests
                )
                if anomalies:
                    quiet_since = now
                elif now - quiet_since > RESOLVE_QUIET_S:
                    self._resolve_quiet()
                for change in tracker.update(anomalies, self.detector.edges(), now):
                    if change.what != "opened":
                        continue
                    status = self._handle(change.incident.signals)
                    quiet_since = self.clock.time()
                    if status in ("mitigated", "resolved"):
                        # Fixed: if the failure comes back, that is a new incident.
                        tracker.forget(change.incident)
            except Exception as exc:  # the loop must survive one bad incident
                log.exception("squad loop")
                self.log.emit("mind", f"squad error: {type(exc).__name__}: {exc}", kind="error")

    def _resume_decided(self) -> bool:
        """Resume incidents a human has answered; True while any still waits."""
        from langgraph.types import Command

        waiting = False
        for incident in self.log.awaiting_approval():
            decision = self.log.decision(incident.id)
            if decision is None:
                waiting = True
                continue
            self.log.emit("mind", f"{decision} received; resuming", incident_id=incident.id)
            self._graph.invoke(
                Command(resume=decision), {"configurable": {"thread_id": incident.id}}
            )
            self.detector.reset()
        return waiting

    def _handle(self, anomalies: list[Any]) -> str:
        from sre_space.squad.graph import run_incident

        now = self.clock.time()
        firsts = [a.first_bad_at for a in anomalies if a.first_bad_at is not None]
        incident = Incident(
            id=self.log.new_id(now),
            status="open",
            detected_at=now,
            first_error_at=min(firsts) if firsts else None,
        )
        self.log.save(incident)
        signals = [
            {
                "service": a.service,
                "operation": a.operation,
                "count": a.count,
                "errors": a.errors,
                "slow": a.slow,
                "error_rate": round(a.error_rate, 4),
                "p95_ms": round(a.p95_ms, 1),
            }
            for a in anomalies
        ]
        window_start_ns = int((now - self.settings.detect_window_s) * 1e9)
        run_incident(
            self._graph,
            {"incident_id": incident.id, "window_start_ns": window_start_ns, "signals": signals},
        )
        # Errors from before the fix must not reopen what was just handled.
        self.detector.reset()
        final = self.log.get(incident.id)
        return final.status if final else "escalated"

    def _resolve_quiet(self) -> None:
        for incident in self.log.list(limit=20, status="mitigated"):
            incident.status = "resolved"
            incident.resolved_at = self.clock.time()
            self.log.save(incident)
            self.log.emit(
                "scout",
                f"resolved after {RESOLVE_QUIET_S:.0f} s without anomalies",
                incident_id=incident.id,
            )
