"""The mind: senses, Scout's detectors and the squad, hosted in one process.

`run` hosts it headless and `watch` hosts it under the TUI. At most one mind
acts on a home at a time (an flock on ``mind.lock``); the others observe.

Scout and the squad run on threads of their own: Scout judges the detectors
every half second and opens incidents (the record, with the time it saw them)
whatever the squad is doing; the squad takes them from a queue, one at a time,
and also resumes what humans decided, writes the daily review and finishes
what a killed mind left. One lock guards what both touch: the tracker and the
detector's reset.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import queue
import threading
import time
from typing import IO, Any

from sre_space.alerts import Alert, AlertBox
from sre_space.clock import SYSTEM, Clock
from sre_space.config import Settings
from sre_space.detect.incidents import AMBIGUOUS, KEEP_S, IncidentTracker, Tracked
from sre_space.detect.rules import Rules
from sre_space.detect.window import Signal, WindowDetector
from sre_space.errors import Unavailable, UsageError
from sre_space.incidents import Incident, IncidentLog
from sre_space.metrics import Metrics
from sre_space.notify import worker as notify_worker
from sre_space.paths import Paths
from sre_space.squad.policy import policy_from
from sre_space.state import where as state_where
from sre_space.state.leader import for_mind as leadership
from sre_space.telemetry.senses import Senses
from sre_space.telemetry.store import TraceStore
from sre_space.vocabulary import (
    ACTIVE,
    AWAITING_APPROVAL,
    DEGRADED,
    ESCALATED,
    MITIGATED,
    MITIGATING,
    RESOLVED,
    WATCHED,
)

log = logging.getLogger(__name__)

RESOLVE_QUIET_S = 30.0
SCOUT_TICK_S = 0.5  # Scout's wait between two looks at the detectors
# An anomaly must be there on two looks in a row before Scout opens an incident:
# the detectors' signals are already beyond chance and held by hysteresis, so
# what a second look filters is a signal that flickers on for one look only.
CONFIRM_S = SCOUT_TICK_S


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


def residual_figures(signal: Signal) -> dict[str, Any]:
    """What still shows of a mitigated incident's cause, for the degraded status."""
    return {
        "service": signal.service,
        "operation": signal.operation,
        "kind": signal.kind,
        "reason": signal.reason,
        "requests": signal.count,
        "error_rate": round(signal.error_rate, 4),
        "p95_ms": round(signal.p95_ms, 1),
        "baseline_p95_ms": signal.baseline_p95_ms,
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
        self.metrics = Metrics()  # GET /metrics on the OTLP/HTTP listener; its own registry
        self.log = IncidentLog(state_where(settings), metrics=self.metrics)  # SQLite, or state_url
        self.metrics.watch_incidents(self.log.counts)
        # Status changes out to the [notify.*] sinks, through the outbox (notify/worker.py).
        self.notifier = notify_worker.for_mind(settings, self.log, self.metrics)
        # Who acts: the home's lock file, or with a state_url the shared lease (state/leader.py).
        self._lock = leadership(settings, MindLock(self.paths), self._lease_lost)
        self.lost_lease = ""  # why this mind stopped acting, if it lost the lease
        self.notifier.sending = self._lock.leading  # a standby sends no notification
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # POST /api/alerts on the OTLP/HTTP listener stores here; Scout takes them (alerts.py)
        self.alerts = AlertBox(self.paths.home / "alerts.db", self.metrics)
        self.senses = Senses(settings, self.store, self.metrics, alerts=self.alerts)
        self._api: Any = None
        self._memory: Any = None
        self._graph: Any = None
        self._checkpoints: Any = None  # state.checkpoints: SQLite's, or the shared PostgreSQL saver
        self._review_due = 0.0
        self._halfopen: Any = None
        self.started_at = time.time()
        self._first_tick = 0.0  # Scout's first look, on the mind's clock
        self.tracker = IncidentTracker(
            confirm_s=CONFIRM_S, quiet_s=RESOLVE_QUIET_S, link_s=settings.detect_window_s
        )
        self._guard = threading.Lock()  # the tracker and the detector's reset: Scout and squad
        self._work: queue.Queue[tuple[Tracked, str, float]] = queue.Queue()  # Scout -> squad
        self._done: list[
            tuple[Tracked | None, str | None, float]
        ] = []  # squad -> Scout (see _settle)
        self._left: list[Tracked] = []  # a previous mind's changes the squad resumes (_watch_left)
        self._resumed = threading.Event()  # the squad has resumed what a previous mind left
        self._scout: threading.Thread | None = None

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
        squad = threading.Thread(target=self._squad_loop, name="squad", daemon=True)
        squad.start()
        self._scout = threading.Thread(target=self._scout_loop, name="scout", daemon=True)
        self._scout.start()
        self._threads += [self._scout, squad, self.notifier.start(self._stop)]
        if self._halfopen is not None:  # lifts the squad's workarounds once it is safe
            probe = threading.Thread(
                target=self._lock.when_leading(self._halfopen.run),  # a standby lifts nothing
                args=(self._stop,),
                name="half-open",
                daemon=True,
            )
            probe.start()
            self._threads.append(probe)
        return self

    def _start_squad(self) -> None:
        # Heavy imports (chromadb, onnxruntime, langgraph) only once we know we can run.
        from sre_space.localapi import LocalApi
        from sre_space.memory.api import routes as memory_routes
        from sre_space.squad.context import SquadContext
        from sre_space.squad.graph import build
        from sre_space.squad.halfopen import HalfOpen

        actuator = self._lock.guard(self._actuator())  # the lease checked before every change
        self._memory = self._open_memory()
        ctx = SquadContext(
            self.settings, self.store, self.log, self._memory, actuator, self.policy, self.clock
        )
        from sre_space.state.checkpoints import open_checkpoints

        self._checkpoints = open_checkpoints(self.settings)
        self._graph = build(ctx, self._checkpoints.saver)
        self._halfopen = HalfOpen(ctx)
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
        """The Fixer's hands, as the ``actuator`` setting says (see config.py).

        ``auto``: the targets the user declared (actuators/targets.py), else
        Docker for a Compose stack `up` started, else the running lab's own
        services and a written proposal for any other service.
        """
        from sre_space.actuators.knobs import KnobAdapter
        from sre_space.actuators.lab import LAB_KEYS
        from sre_space.actuators.targets import TargetActuator, declared
        from sre_space.infra.compose import running_stack

        choice = self.settings.actuator
        if choice == "auto":
            if declared(self.settings.home)[1] is not None:
                return TargetActuator(self.settings)
            if running_stack(self.settings.home) is None:
                return TargetActuator(self.settings)
            choice = "docker"
        # The shipped Compose stack runs the lab's services: their knobs are the lab's keys.
        if choice.startswith("plan-"):
            from sre_space.actuators.plan import PlanActuator

            style = choice.removeprefix("plan-")
            return KnobAdapter(PlanActuator.from_settings(self.settings, style=style), LAB_KEYS)
        if choice == "docker":
            from sre_space.actuators.docker import DockerActuator

            return KnobAdapter(DockerActuator.from_settings(self.settings), LAB_KEYS)
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
        self.alerts.close()
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
            "leadership": self._lock.status(),  # sole (lock file), leader, standby or stopped
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

    def finish(self, timeout: float) -> bool:
        """Wait for Scout's loop to end and the squad to finish all it was handed.

        Scout's loop ends on ``stop`` or when the clock says time is up (a replay
        played out); False if that and the squad's work took longer than ``timeout``.
        """
        deadline = time.monotonic() + timeout
        if self._scout is not None:
            self._scout.join(timeout)
            if self._scout.is_alive():
                return False
        while self._work.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _wait_leading(self) -> bool:
        """A standby waits here (receiving, detecting, not acting) until it holds the lease."""
        doc = self._lock.status()
        if doc["role"] == "sole":
            return not self._stop.is_set()
        held = doc.get("leader") or {}
        if doc["role"] != "leader":
            self.log.emit("mind", f"standby: {held.get('holder') or 'nobody'} holds the lease")
        if not self._lock.wait_leading(self._stop):
            return False
        self.log.emit("mind", f"took the lease (epoch {self._lock.status().get('epoch')}): acting")
        return True

    def _lease_lost(self, why: str) -> None:
        """The lease is gone: no change is made from now on (the guard refuses); the mind stops."""
        self.lost_lease = why
        with contextlib.suppress(Exception):  # the database may be what was lost
            self.log.emit("mind", f"lost the lease: {why}; stopping without acting", kind="error")
        self._stop.set()

    def _scout_loop(self) -> None:
        if not self._lock.wait_leading(self._stop):  # a standby's Scout opens nothing
            return
        try:
            self._watch_left()  # before Scout's first look
        except Exception as exc:
            log.exception("watching what a previous mind left")
            self.log.emit("mind", f"scout error: {type(exc).__name__}: {exc}", kind="error")
        while not self.clock.wait(self._stop, SCOUT_TICK_S):
            try:
                self.scout_tick(self.clock.time())
            except Exception as exc:  # the loop must survive one bad look
                log.exception("scout loop")
                self.log.emit("mind", f"scout error: {type(exc).__name__}: {exc}", kind="error")

    def _squad_loop(self) -> None:
        from sre_space import review

        self._review_due = review.next_run(self.settings.review_at, self.settings.review_tz)
        if not self._wait_leading():
            return
        try:
            from sre_space.squad.resume import resume_interrupted

            resume_interrupted(self._graph, self.log)  # a change a killed mind left unjudged
        except Exception as exc:
            log.exception("resuming interrupted incidents")
            self.log.emit("mind", f"resume error: {type(exc).__name__}: {exc}", kind="error")
        self._settle_left()
        while not self._stop.is_set():
            try:  # wall time: a replay's clock is played on by Scout alone
                item = self._work.get(timeout=0.5)
            except queue.Empty:
                item = None
            try:
                self._daily_review()
                self._resume_decided()  # a paused incident waits for its human, not the others
                if item is not None:
                    self._investigate(*item)
            except Exception as exc:  # the loop must survive one bad incident
                log.exception("squad loop")
                self.log.emit("mind", f"squad error: {type(exc).__name__}: {exc}", kind="error")
            finally:
                if item is not None:
                    self.clock.release()
                    self._work.task_done()
        while True:  # stopped: what was handed over and not begun stays open, and says so
            try:
                _, ref, _ = self._work.get_nowait()
            except queue.Empty:
                break
            self.log.emit("mind", "stopped before the squad began on it", incident_id=ref)
            self.clock.release()
            self._work.task_done()

    def scout_tick(self, now: float) -> None:
        """One look at the detectors: open, grow, degrade and resolve incidents.

        Grouping by cause, confirmation and the lifecycle after the squad: one
        cascade is one incident, one bad second is none, a fix that holds while
        the fault goes on is the same incident (degraded), and a second fault
        behind the same front door is an incident of its own. Opened incidents
        go to the squad's queue; Scout goes on looking meanwhile.
        """
        with self._guard:
            self._settle(now)
            self._let_go_of_resolved()
            self._causes_so_far(now)
            anomalies = self.detector.anomalous(
                self.settings.error_rate_threshold, self.settings.min_requests
            )
            edges = self.detector.edges()
            for change in self.tracker.update(anomalies, edges, now):
                tracked = change.incident
                if change.what == "opened":
                    self._opened(tracked, now, edges)
                elif change.what == "degraded":
                    self._degraded(tracked)
                elif change.what == "resolved":
                    self._resolved(tracked)
                elif change.what == "again":
                    self._again(tracked)
                elif change.what == "grew" and tracked.ref:
                    self.log.emit(
                        "scout",
                        f"spreading: now {', '.join(sorted(tracked.services))}",
                        incident_id=tracked.ref,
                    )
            self.alerts.take(self.log, self._alert_owner, self._alert_opened, now)
            self._resolve_untracked(now)

    def _alert_owner(self, service: str) -> str | None:
        """The incident an alert about ``service`` joins: one not resolved that answers for it.

        Scout's incidents first (the service is among their causes or symptoms),
        then the log's (a previous mind's, diagnosed with it as the root cause
        or opened by an alert about it).
        """
        for tracked in sorted(self.tracker.incidents, key=lambda t: t.first_seen):
            if tracked.ref and service in tracked.services | tracked.origins:
                incident = self.log.get(tracked.ref)
                if incident is not None and incident.status != "resolved":
                    return tracked.ref
        for incident in self.log.list(limit=50):
            if incident.status not in (*ACTIVE, *WATCHED):
                continue
            if incident.root_cause.get("service") == service or any(
                a.get("step") == "alert" and a.get("service") == service for a in incident.audit
            ):
                return incident.id
        return None

    def _alert_opened(self, alert: Alert, why: str, now: float) -> str:
        """A firing alert no incident answers for: a new one, for the squad, as Scout's are."""
        tracked = self.tracker.adopt(alert.service, now)
        incident = Incident(id=self.log.new_id(now), status="open", detected_at=now, source="alert")
        tracked.ref = incident.id
        self.log.save(incident, why=why, by="alerts")
        tracked.busy = True  # the squad's until it settles: its cause opens nothing new
        self.clock.hold()  # released by the squad when it is done with it
        self._work.put((tracked, incident.id, now))
        return incident.id

    def _let_go_of_resolved(self) -> None:
        """Incidents a person resolved (``sre-space resolve``, the cockpit): no longer watched.

        Their status stays as the person left it (the incident log keeps it
        against the squad's later saves); Scout forgets them once the squad is
        done, so their cause, if it shows again, opens a new incident.
        """
        settled = [  # an escalated one that went quiet is still watched for its cause
            t
            for t in self.tracker.incidents
            if t.ref
            and t.settled_at is not None
            and (t.resolved_at is None or t.state == "watching")
        ]
        if not settled:
            return
        closed = self.log.resolved_by_people([t.ref for t in settled])
        for tracked in settled:
            if tracked.ref in closed:
                self.tracker.forget(tracked)
                self.log.emit(
                    "scout", "resolved by a person: no longer watched", incident_id=tracked.ref
                )

    def _causes_so_far(self, now: float) -> None:
        """The Brain's root cause of incidents the squad is still working on.

        A fix takes a while (a restart, its verification), and what it stirs up
        at the cause (callers refused while it restarts) is this incident's,
        not a new one: the tracker learns the cause as soon as the Brain names
        it, not when the squad is done.
        """
        for tracked in self.tracker.active():
            if not tracked.ref or tracked.settled_at is not None:
                continue
            incident = self.log.get(tracked.ref)
            cause = str(incident.root_cause.get("service") or "") if incident else ""
            if cause and cause != tracked.cause:
                self.tracker.attribute(tracked, cause, now)

    def _settle(self, now: float) -> None:
        """What the squad finished: its incidents watched again, the detector's window reset.

        Errors from before a fix must not reopen (or degrade) what was just
        handled, so the window is forgotten, and the incident is watched again
        from the same moment. The detector forgets every service's window, so
        while another anomaly is being confirmed (its evidence is in the
        window) this waits, at most one detection window.
        """
        if not self._done:
            return
        confirming = any(t.opened_at is None for t in self.tracker.incidents)
        if confirming and now - self._done[0][2] < self.settings.detect_window_s:
            return
        for tracked, state, _ in self._done:
            if tracked is not None and state is not None:
                self.tracker.settled(tracked, state, now)
        self._done.clear()
        self.detector.reset()

    def _opened(self, tracked: Tracked, detected_at: float, edges: set[tuple[str, str]]) -> None:
        """A confirmed anomaly: a new incident, unless its cause is one already open.

        One that may be an open incident whose root cause the Brain has not
        named yet waits for it (at most a detection window): confirmed again
        at each look, it is decided once the cause is known.
        """
        waiting = detected_at - tracked.first_seen < self.settings.detect_window_s
        if waiting and self.tracker.awaits_brain(tracked, edges) is not None:
            tracked.opened_at = None
            return
        owner, note = self._same_cause(tracked, detected_at, edges)
        if owner is not tracked:
            if owner.ref and owner.state == "mitigated":
                owner.signals = tracked.signals
                self.tracker.settled(owner, "degraded", detected_at)
                self._degraded(owner)
            elif owner.ref:
                self.log.emit(
                    "scout",
                    f"the same cause ({owner.root}) seen from {tracked.origin}: "
                    "part of this incident",
                    incident_id=owner.ref,
                )
            return
        anomalies = tracked.signals
        firsts = [a.first_bad_at for a in anomalies if a.first_bad_at is not None]
        incident = Incident(
            id=self.log.new_id(detected_at),
            status="open",
            detected_at=detected_at,
            first_error_at=min(firsts) if firsts else None,
        )
        tracked.ref = incident.id
        self.log.save(incident, why=f"anomalous since {tracked.origin}", by="scout")
        if note:
            self.log.emit("scout", note, incident_id=incident.id)
        tracked.busy = True  # the squad's until it settles: its cause opens nothing new
        self.clock.hold()  # released by the squad when it is done with it
        self._work.put((tracked, incident.id, detected_at))

    def _same_cause(
        self, tracked: Tracked, now: float, edges: set[tuple[str, str]]
    ) -> tuple[Tracked, str]:
        """The incident this anomaly belongs to, by cause (``tracked`` itself when new).

        With it, for a new incident that looked like another's, why it is not.

        An origin no open incident knows is a new cause, and so is a known cause
        showing a different kind of trouble (the tracker let it through). One
        the tracker calls ambiguous is decided by the Brain's localisation of
        the recent traces. (Not only those through the new origin: they are
        the requests that got that far, and leave out what the other cause
        holds up.)
        """
        why = self.tracker.ambiguous(tracked, edges)
        if not why:
            return tracked, ""
        from sre_space.rca.localize import LIVE_LOOKBACK_S, localize

        since_ns = int((now - self.settings.detect_window_s - LIVE_LOOKBACK_S) * 1e9)
        traces = self.store.traces_since(since_ns)
        # A service, not an address: only services can be an incident's cause here.
        services = {s.service for t in traces for s in t}
        found = localize(traces, self.settings.latency_threshold_ms)
        cause = next((c.service for c in found if c.service in services), "")
        note = (
            f"{tracked.origin} {AMBIGUOUS[why]}; the recent traces point at "
            f"{cause or 'nothing that stands out'}, not at that incident's cause"
        )
        return self.tracker.attribute(tracked, cause, now), note

    def _degraded(self, tracked: Tracked) -> None:
        incident = self.log.get(tracked.ref) if tracked.ref else None
        if incident is None or incident.status not in ("mitigated", "degraded"):
            return
        incident.residual = [residual_figures(s) for s in tracked.signals[:5]]
        worst = incident.residual[0] if incident.residual else {}
        incident.status = "degraded"
        self.log.save(
            incident,
            why=f"the cause still shows, weaker: {worst.get('service', '?')} "
            f"{worst.get('operation', '')} {worst.get('reason', '')}; the fix holds",
            by="scout",
        )

    def _again(self, tracked: Tracked) -> None:
        """An escalated incident's cause shows again after it went quiet: the same incident."""
        incident = self.log.get(tracked.ref) if tracked.ref else None
        if incident is None:
            return
        if incident.status == "resolved":  # a person closed it since: no longer watched
            self.tracker.forget(tracked)
            return
        worst = tracked.signals[0] if tracked.signals else None
        self.log.emit(
            "scout",
            f"its cause shows again ({worst.service} {worst.operation}: {worst.reason})"
            if worst
            else "its cause shows again",
            incident_id=tracked.ref,
        )

    def _resolved(self, tracked: Tracked) -> None:
        incident = self.log.get(tracked.ref) if tracked.ref else None
        if incident is None or incident.status not in WATCHED:
            return
        quiet = f"no anomaly of its own for {RESOLVE_QUIET_S:.0f} s"
        if incident.status == "escalated":
            # A human has it and closes it: Scout watches only its cause now (see _again).
            self.log.emit(
                "scout", f"{quiet}; watched only for its cause now", incident_id=incident.id
            )
            return
        incident.status = "resolved"
        incident.resolved_at = self.clock.time()
        self.log.save(incident, why=quiet, by="scout")

    def _resolve_untracked(self, now: float) -> None:
        """Incidents a previous mind left watched: resolved once this one saw nothing for long."""
        self._first_tick = self._first_tick or now
        if now - self._first_tick < RESOLVE_QUIET_S or self.tracker.active():
            return
        known = {t.ref for t in self.tracker.incidents}
        for status in ("mitigated", "degraded"):
            for incident in self.log.list(limit=20, status=status):
                if incident.id in known:
                    continue
                incident.status = "resolved"
                incident.resolved_at = now
                self.log.save(incident, why=f"no anomaly for {RESOLVE_QUIET_S:.0f} s", by="scout")

    def _resume_decided(self) -> None:
        """Resume incidents a human has answered (the squad's thread)."""
        from langgraph.types import Command

        for incident in self.log.awaiting_approval():
            decision = self.log.decision(incident.id)
            if decision is None:
                continue
            self.log.emit("mind", f"{decision} received; resuming", incident_id=incident.id)
            self._graph.invoke(
                Command(resume=decision), {"configurable": {"thread_id": incident.id}}
            )
            with self._guard:
                tracked = next((t for t in self.tracker.incidents if t.ref == incident.id), None)
                state: str | None = None
                if tracked is not None:  # else a previous mind's: only the reset is due
                    status = self._after_squad(tracked)
                    state = "mitigated" if status in ("mitigated", "resolved") else "watching"
                self._done.append((tracked, state, self.clock.time()))

    def _watch_left(self) -> None:
        """What a previous mind left keeps answering for its cause: no duplicate on a restart.

        The incidents whose change the squad resumes (squad/resume.py), or that
        wait for a person's answer, are the squad's until it is done with them;
        mitigated, degraded and escalated ones are watched as if this mind had
        settled them. The same cause showing meanwhile is theirs, not a new
        incident. Left alone: those without a root cause, and those nobody
        touched for an hour (the tracker's memory of incidents).
        """
        now = self.clock.time()
        with self._guard:
            for incident in self.log.list(limit=50):
                cause = str(incident.root_cause.get("service") or "")
                if not cause or incident.status not in (MITIGATING, *WATCHED):
                    continue
                stamps = [float(a.get("ts") or 0) for a in incident.audit]
                if now - max([incident.detected_at, *stamps]) > KEEP_S:
                    continue
                tracked = self.tracker.adopt(cause, now)
                tracked.ref = incident.id
                tracked.cause = cause
                if incident.status == MITIGATING:
                    if incident.remediation.get("outcome") == AWAITING_APPROVAL:
                        tracked.busy = True  # until a person answers (_resume_decided)
                    elif not self._resumed.is_set():
                        tracked.busy = True  # until the squad has resumed it (_settle_left)
                        self._left.append(tracked)
                    continue  # else the resume failed: watched, and resolved when quiet
                state = {ESCALATED: "watching", DEGRADED: "degraded"}.get(incident.status)
                self.tracker.settled(tracked, state or "mitigated", now)

    def _settle_left(self) -> None:
        """The squad resumed what a previous mind left: Scout watches them as it settled them."""
        with self._guard:
            self._resumed.set()
            for tracked in self._left:
                incident = self.log.get(tracked.ref)
                if incident is not None and incident.status == MITIGATING:
                    tracked.busy = False  # not resumed (an error): watched, and resolved when quiet
                    continue
                status = self._after_squad(tracked)
                state = "mitigated" if status in (MITIGATED, RESOLVED) else "watching"
                self._done.append((tracked, state, self.clock.time()))
            self._left.clear()

    def _investigate(self, tracked: Tracked, ref: str, detected_at: float) -> None:
        """The squad on one incident Scout opened: diagnose, act, verify, archive."""
        from sre_space.squad.graph import run_incident

        signals = [
            {
                "service": a.service,
                "operation": a.operation,
                "count": a.count,
                "errors": a.errors,
                "slow": a.slow,
                "error_rate": round(a.error_rate, 4),
                "p95_ms": round(a.p95_ms, 1),
                "kind": a.kind,  # why Scout judged it anomalous (detect/window.py)
                "reason": a.reason,
            }
            for a in tracked.signals
        ]
        with self._guard:  # the causes of other faults showing now (not this one's)
            now = self.clock.time()
            origins = sorted(tracked.origins)
            elsewhere = sorted(
                {
                    o
                    for t in self.tracker.active()
                    if t is not tracked and now - t.cause_seen <= self.tracker.link_s
                    for o in t.origins
                }
                - tracked.origins
            )
        window_start_ns = int((detected_at - self.settings.detect_window_s) * 1e9)
        run_incident(
            self._graph,
            {
                "incident_id": ref,
                "window_start_ns": window_start_ns,
                "signals": signals,
                "origins": origins,
                "elsewhere": elsewhere,
            },
        )
        with self._guard:
            status = self._after_squad(tracked)
            state: str | None = None
            if status in ("mitigated", "resolved"):
                state = "mitigated"
            elif status not in ("open", "diagnosing", "mitigating"):  # escalated: still watched
                state = "watching"
            self._done.append((tracked, state, self.clock.time()))

    def _after_squad(self, tracked: Tracked) -> str:
        """What the squad concluded: the cause for the tracker, a recurrence for the log."""
        final = self.log.get(tracked.ref)
        if final is None:
            return "escalated"
        cause = str(final.root_cause.get("service") or "")
        if cause and cause != tracked.cause:
            self.tracker.attribute(tracked, cause, self.clock.time())
        earlier = self.log.earlier(final)
        if earlier is not None and final.recurs is None:
            final.recurs = earlier.id
            self.log.save(final)
            self.log.emit(
                "scout",
                f"recurs: the same signature as {earlier.id} ({earlier.status})",
                incident_id=final.id,
                data={"recurs": earlier.id},
            )
        return final.status
