"""Verify: the SLO after the change, the change undone when it did not help,
and the doubts that keep a recovery from being credited to it.
"""

from __future__ import annotations

import time
from typing import Any

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.squad.brain import reread_class
from sre_space.squad.context import SquadContext, slo
from sre_space.squad.halfopen import WORKAROUNDS
from sre_space.squad.sequential import failed_clearly, recovered_clearly
from sre_space.squad.state import SquadState
from sre_space.telemetry.model import Span, SpanKind
from sre_space.vocabulary import FAILED, RECOVERED, UNCLEAR, UNDONE

# A recovery that comes only after this many windows out of the SLO since the
# change did not follow the change: something else may have ended the trouble.
LATE_WINDOWS = 3
# A change has this many windows of fresh requests before it may be judged a
# clear failure: a queue built up before it takes a moment to drain.
UNDO_AFTER_WINDOWS = 2
# What Scout saw elsewhere that a change must have ended: failed requests. A
# caller's slow requests are not asked: they hold its callee's time, and while
# a fault goes on weaker (the fix holds) they cross the latency bar before the
# callee's do (a pool fixed at 797 ms p95 left its caller 6% over 800 ms).
ELSEWHERE_KINDS = ("error",)
CALLS_OUT = (SpanKind.CLIENT, SpanKind.PRODUCER)  # a caller's view of a request, not the request


