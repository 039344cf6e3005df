"""Scout's incident lifecycle: what the tracker's changes do to the incident log.

Each look at the detectors (``tick``) opens incidents, grows, degrades and
resolves them, adopts what alerts and a previous mind left, learns the Brain's
causes, and lets go of what people resolved. Opened incidents are handed to the
squad; what the squad concludes comes back here (``investigated``, ``answered``,
``settle_left``) and is settled on Scout's next look. One lock (``guard``)
guards what Scout and the squad both touch: the tracker and the detector's reset.

The mind (mind.py) runs the threads and wires this to its log, store, detector,
alert box and clock.

:class:`Lifecycle` is over 300 lines on purpose: each of its steps reads and
changes the tracker under the one guard, and their order within a look is the
lifecycle; split, every part would take the tracker and the lock with it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sre_space.alerts import Alert, AlertBox
from sre_space.clock import Clock
from sre_space.config import Settings
from sre_space.detect.tracker import AMBIGUOUS, KEEP_S, IncidentTracker, Tracked
from sre_space.detect.window import Signal, WindowDetector
from sre_space.incidents import Incident, IncidentLog
from sre_space.squad.halfopen import open_workarounds
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

SCOUT_TICK_S = 0.5  # Scout's wait between two looks at the detectors
# An anomaly must be there on two looks in a row before Scout opens an incident:
# the detectors' signals are already beyond chance and held by hysteresis, so
# what a second look filters is a signal that flickers on for one look only.
CONFIRM_S = SCOUT_TICK_S


def signal_json(signal: Signal) -> dict[str, Any]:
    """A signal as the squad is handed it: what Scout saw, and why it judged it anomalous."""
    return {
        "service": signal.service,
        "operation": signal.operation,
        "count": signal.count,
        "errors": signal.errors,
        "slow": signal.slow,
        "error_rate": round(signal.error_rate, 4),
        "p95_ms": round(signal.p95_ms, 1),
        "kind": signal.kind,  # why Scout judged it anomalous (detect/window.py)
        "reason": signal.reason,
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


class Lifecycle:
    """Scout's side of incidents: the tracker, and what its changes do to the log.

    ``hand_over`` gives an opened incident to the squad (the mind's queue). Over
    300 lines on purpose: every transition changes the same tracker and log in
    one tick, and one fault, one incident is checked with them side by side.
    """

    def __init__(
        self,
        settings: Settings,
        log: IncidentLog,
        store: TraceStore,
        detector: WindowDetector,
        alerts: AlertBox,
        clock: Clock,
        hand_over: Callable[[tuple[Tracked, str, float]], None],
    ) -> None:
        self.settings = settings
        self.log = log
        self.store = store
        self.detector = detector
        self.alerts = alerts
        self.clock = clock
        self._hand_over = hand_over  # Scout -> squad
        self._first_tick = 0.0  # Scout's first look, on the mind's clock
        self.tracker = IncidentTracker(
            confirm_s=CONFIRM_S, quiet_s=settings.resolve_quiet_s, link_s=settings.detect_window_s
        )
        self.guard = threading.Lock()  # the tracker and the detector's reset: Scout and squad
        self._done: list[
            tuple[Tracked | None, str | None, float]
        ] = []  # squad -> Scout (see _settle)
        self._left: list[Tracked] = []  # a previous mind's changes the squad resumes (watch_left)
        self._resumed = threading.Event()  # the squad has resumed what a previous mind left

    def tick(self, now: float) -> None:
        """One look at the detectors: open, grow, degrade and resolve incidents.

        Grouping by cause, confirmation and the lifecycle after the squad: one
        cascade is one incident, one bad second is none, a fix that holds while
        the fault goes on is the same incident (degraded), and a second fault
        behind the same front door is an incident of its own. Opened incidents
        go to the squad's queue; Scout goes on looking meanwhile.
        """
        with self.guard:
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
        self._hand_over((tracked, incident.id, now))
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
        named yet waits for it (at most ``settings.brain_wait_s``): confirmed
        again at each look, it is decided once the cause is known.
        """
        waiting = detected_at - tracked.first_seen < self.settings.brain_wait_s
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
        self._hand_over((tracked, incident.id, detected_at))

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
        quiet = f"no anomaly of its own for {self.settings.resolve_quiet_s:.0f} s"
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
        quiet_s = self.settings.resolve_quiet_s
        if now - self._first_tick < quiet_s or self.tracker.active():
            return
        known = {t.ref for t in self.tracker.incidents}
        for status in ("mitigated", "degraded"):
            for incident in self.log.list(limit=20, status=status):
                if incident.id in known:
                    continue
                incident.status = "resolved"
                incident.resolved_at = now
                self.log.save(incident, why=f"no anomaly for {quiet_s:.0f} s", by="scout")

    def watch_left(self) -> None:
        """What a previous mind left keeps answering for its cause: no duplicate on a restart.

        The incidents whose change the squad resumes (squad/resume.py), or that
        wait for a person's answer, are the squad's until it is done with them;
        mitigated, degraded and escalated ones are watched as if this mind had
        settled them. The same cause showing meanwhile is theirs, not a new
        incident. Left alone: those without a root cause, and those nobody
        touched for an hour (the tracker's memory of incidents).
        """
        now = self.clock.time()
        with self.guard:
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
                        tracked.busy = True  # until a person answers (answered)
                    elif not self._resumed.is_set():
                        tracked.busy = True  # until the squad has resumed it (settle_left)
                        self._left.append(tracked)
                    continue  # else the resume failed: watched, and resolved when quiet
                state = {ESCALATED: "watching", DEGRADED: "degraded"}.get(incident.status)
                tracked.masked = bool(open_workarounds(incident))
                self.tracker.settled(tracked, state or "mitigated", now)

    def settle_left(self) -> None:
        """The squad resumed what a previous mind left: Scout watches them as it settled them."""
        with self.guard:
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

    def origins(self, tracked: Tracked) -> tuple[list[str], list[str]]:
        """An incident's origins and, for its squad, those of the other faults showing now."""
        with self.guard:  # the causes of other faults showing now (not this one's)
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
        return origins, elsewhere

    def investigated(self, tracked: Tracked) -> None:
        """The squad is done with an incident Scout opened: settled on Scout's next look."""
        with self.guard:
            status = self._after_squad(tracked)
            state: str | None = None
            if status in ("mitigated", "resolved"):
                state = "mitigated"
            elif status not in ("open", "diagnosing", "mitigating"):  # escalated: still watched
                state = "watching"
            self._done.append((tracked, state, self.clock.time()))

    @contextmanager
    def squad_on(self, tracked: Tracked) -> Iterator[None]:
        """The squad works on an incident Scout opened; then Scout settles it.

        When the squad fails on it (a bug of ours), people take it over:
        escalated, with the error's type. Left diagnosing, it would wait for a
        squad that has given up, with nobody told, and never be settled.
        """
        try:
            yield
        except Exception as exc:
            incident = self.log.get(tracked.ref) if tracked.ref else None
            if incident is not None and incident.status in ACTIVE:
                incident.status = ESCALATED
                why = f"the squad failed on it ({type(exc).__name__}); a person takes over"
                self.log.save(incident, why=why, by="squad")
            raise
        finally:
            self.investigated(tracked)

    def answered(self, ref: str) -> None:
        """The squad resumed an incident a human answered: settled on Scout's next look."""
        with self.guard:
            tracked = next((t for t in self.tracker.incidents if t.ref == ref), None)
            state: str | None = None
            if tracked is not None:  # else a previous mind's: only the reset is due
                status = self._after_squad(tracked)
                state = "mitigated" if status in ("mitigated", "resolved") else "watching"
            self._done.append((tracked, state, self.clock.time()))

    def _after_squad(self, tracked: Tracked) -> str:
        """What the squad concluded: the cause for the tracker, a recurrence for the log."""
        final = self.log.get(tracked.ref)
        if final is None:
            return "escalated"
        cause = str(final.root_cause.get("service") or "")
        if cause and cause != tracked.cause:
            self.tracker.attribute(tracked, cause, self.clock.time())
        tracked.masked = bool(open_workarounds(final))
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
