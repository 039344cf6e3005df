"""The mind: senses, Scout's detectors and the squad, hosted in one process.

`run` hosts it headless and `watch` hosts it under the TUI. At most one mind
acts on a home at a time (an flock on ``mind.lock``); the others observe.

Scout and the squad run on threads of their own: Scout judges the detectors
every half second and opens incidents (the record, with the time it saw them)
whatever the squad is doing; the squad takes them from a queue, one at a time,
and also resumes what humans decided, writes the daily review and finishes
what a killed mind left. One lock guards what both touch: the tracker and the
detector's reset. What Scout's looks do to incidents, with the tracker and
that lock, is squad/lifecycle.py's; this module hosts the threads and wires.
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

from sre_space.actuators.choose import for_settings as actuator_for
from sre_space.alerts import AlertBox
from sre_space.clock import SYSTEM, Clock
from sre_space.config import Settings
from sre_space.detect.rules import Rules
from sre_space.detect.tracker import Tracked
from sre_space.detect.window import WindowDetector
from sre_space.errors import Unavailable, UsageError
from sre_space.incidents import IncidentLog
from sre_space.metrics import Metrics
from sre_space.notify import worker as notify_worker
from sre_space.paths import Paths
from sre_space.squad.lifecycle import CONFIRM_S as CONFIRM_S  # replay.py's tail
from sre_space.squad.lifecycle import SCOUT_TICK_S, Lifecycle, signal_json
from sre_space.squad.policy import policy_from
from sre_space.state import where as state_where
from sre_space.state.leader import for_mind as leadership
from sre_space.telemetry.senses import Senses
from sre_space.telemetry.store import TraceStore

log = logging.getLogger(__name__)


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
            settings.detect_window_s, settings.latency_threshold_ms,
            rules=scout_rules(settings), clock=clock.time,
        )  # fmt: skip
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
        self._halfopen: Any = None
        self.started_at = time.time()
        self._work: queue.Queue[tuple[Tracked, str, float]] = queue.Queue()  # Scout -> squad
        # Scout's incident lifecycle (squad/lifecycle.py): the tracker and the lock it shares
        self.lifecycle = Lifecycle(
            settings, self.log, self.store, self.detector, self.alerts, clock, self._work.put
        )
        self.tracker = self.lifecycle.tracker
        self._guard = self.lifecycle.guard  # the tracker and the detector's reset: Scout and squad
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
        """The Fixer's hands (actuators/choose.py); a replay hands it its own."""
        return actuator_for(self.settings)

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
        return self.senses.trace(trace_id)

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
            self.lifecycle.watch_left()  # before Scout's first look
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
        from sre_space.review import DailyReview

        daily = DailyReview(self.settings, self.log, self.paths.home / "reports")
        if not self._wait_leading():
            return
        try:
            from sre_space.squad.resume import resume_interrupted

            resume_interrupted(self._graph, self.log)  # a change a killed mind left unjudged
        except Exception as exc:
            log.exception("resuming interrupted incidents")
            self.log.emit("mind", f"resume error: {type(exc).__name__}: {exc}", kind="error")
        self.lifecycle.settle_left()
        while not self._stop.is_set():
            try:  # wall time: a replay's clock is played on by Scout alone
                item = self._work.get(timeout=0.5)
            except queue.Empty:
                item = None
            try:
                daily.write_if_due()
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
        """One look at the detectors: open, grow, degrade and resolve incidents (lifecycle.py)."""
        self.lifecycle.tick(now)

    def _opened(self, tracked: Tracked, detected_at: float, edges: set[tuple[str, str]]) -> None:
        """A confirmed anomaly, as Scout's look opens it (Lifecycle._opened; tests drive it)."""
        self.lifecycle._opened(tracked, detected_at, edges)

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
            self.lifecycle.answered(incident.id)

    def _investigate(self, tracked: Tracked, ref: str, detected_at: float) -> None:
        """The squad on one incident Scout opened: diagnose, act, verify, archive."""
        from sre_space.squad.graph import run_incident

        signals = [signal_json(a) for a in tracked.signals]
        origins, elsewhere = self.lifecycle.origins(tracked)
        window_start_ns = int((detected_at - self.settings.detect_window_s) * 1e9)
        with self.lifecycle.squad_on(tracked):
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