def verify(ctx: SquadContext, state: SquadState) -> SquadState:
    """Wait for fresh telemetry from the diagnosed service; judge it against the SLO.

    Recovered as soon as a sequential test over the fresh requests says so
    clearly (``squad/sequential.py``), or when a window of ``verify_window_s``
    holding at least ``min_requests`` is within the SLO, whichever comes first.
    Not recovered when ``verify_timeout_s`` runs out, or sooner when the
    newest window is clearly no better than before the change (``_no_better``).
    """
    # The class read again on the requests started before the change, before the
    # verdict: an incident with a verdict is done for whoever waits on it.
    reread = reread_class(ctx, state)
    incident = ctx.incident(state)
    diagnosis = {**state["diagnosis"], **reread.get("diagnosis", {})}
    service, operation = diagnosis["service"], diagnosis["operation"]
    acted_on = state["plan"].get("service")
    if acted_on and acted_on != service:
        # The fix was on another service (a caller's circuit breaker): the root
        # cause may see no traffic now; the caller's requests say whether it helped.
        service, operation = acted_on, None
    settings = ctx.settings
    since_ns = int((state["applied"]["ts"] + 1.0) * 1e9)
    first_ns = since_ns
    out_until_ns: int | None = None  # the newest request of the last window out of the SLO

    def measured(s: Span) -> bool:
        return (
            s.service == service
            and (operation is None or s.name == operation)
            and s.kind == SpanKind.SERVER
        )

    def fresh() -> list[Span]:
        return ctx.store.spans_since(since_ns, measured)

    earlier = [
        s
        for s in ctx.store.spans_since(state["window_start_ns"])
        if measured(s) and s.start_ns < since_ns
    ]
    before = slo(earlier, settings.latency_threshold_ms)
    shares_before = _shares(earlier, settings)  # what "no better" is judged against, once
    deadline = time.time() + settings.verify_timeout_s
    after = slo([], settings.latency_threshold_ms)
    recovered = False
    no_better = ""  # why the change clearly did not help, when that showed before the deadline
    while time.time() < deadline:
        spans = fresh()
        window_ns = int(settings.verify_window_s * 1e9)
        judged = _settled(spans, settings.latency_threshold_ms)
        if len(judged) >= settings.min_requests and recovered_clearly(
            (_bad(s, settings.latency_threshold_ms) for s in judged),
            settings.error_rate_threshold,
        ):
            after = slo(judged, settings.latency_threshold_ms)
            recovered = True
            break
        if spans and max(s.start_ns for s in spans) - since_ns >= window_ns:
            after = slo(spans, settings.latency_threshold_ms)
            if after["requests"] >= settings.min_requests:
                recovered = _within_slo(settings, after)
                if recovered:
                    break
                # Keep only the newest window: recovery may take a moment to show.
                out_until_ns = max(s.start_ns for s in spans)
                since_ns = out_until_ns - window_ns
                if out_until_ns - first_ns >= UNDO_AFTER_WINDOWS * window_ns:
                    no_better = _no_better(spans, shares_before, settings)
                    if no_better:
                        break
        time.sleep(0.25)
    verification: dict[str, Any] = {"recovered": recovered, "before": before, "after": after}
    if no_better:
        verification["no_better"] = no_better
    doubts = _doubts(ctx, state, incident, measured, time.time()) if recovered else []
    late_s = (out_until_ns - first_ns) / 1e9 if out_until_ns is not None else 0.0
    if recovered and late_s >= LATE_WINDOWS * settings.verify_window_s:
        doubts.append(
            f"the SLO stayed out for {late_s:.0f} s after the change before it came back: "
            "what ended the trouble may be something else, the fault itself ending"
        )
    if doubts:  # the SLO is back, but this change is not known to be why
        verification["credited"] = False
        verification["unclear"] = doubts
    incident.audit.append({"ts": time.time(), "step": "verified", **verification})
    if recovered:
        incident.status = "mitigated"
        incident.mitigated_at = time.time()
        change = (
            f"{service} error rate {before['error_rate']:.0%} -> {after['error_rate']:.0%}, "
            f"p95 {before['p95_ms']:.0f} -> {after['p95_ms']:.0f} ms"
        )
        if doubts:
            incident.remediation["outcome"] = UNCLEAR
            incident.remediation["unclear"] = doubts
            plan = state["plan"]
            ctx.say(
                "fixer",
                state,
                f"recovered ({change}), but not credited to {plan['action']} {plan['service']}: "
                f"{'; '.join(doubts)}; outcome unclear",
                verification=verification,
            )
        else:
            incident.remediation["outcome"] = RECOVERED
            ctx.say("fixer", state, f"verified: {change}", verification=verification)
    else:
        plan = state["plan"]
        incident.status = "escalated"
        verdict = no_better or (
            f"not recovered within {settings.verify_timeout_s:.0f} s "
            f"(error rate {after['error_rate']:.0%})"
        )
        try:
            ctx.actuator.undo(plan["action"], plan["service"], state["applied"])
        except Exception as exc:  # still escalate, and say the undo did not happen
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            incident.remediation["outcome"] = FAILED
            incident.audit.append({"ts": time.time(), "step": "undo-failed", "error": why, **plan})
            ctx.say(
                "fixer",
                state,
                f"{verdict}, and the undo failed ({why}); escalating: "
                f"{plan['action']} {plan['service']} is still applied",
                verification=verification,
            )
        else:
            incident.remediation["outcome"] = UNDONE
            incident.audit.append({"ts": time.time(), "step": "undone", **plan})
            ctx.say(
                "fixer", state, f"{verdict}; action undone, escalating", verification=verification
            )
    ctx.log.save(incident)
    return {**reread, "verification": verification, "outcome": incident.remediation["outcome"]}


# Audit steps that change a service: ``applied`` until its verdict, the others at once.
CHANGES = ("applied", "undone", "half-open", "lifted", "reapplied")
VERDICTS = ("verified", "undone", "undo-failed")


