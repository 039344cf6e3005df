"""Half-open probes: the squad lifts its own workarounds once the dependency answers again.

An open circuit or load shedding rides out a fault by degrading on purpose;
left in place, it keeps the system degraded after the fault is gone. As a
circuit breaker's half-open state does, the prober lifts the workaround for a
trial (closes the circuit, stops shedding), watches the traffic that then
reaches the dependency for ``trial_s``, and either leaves it lifted (the
dependency answers within the SLO) or puts the workaround back and tries again
later, waiting twice as long each time (capped). Each step goes into the
incident's audit trail: ``half-open``, then ``lifted`` or ``reapplied``.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sre_space.incidents import Incident
from sre_space.squad.context import SquadContext, slo
from sre_space.telemetry.model import Span, SpanKind

log = logging.getLogger(__name__)

WORKAROUNDS = ("open_circuit", "shed_load")  # actions that degrade on purpose
FIRST_PROBE_S = 10.0  # after the workaround was verified
MAX_WAIT_S = 120.0
LOOKBACK_S = 6 * 3600.0  # incidents older than this keep what they have


@dataclass
class Workaround:
    incident_id: str
    action: str
    service: str
    params: dict[str, Any]
    applied: dict[str, Any]
    next_probe: float
    wait_s: float = FIRST_PROBE_S

    @property
    def watched(self) -> str:
        """Whose answers say it is safe: the dependency behind a circuit, else the service."""
        return str(self.params.get("dependency") or self.service)


def open_workarounds(incident: Incident) -> list[tuple[str, dict[str, Any]]]:
    """(incident id, applied step) for each workaround still in place on this incident."""
    found: dict[tuple[str, str], dict[str, Any]] = {}
    verified = False
    for step in incident.audit:
        name = step.get("step")
        key = (str(step.get("action")), str(step.get("service")))
        if name == "applied" and key[0] in WORKAROUNDS:
            found[key] = step
        elif name == "verified":
            verified = bool(step.get("recovered"))
        elif name in ("lifted", "undone"):
            found.pop(key, None)
        elif name == "reapplied" and key in found:
            found[key] = {**found[key], "result": step.get("result") or {}}
    return [(incident.id, step) for step in found.values()] if verified else []


class HalfOpen:
    def __init__(self, ctx: SquadContext, trial_s: float | None = None) -> None:
        self.ctx = ctx
        self.trial_s = trial_s if trial_s is not None else max(3.0, ctx.settings.verify_window_s)
        self.known: dict[tuple[str, str, str], Workaround] = {}

    def scan(self, now: float) -> None:
        """Pick up workarounds put in since the last scan (from the incident log)."""
        for incident in self.ctx.log.since(now - LOOKBACK_S):
            for incident_id, step in open_workarounds(incident):
                key = (incident_id, str(step["action"]), str(step["service"]))
                if key not in self.known:
                    self.known[key] = Workaround(
                        incident_id,
                        str(step["action"]),
                        str(step["service"]),
                        dict(step.get("params") or {}),
                        dict(step.get("result") or {}),
                        next_probe=now + FIRST_PROBE_S,
                    )

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        self.scan(now)
        for key, item in list(self.known.items()):
            if now >= item.next_probe:
                if self.probe(item):
                    del self.known[key]
                now = time.time()

    def _audit(self, item: Workaround, step: str, **detail: Any) -> None:
        incident = self.ctx.log.get(item.incident_id)
        if incident is None:
            return
        incident.audit.append(
            {
                "ts": time.time(),
                "step": step,
                "action": item.action,
                "service": item.service,
                "params": item.params,
                **detail,
            }
        )
        self.ctx.log.save(incident)

    def _say(self, item: Workaround, message: str) -> None:
        self.ctx.log.emit("fixer", message, incident_id=item.incident_id, data={})

    def probe(self, item: Workaround) -> bool:
        """One half-open trial; True when the workaround is lifted for good."""
        ctx = self.ctx
        try:
            applied = {"params": item.params, **item.applied}
            ctx.actuator.undo(item.action, item.service, applied)
        except Exception as exc:  # cannot lift it now: try later
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._audit(item, "half-open-failed", error=why)
            self._later(item)
            return False
        started = time.time()
        self._audit(item, "half-open", watching=item.watched)
        self._say(item, f"half-open: lifted {item.action} on {item.service} for a trial")
        since_ns = int((started + 0.5) * 1e9)

        def measured(span: Span) -> bool:
            return span.service == item.watched and span.kind == SpanKind.SERVER

        settings = ctx.settings
        deadline = started + self.trial_s * 3  # room for the first calls to arrive
        after = slo([], settings.latency_threshold_ms)
        while time.time() < deadline:
            spans = ctx.store.spans_since(since_ns, measured)
            if len(spans) >= settings.min_requests:
                after = slo(spans, settings.latency_threshold_ms)
                failing = max(after["error_rate"], after["slow_rate"])
                # Clearly failing: end the trial now, callers suffer it only this long.
                if failing > 2 * settings.error_rate_threshold:
                    break
                if time.time() - started >= self.trial_s:
                    break
            time.sleep(0.25)
        healthy = (
            after["requests"] >= settings.min_requests
            and after["error_rate"] <= settings.error_rate_threshold
            and after["slow_rate"] <= settings.error_rate_threshold
        )
        if healthy:
            self._audit(item, "lifted", after=after)
            self._say(
                item,
                f"lifted {item.action} on {item.service}: {item.watched} answers again "
                f"({after['requests']} requests, {after['error_rate']:.0%} errors, "
                f"p95 {after['p95_ms']:.0f} ms)",
            )
            return True
        try:
            item.applied = ctx.actuator.apply(item.action, item.service, item.params)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self._audit(item, "reapply-failed", error=why, after=after)
            self._say(
                item,
                f"half-open: {item.watched} still fails and {item.action} "
                f"could not be put back ({why})",
            )
            return True  # nothing left in place to lift
        self._audit(item, "reapplied", after=after, result=item.applied)
        self._say(
            item,
            f"half-open: {item.watched} still fails ({after['requests']} requests, "
            f"{after['error_rate']:.0%} errors); {item.action} on {item.service} put back",
        )
        self._later(item)
        return False

    def _later(self, item: Workaround) -> None:
        item.wait_s = min(MAX_WAIT_S, item.wait_s * 2)
        item.next_probe = time.time() + item.wait_s

    def run(self, stop: threading.Event, interval_s: float = 1.0) -> None:
        while not stop.wait(interval_s):
            try:
                self.tick()
            except Exception:  # the prober must outlive one bad pass
                log.exception("half-open probe")