def _doubts(
    ctx: SquadContext,
    state: SquadState,
    incident: Incident,
    measured: Any,
    verdict_at: float,
) -> list[str]:
    """Why a recovery seen after this change may not be its doing; empty when it is credited.

    Credit needs the recovery to follow the change with nothing else to explain
    it: the mind watched the whole time (no restart while verifying), the
    trouble the verdict's measure saw in the incident's window had not already
    gone from it in the last window before the change (judged by the same SLO),
    no other incident changed the same service or this incident's cause
    while the outcome was open, and the failures Scout saw at other services
    ended too (``_still_out``).
    """
    settings = ctx.settings
    applied = state["applied"]
    started = float(applied.get("started", applied["ts"]))
    doubts: list[str] = []
    last = max((i for i, a in enumerate(incident.audit) if a.get("step") == "applied"), default=-1)
    if any(a.get("step") == "resumed" for a in incident.audit[last + 1 :]):
        doubts.append(
            "the mind restarted while verifying this change, so what happened meanwhile "
            "was not watched"
        )
    # The verdict's own measure, before the change: out of the SLO in the incident's
    # window, and back within it already in the last window before the change.
    start_ns = int(started * 1e9)
    last_ns = start_ns - int(settings.verify_window_s * 1e9)
    spans = ctx.store.spans_since(state["window_start_ns"], measured)
    was = slo([s for s in spans if s.start_ns < last_ns], settings.latency_threshold_ms)
    pre = slo([s for s in spans if last_ns <= s.start_ns < start_ns], settings.latency_threshold_ms)
    enough = min(was["requests"], pre["requests"]) >= settings.min_requests
    if enough and not _within_slo(settings, was) and _within_slo(settings, pre):
        doubts.append(
            f"the trouble had already ended before it ({was['error_rate']:.0%} errors, "
            f"{was['slow_rate']:.0%} slow in the incident's window; {pre['error_rate']:.0%} "
            f"and {pre['slow_rate']:.0%} over {pre['requests']} requests in the last "
            f"{settings.verify_window_s:.0f} s before the change)"
        )
    plan = state["plan"]
    services = {
        str(state["diagnosis"].get("service") or ""),
        str(plan.get("service") or ""),
        str((plan.get("params") or {}).get("dependency") or ""),
    } - {""}
    for other, step in _other_changes(
        ctx.log, incident.id, services, started - settings.verify_window_s, verdict_at
    ):
        doubts.append(
            f"{other} also changed {step.get('service')} ({step.get('action') or step['step']}, "
            f"{step['step']}) while this outcome was open"
        )
    if plan.get("action") not in WORKAROUNDS:  # those degrade what Scout saw on purpose
        doubts.extend(_still_out(ctx, state, services))
    return doubts


def _still_out(ctx: SquadContext, state: SquadState, judged: set[str]) -> list[str]:
    """What opened the incident, elsewhere than the change was judged, still failing.

    The verdict measures the diagnosed service (or the one acted on). When
    Scout's failing requests at another service go on failing after the
    change, the change did not end this incident's trouble: a guess at the
    wrong service that happens to look well afterwards, while what paged
    goes on. Judged on the requests started since the change, the newest
    window of them, against the SLO's error rate.
    """
    settings = ctx.settings
    since_ns = int((state["applied"]["ts"] + 1.0) * 1e9)
    window_ns = int(settings.verify_window_s * 1e9)
    seen = {
        (str(s.get("service") or ""), str(s.get("operation") or ""))
        for s in state.get("signals", [])
        if s.get("kind") in ELSEWHERE_KINDS and s.get("service") not in judged
    }
    fresh: dict[tuple[str, str], list[Span]] = {key: [] for key in seen}
    for span in ctx.store.spans_since(
        since_ns, lambda s: (s.service, s.name) in seen and s.kind not in CALLS_OUT
    ):
        fresh[(span.service, span.name)].append(span)
    found = []
    for (service, operation), spans in sorted(fresh.items()):
        newest = max((s.start_ns for s in spans), default=0)
        measure = slo(
            [s for s in spans if s.start_ns >= newest - window_ns], settings.latency_threshold_ms
        )
        failing = measure["error_rate"] > settings.error_rate_threshold
        if measure["requests"] >= settings.min_requests and failing:
            found.append(
                f"{service} {operation}, where Scout saw this incident's failures, still fails "
                f"({measure['error_rate']:.0%} of {measure['requests']} requests after the change)"
            )
    return found


def _bad(span: Span, threshold_ms: float) -> bool:
    """A request the SLO counts against: failed, or slower than the latency bar."""
    return span.error or span.duration_ms > threshold_ms


def _shares(spans: list[Span], settings: Settings) -> tuple[float, float] | None:
    """The shares of bad requests and of failed ones; None for fewer than ``min_requests``."""
    if len(spans) < settings.min_requests:
        return None
    bad = sum(_bad(s, settings.latency_threshold_ms) for s in spans)
    return bad / len(spans), sum(s.error for s in spans) / len(spans)


def _no_better(fresh: list[Span], before: tuple[float, float] | None, settings: Settings) -> str:
    """Why the newest window of ``fresh`` requests says the change did not help; "" if not clear.

    ``before`` is the shares of bad and of failed requests in the incident's
    window before the change (``sequential.failed_clearly`` on each). A change
    that ended failures (more of them than the SLO allows) but left requests
    slow helped with something (a pool raised in front of a slow database):
    it is left to the timeout.
    """
    if before is None or len(fresh) < settings.min_requests:
        return ""
    bad_before, failed_before = before
    bad_now = sum(_bad(s, settings.latency_threshold_ms) for s in fresh)
    if not failed_clearly(bad_now, len(fresh), bad_before):
        return ""
    failed_now = sum(s.error for s in fresh)
    failing = failed_before > settings.error_rate_threshold  # failures were the SLO's trouble
    if failing and not failed_clearly(failed_now, len(fresh), failed_before):
        return ""
    return (
        f"no better than before the change: {bad_now} of {len(fresh)} fresh requests "
        f"failed or slow, against {bad_before:.0%} before it"
    )


def _settled(spans: list[Span], threshold_ms: float) -> list[Span]:
    """Fresh requests in the order they started, up to where the slow ones are in too.

    Spans arrive when they end, so the first to arrive after a change are the
    fast ones. A request that started more than the latency bar before the
    newest end seen is either here or slow (and, its exporter willing, here
    soon); later ones are left for the next look.
    """
    if not spans:
        return []
    horizon = max(s.end_ns for s in spans) - int(threshold_ms * 1e6)
    return sorted((s for s in spans if s.start_ns <= horizon), key=lambda s: s.start_ns)


def _within_slo(settings: Settings, measure: dict[str, Any]) -> bool:
    """The verdict's yardstick: errors and slow requests both at most the error-rate threshold."""
    return bool(
        measure["error_rate"] <= settings.error_rate_threshold
        and measure["slow_rate"] <= settings.error_rate_threshold
    )


def _other_changes(
    log: IncidentLog, own: str, services: set[str], since: float, until: float
) -> list[tuple[str, dict[str, Any]]]:
    """Other incidents' changes to ``services`` that may show between ``since`` and ``until``.

    From the incidents' audit trails: a change made in that span, or an
    ``applied`` one made earlier whose own verdict had not come by ``since``
    (its effect may be what shows now).
    """
    found: list[tuple[str, dict[str, Any]]] = []
    for other in log.list(limit=50):
        if other.id == own:
            continue
        for i, step in enumerate(other.audit):
            name = step.get("step")
            if name not in CHANGES:
                continue
            touched = {
                str(step.get("service") or ""),
                str((step.get("params") or {}).get("dependency") or ""),
            }
            ts = float(step.get("ts") or 0.0)
            if not touched & services or ts > until:
                continue
            if ts < since and name == "applied":
                later = other.audit[i + 1 :]
                verdict = next(
                    (float(a.get("ts") or 0.0) for a in later if a.get("step") in VERDICTS), None
                )
                if verdict is not None and verdict <= since:
                    continue
            elif ts < since:
                continue
            found.append((other.id, step))
    return found
