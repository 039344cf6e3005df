"""The four agents. Each reads the incident state and returns its update.

Every step is written to the incident log as an event, which is how `run`,
`watch` and the drill journal see the squad work.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from langgraph.types import interrupt

from sre_space import logs
from sre_space.actuators import Actuator
from sre_space.actuators.targets import generic_proposal
from sre_space.clock import SYSTEM, Clock
from sre_space.config import Settings
from sre_space.detect.window import percentile
from sre_space.incidents import Incident, IncidentLog
from sre_space.rca.candidate import Candidate, confidence_words
from sre_space.rca.localize import LIVE_LOOKBACK_S, localize
from sre_space.squad import hardening, releases, runbook
from sre_space.squad.policy import Policy
from sre_space.squad.state import SquadState
from sre_space.telemetry.model import Span, SpanKind
from sre_space.telemetry.store import TraceStore
from sre_space.vocabulary import (
    AWAITING_APPROVAL,
    DENIED,
    DRY_RUN,
    FAILED,
    INVESTIGATE,
    PENDING,
    PROPOSED,
    RECOVERED,
    REFUSED,
    UNCLEAR,
    UNDONE,
    Outcome,
    describe,
)

RELOOK_S = 4.0  # how long the Brain waits before a second look at an incident
MAX_LOOKS = 2  # second looks before the Fixer escalates for want of a remediation
# Below the policy's min_confidence the Fixer looks again; after MAX_LOOKS, under
# `auto`, it writes the proposal and escalates (never acts on a guess).
BRAIN_DETAILED = 3  # candidates kept with their evidence in the incident; the rest in brief
PLAN_KEYS = ("action", "service", "params", "source", "memory_ref", "reason")


class Memory(Protocol):
    def search(
        self, query: str, *, k: int = 3, service: str | None = None, signature: str | None = None
    ) -> list[Any]: ...

    def archive(self, entry: Any) -> Any: ...

    def failed_remediations(self, signature: str) -> list[dict[str, Any]]: ...


@dataclass
class SquadContext:
    settings: Settings
    store: TraceStore
    log: IncidentLog
    memory: Memory
    actuator: Actuator
    policy: Policy
    clock: Clock = SYSTEM  # the Brain's second look waits on it (replay: recorded time)

    def incident(self, state: SquadState) -> Incident:
        incident = self.log.get(state["incident_id"])
        if incident is None:
            raise KeyError(state["incident_id"])
        return incident

    def say(self, agent: str, state: SquadState, message: str, **data: Any) -> None:
        self.log.emit(agent, message, incident_id=state.get("incident_id"), data=data)


def slo(spans: list[Span], threshold_ms: float) -> dict[str, Any]:
    durations = [s.duration_ms for s in spans]
    errors = sum(s.error for s in spans)
    return {
        "requests": len(spans),
        "error_rate": round(errors / len(spans), 4) if spans else 0.0,
        "p95_ms": round(percentile(durations, 0.95), 1),
        "slow_rate": round(sum(d > threshold_ms for d in durations) / len(spans), 4)
        if spans
        else 0.0,
    }


def scout(ctx: SquadContext, state: SquadState) -> SquadState:
    incident = ctx.incident(state)
    worst = max(state.get("signals", []), key=lambda s: s["errors"] + s["slow"], default=None)
    if worst:
        ctx.say(
            "scout",
            state,
            f"incident opened: {len(state['signals'])} anomalous operation(s); worst "
            f"{worst['service']} {worst['operation']}: {worst['error_rate']:.0%} errors, "
            f"p95 {worst['p95_ms']:.0f} ms over {worst['count']} requests"
            + (f"; {worst['reason']}" if worst.get("reason") else ""),
            signals=state["signals"],
        )
    incident.status = "diagnosing"
    ctx.log.save(incident)
    return {}


def brain(ctx: SquadContext, state: SquadState) -> SquadState:
    if state.get("relook"):
        ctx.clock.sleep(RELOOK_S)  # the squad loop waits too: this incident is still open
    incident = ctx.incident(state)
    # From a while before the window: the change point inside shows where the
    # trouble began, and what came before it is the reference for normal.
    since_ns = state["window_start_ns"] - int(LIVE_LOOKBACK_S * 1e9)
    traces = ctx.store.traces_since(since_ns)
    candidates = _own_candidates(ctx, state, traces, incident.first_error_at)
    if not candidates:
        ctx.say("brain", state, "no traces in the store for this window yet")
        return {"diagnosis": {}, "relook": False}
    top = candidates[0]
    diagnosis = {**top.to_json(), "exception": top.exception, "signature": top.signature}
    diagnosis["confidence"] = top.confidence
    diagnosis["confidence_words"] = confidence_words(top.confidence)
    diagnosis["description"] = describe(top.fault_class)
    diagnosis.update(_signature_detail(traces, top.service))
    query = f"{top.service} {top.operation} {top.fault_class} {top.exception}"
    hits = ctx.memory.search(query, k=3, signature=top.signature)
    recall = [h.to_json() for h in hits]
    incident.signature = top.signature
    incident.root_cause = {
        "service": top.service,
        "operation": top.operation,
        "fault_class": top.fault_class,
        "confidence": diagnosis["confidence"],
        "evidence": top.evidence,
        # every service that took part, best first: the first few in full
        "candidates": [c.to_json() for c in candidates[:BRAIN_DETAILED]]
        + [_ranked(c) for c in candidates[BRAIN_DETAILED:]],
    }
    incident.memory_hits = recall
    ctx.log.save(incident)
    account = top.exception or (
        "see evidence" if top.evidence.get("explained_traces") else "no evidence stands out"
    )
    ctx.say(
        "brain",
        state,
        f"root cause {top.service} {top.operation} ({top.fault_class}, "
        f"confidence {top.confidence:.2f}, {confidence_words(top.confidence)}): {account}; "
        f"{len(recall)} similar past incident(s)",
        diagnosis=diagnosis,
    )
    return {"diagnosis": diagnosis, "recall": recall, "relook": False}


def _own_candidates(
    ctx: SquadContext, state: SquadState, traces: list[list[Span]], first: float | None
) -> list[Candidate]:
    """The causes for this incident, best first, from the recent traces.

    Two faults at once: the traces show both, and the stronger may be the
    cause of another fault showing now (``elsewhere``), not one of this
    incident's anomalous services. Then the ranking is redone on the traces
    that pass through this incident's own origins (Scout's deepest anomalous
    services), without the other faults' causes; its best is taken when the
    evidence for it stands on its own (the confidence the Fixer acts on).
    """
    threshold = ctx.settings.latency_threshold_ms
    # ``first``: Scout's first bad second (when it arrived, rounded down). The
    # change is looked for near it, not in an older fault the look-back reaches.
    onset_ns = int((first - 1.0) * 1e9) if first is not None else None
    candidates = localize(traces, threshold, onset_ns=onset_ns)
    elsewhere = set(state.get("elsewhere") or ())
    own = set(state.get("origins") or ()) - elsewhere
    mine_anyway = {str(s.get("service")) for s in state.get("signals") or ()}
    if not candidates or not own:
        return candidates
    top = candidates[0].service
    if top not in elsewhere or top in mine_anyway:
        return candidates
    through = [t for t in traces if any(s.service in own for s in t)]
    mine = [
        c for c in localize(through, threshold, onset_ns=onset_ns) if c.service not in elsewhere
    ]
    if not mine or mine[0].confidence < ctx.policy.min_confidence:
        return candidates
    ctx.say(
        "brain",
        state,
        f"{candidates[0].service} is another open incident's cause; "
        f"ranking the traces through {', '.join(sorted(own))}",
    )
    return mine


def _ranked(c: Candidate) -> dict[str, Any]:
    """A lower-ranked candidate, without its evidence."""
    return {
        "service": c.service,
        "operation": c.operation,
        "fault_class": c.fault_class,
        "confidence": c.confidence,
        "score": round(c.score, 4),
    }


def _signature_detail(traces: list[list[Span]], service: str) -> dict[str, Any]:
    """The HTTP status codes the root cause answered with, and who called it (for memory)."""
    codes: set[int] = set()
    callers: dict[str, int] = {}
    for trace in traces:
        by_id = {s.span_id: s for s in trace}
        for span in trace:
            if span.service != service or span.kind != SpanKind.SERVER:
                continue
            if span.error and span.http_status is not None:
                codes.add(span.http_status)
            parent = by_id.get(span.parent_id or "")
            if parent is not None and parent.service != service:
                callers[parent.service] = callers.get(parent.service, 0) + 1
    caller = max(callers, key=lambda c: callers[c]) if callers else ""
    return {
        "status_codes": sorted(codes),
        "call_edge": f"{caller} -> {service}" if caller else "",
    }


def _from_memory(ctx: SquadContext, state: SquadState) -> dict[str, Any] | None:
    """A remembered fix for the same signature that verifiably worked, if confident enough."""
    signature = state["diagnosis"].get("signature")
    failed = {
        str(h.get("remediation"))
        for h in state.get("recall", [])
        if h.get("outcome") not in (RECOVERED, UNCLEAR)  # unclear: no lesson either way
    }
    for hit in state.get("recall", []):
        if (
            hit.get("outcome") == RECOVERED
            and hit.get("signature") == signature
            and _confidence(hit) >= ctx.settings.memory_min_confidence
            and str(hit.get("remediation")) not in failed
        ):
            if _unverified_import(hit):
                ctx.say(
                    "fixer",
                    state,
                    f"{hit['id']} was imported and its fix has not worked here yet: "
                    "not applying it automatically",
                )
                continue
            rem = dict(hit["remediation"])
            return {
                "action": rem["action"],
                "service": rem.get("service", state["diagnosis"]["service"]),
                "params": rem.get("params", {}),
                "reason": f"worked before in {hit['id']} (confidence {_confidence(hit):.2f})",
                "source": "memory",
                "memory_ref": hit["id"],
            }
    return None


def _unverified_import(hit: dict[str, Any]) -> bool:
    """Imported by `memory import` without --trust: another home's word, not evidence here.

    Once the same fix works here, Jules archives a local entry for it, and that hit is used.
    """
    return bool(hit.get("imported")) and not hit.get("trusted", True)


def _confidence(hit: dict[str, Any]) -> float:
    """What the Fixer acts on: the memory's confidence (only an identical signature passes)."""
    return float(hit.get("confidence", hit.get("score", 0.0)) or 0.0)


def _failed_before(ctx: SquadContext, state: SquadState, plan: dict[str, Any]) -> str | None:
    """The past incident where this same remediation failed for this signature, if any.

    Asks the memory for every failure of the signature, not only the top recalls.
    """
    signature = state["diagnosis"].get("signature")
    if not signature:
        return None
    for failed in ctx.memory.failed_remediations(str(signature)):
        if failed.get("action") == plan["action"] and failed.get("params") == plan["params"]:
            return str(failed["incident_id"])
    return None


def _look_again(ctx: SquadContext, state: SquadState, why: str) -> SquadState:
    """Hand back to the Brain while evidence accumulates, a bounded number of times.

    An incident is often confirmed before its nature shows (a slow database
    seconds before the pool it feeds runs out): a second look finds what the
    first could not act on.
    """
    looks = state.get("looks", 0)
    if looks >= MAX_LOOKS:
        ctx.say("fixer", state, f"{why}; escalating")
        return {"plan": {}, "relook": False}
    ctx.say("fixer", state, f"{why}; looking again in {RELOOK_S:.0f} s")
    return {"plan": {}, "relook": True, "looks": looks + 1}


def _log_bug(ctx: SquadContext, where: str, exc: BaseException) -> Path:
    """Write ``exc``'s traceback under ``$SRE_SPACE_HOME/logs``; the path to it."""
    return logs.record_bug(ctx.settings.home, where, exc)


def _platform(ctx: SquadContext, service: str) -> tuple[dict[str, Any], str]:
    """The service's knobs as its target reports them, or ``{}`` and why they cannot be read."""
    try:
        return ctx.actuator.config(service), ""
    except Exception as exc:  # no target, or its platform does not answer: plan without it
        return {}, f"{type(exc).__name__}: {exc}".splitlines()[0]


def _config_of(ctx: SquadContext) -> Any:
    def read(service: str) -> dict[str, Any]:
        return _platform(ctx, service)[0]

    return read


def _releases(ctx: SquadContext, state: SquadState, service: str) -> dict[str, Any]:
    """Which release failed since the onset and which served before it (squad/releases.py)."""
    since_ns = state["window_start_ns"] - int(LIVE_LOOKBACK_S * 1e9)
    history_of = getattr(ctx.actuator, "releases", None)
    history: list[dict[str, Any]] = []
    if history_of is not None:
        try:
            history = list(history_of(service))
        except Exception:  # the platform's history is a second source, not a must
            history = []
    return releases.evidence(
        ctx.store.spans_since(since_ns),
        service,
        state["window_start_ns"],
        ctx.settings.error_rate_threshold,
        history,
    )


def _choose(ctx: SquadContext, state: SquadState) -> tuple[dict[str, Any], SquadState]:
    """The plan for this diagnosis, or no plan and the state to hand on instead."""
    diagnosis = state.get("diagnosis") or {}
    if not diagnosis:
        return {}, _look_again(ctx, state, "no diagnosis")
    confidence = float(diagnosis.get("confidence") or 0.0)
    if confidence < ctx.policy.min_confidence and state.get("looks", 0) < MAX_LOOKS:
        # Early in an incident the evidence is thin (a slow database seconds
        # before the pool it feeds runs dry): wait for it rather than act on a guess.
        why = f"diagnosis not clear yet (confidence {confidence:.2f})"
        return {}, _look_again(ctx, state, why)
    plan = _from_memory(ctx, state)
    if plan is None:
        service = str(diagnosis["service"])
        config, unreadable = _platform(ctx, service)
        try:
            evidence = dict(diagnosis)
            if diagnosis.get("fault_class") == "error":
                evidence["releases"] = _releases(ctx, state, service)
            found = runbook.plan_for(evidence, config, _config_of(ctx))
        except Exception as exc:  # a bug of ours, not the system's state: say so, keep the trace
            path = _log_bug(ctx, f"runbook on {state.get('incident_id')}", exc)
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            ctx.say(
                "fixer",
                state,
                f"the runbook failed on this diagnosis ({why}); escalating (traceback in {path})",
            )
            return {}, {"plan": {}}
        plan = {**found, "source": "runbook"}
        if "releases" in evidence:
            plan["evidence"] = {"releases": evidence["releases"]}
        if unreadable:  # no target, or its platform does not answer: a proposal, at once
            plan["escalate"] = True
            plan["reason"] = f"{plan['reason']} (not carried out: {unreadable})"
        elif plan.get("escalate") and state.get("looks", 0) < MAX_LOOKS:
            # Evidence accumulates (a release change shows once its spans arrive): look again.
            return {}, _look_again(ctx, state, f"no safe action yet: {plan['reason']}")
    failed = _failed_before(ctx, state, plan)
    if failed:
        ctx.say(
            "fixer",
            state,
            f"{plan['action']} {plan['service']} {plan['params']} already failed for this "
            f"signature in {failed}; not repeating it, escalating",
        )
        return {}, {"plan": {}}
    if confidence < ctx.policy.min_confidence and not plan.get("escalate"):
        plan = _unsure(ctx, state, plan, confidence)
    return plan, {}


def _unsure(
    ctx: SquadContext, state: SquadState, plan: dict[str, Any], confidence: float
) -> dict[str, Any]:
    """The plan for a diagnosis still below the threshold after every look.

    Under ``auto`` it is written down for a person and nothing is done, whether
    the runbook or memory offers it: an action on a guess changes what was not
    broken, and when the trouble passes for another reason it is credited with
    the recovery and remembered. Under ``approve`` a person is still asked: the
    confidence is in the plan they are shown, and their yes is the judgement
    the Brain could not make. ``dry-run`` changes nothing in any case.
    """
    threshold = ctx.policy.min_confidence
    why = f"confidence {confidence:.2f} below the threshold {threshold:.2f}"
    if ctx.policy.mode != "auto":
        return {**plan, "reason": f"{plan['reason']} ({why})"}
    ctx.say(
        "fixer",
        state,
        f"{why} after {state.get('looks', 0)} more look(s): not acting on a guess; "
        f"proposing {plan['action']} {plan['service']} for a person",
        confidence=confidence,
        threshold=threshold,
    )
    return {**plan, "escalate": True, "reason": f"{plan['reason']} (not carried out: {why})"}


def _propose(
    ctx: SquadContext, state: SquadState, incident: Incident, plan: dict[str, Any], outcome: Outcome
) -> SquadState:
    """Write the plan down as a proposal for a person (action, reason, evidence, how) and escalate."""
    diagnosis = state.get("diagnosis") or {}
    describe = getattr(ctx.actuator, "describe", None)
    try:
        if plan["action"] == INVESTIGATE:
            how = {}  # nothing to carry out: the reason says what to look at
        elif describe is not None:
            how = describe(plan["action"], plan["service"], plan["params"])
        else:
            how = generic_proposal(plan["action"], plan["service"], plan["params"])
    except Exception as exc:  # the proposal still stands without the command
        how = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    proposal = {
        "action": plan["action"],
        "service": plan["service"],
        "params": plan["params"],
        "reason": plan["reason"],
        "evidence": {
            "root_cause": diagnosis.get("service"),
            "operation": diagnosis.get("operation"),
            "fault_class": diagnosis.get("fault_class"),
            "exception": diagnosis.get("exception"),
            "confidence": diagnosis.get("confidence"),
            "call_edge": diagnosis.get("call_edge"),
            "exemplar_trace_ids": (diagnosis.get("evidence") or {}).get("exemplar_trace_ids", []),
            **(plan.get("evidence") or {}),
        },
        "how": how,
    }
    # Also a file, for a person or a pipeline that reads proposals rather than incidents.
    path = ctx.settings.home / "proposals" / f"{incident.id}-{plan['action']}.json"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"incident": incident.id, **proposal}, indent=2, default=str))
        proposal["file"] = str(path)
    except OSError:  # the incident log still holds it
        pass
    incident.remediation["outcome"] = outcome
    incident.remediation["proposal"] = proposal
    incident.audit.append({"ts": time.time(), "step": "proposed", **proposal})
    ctx.log.save(incident)
    way = next(
        (
            how[k]
            for k in ("command", "argv", "commands", "request", "post", "patch", "missing")
            if how.get(k)
        ),
        "",
    )
    ctx.say(
        "fixer",
        state,
        f"{'dry-run: would' if outcome == DRY_RUN else 'proposal:'} {plan['action']} "
        f"{plan['service']} {plan['params']} ({plan['reason']}); how: {way}; escalating",
        proposal=proposal,
    )
    return {"plan": plan} if outcome == DRY_RUN else {"plan": {}}


def fixer(ctx: SquadContext, state: SquadState) -> SquadState:
    incident = ctx.incident(state)
    resuming = incident.remediation.get("outcome") == AWAITING_APPROVAL
    plan: dict[str, Any]
    if resuming:
        # LangGraph runs this node again from the top when a human answers: act on
        # exactly the plan they were shown, not one rebuilt from memory as it is now.
        plan = {k: incident.remediation.get(k) for k in PLAN_KEYS}
    else:
        plan, handover = _choose(ctx, state)
        if not plan:
            return handover
    incident.remediation = {
        **{k: plan.get(k) for k in PLAN_KEYS},
        "outcome": PENDING,
    }
    if plan.get("escalate"):
        outcome: Outcome = DRY_RUN if ctx.policy.mode == "dry-run" else PROPOSED
        return _propose(ctx, state, incident, plan, outcome)
    refusal = ctx.policy.refuse(plan, sum(a.get("step") == "applied" for a in incident.audit))
    if refusal:
        incident.remediation["outcome"] = REFUSED
        incident.audit.append({"ts": time.time(), "step": "refused", "reason": refusal, **plan})
        ctx.log.save(incident)
        ctx.say(
            "fixer",
            state,
            f"policy refuses {plan['action']} {plan['service']}: {refusal}; escalating",
        )
        return {"plan": {}}
    if ctx.policy.mode == "dry-run":
        return _propose(ctx, state, incident, plan, DRY_RUN)
    incident.status = "mitigating"
    if ctx.policy.mode == "approve":
        incident.remediation["outcome"] = AWAITING_APPROVAL
        ctx.log.save(incident)
        if not resuming:  # a resumed node runs again from the top: say it once
            ctx.say(
                "fixer",
                state,
                f"awaiting approval: {plan['action']} {plan['service']} {plan['params']} "
                f"(sre-space approve {incident.id} / deny {incident.id})",
                plan=plan,
            )
        # Pauses the graph here; the mind resumes it with the human's answer.
        decision = interrupt({"incident_id": incident.id, "plan": plan})
        incident = ctx.incident(state)
        incident.audit.append({"ts": time.time(), "step": f"human:{decision}", **plan})
        if decision != "approve":
            incident.remediation["outcome"] = DENIED
            ctx.log.save(incident)
            ctx.say(
                "fixer", state, f"denied by a human: {plan['action']} {plan['service']}; escalating"
            )
            return {"plan": {}}
        incident.remediation["outcome"] = PENDING
    ctx.log.save(incident)
    ctx.say(
        "fixer",
        state,
        f"{plan['action']} {plan['service']} {plan['params']} ({plan['source']}: {plan['reason']})",
        plan=plan,
    )
    ctx.policy.record(plan["service"])
    started = time.time()  # the telemetry before this moment is the trouble the change met
    try:
        applied = ctx.actuator.apply(plan["action"], plan["service"], plan["params"])
    except Exception as exc:  # the system refused or failed: that is an outcome, not a crash
        why = f"{type(exc).__name__}: {exc}".splitlines()[0]
        incident.remediation["outcome"] = FAILED
        incident.audit.append({"ts": time.time(), "step": "failed", "error": why, **plan})
        ctx.log.save(incident)
        ctx.say("fixer", state, f"{plan['action']} {plan['service']} failed ({why}); escalating")
        return {"plan": {}}
    applied["ts"] = time.time()
    applied["started"] = started
    if applied.get("planned"):
        # GitOps: the change is a proposal for a person or a pipeline to apply;
        # nothing changed yet, so there is nothing to verify here.
        incident.remediation["outcome"] = PROPOSED
        incident.audit.append({"ts": applied["ts"], "step": "proposed", **plan, "result": applied})
        ctx.log.save(incident)
        ctx.say("fixer", state, f"proposal written: {applied.get('file')}; escalating to apply it")
        return {"plan": {}}
    incident.audit.append({"ts": applied["ts"], "step": "applied", **plan, "result": applied})
    ctx.log.save(incident)
    return {"plan": plan, "applied": applied}


def verify(ctx: SquadContext, state: SquadState) -> SquadState:
    """Wait for fresh telemetry from the diagnosed service; judge it against the SLO."""
    incident = ctx.incident(state)
    diagnosis = state["diagnosis"]
    service, operation = diagnosis["service"], diagnosis["operation"]
    acted_on = state["plan"].get("service")
    if acted_on and acted_on != service:
        # The fix was on another service (a caller's circuit breaker): the root
        # cause may see no traffic now; the caller's requests say whether it helped.
        service, operation = acted_on, None
    settings = ctx.settings
    since_ns = int((state["applied"]["ts"] + 1.0) * 1e9)

    def measured(s: Span) -> bool:
        return (
            s.service == service
            and (operation is None or s.name == operation)
            and s.kind == SpanKind.SERVER
        )

    def fresh() -> list[Span]:
        return ctx.store.spans_since(since_ns, measured)

    before = slo(
        [
            s
            for s in ctx.store.spans_since(state["window_start_ns"])
            if measured(s) and s.start_ns < since_ns
        ],
        settings.latency_threshold_ms,
    )
    deadline = time.time() + settings.verify_timeout_s
    after = slo([], settings.latency_threshold_ms)
    recovered = False
    while time.time() < deadline:
        spans = fresh()
        window_ns = int(settings.verify_window_s * 1e9)
        if spans and max(s.start_ns for s in spans) - since_ns >= window_ns:
            after = slo(spans, settings.latency_threshold_ms)
            if after["requests"] >= settings.min_requests:
                recovered = _within_slo(settings, after)
                if recovered:
                    break
                # Keep only the newest window: recovery may take a moment to show.
                since_ns = max(s.start_ns for s in spans) - window_ns
        time.sleep(0.25)
    verification: dict[str, Any] = {"recovered": recovered, "before": before, "after": after}
    doubts = _doubts(ctx, state, incident, measured, time.time()) if recovered else []
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
        try:
            ctx.actuator.undo(plan["action"], plan["service"], state["applied"])
        except Exception as exc:  # still escalate, and say the undo did not happen
            why = f"{type(exc).__name__}: {exc}".splitlines()[0]
            incident.remediation["outcome"] = FAILED
            incident.audit.append({"ts": time.time(), "step": "undo-failed", "error": why, **plan})
            ctx.say(
                "fixer",
                state,
                f"not recovered within {settings.verify_timeout_s:.0f} s and the undo failed "
                f"({why}); escalating: {plan['action']} {plan['service']} is still applied",
                verification=verification,
            )
        else:
            incident.remediation["outcome"] = UNDONE
            incident.audit.append({"ts": time.time(), "step": "undone", **plan})
            ctx.say(
                "fixer",
                state,
                f"not recovered within {settings.verify_timeout_s:.0f} s "
                f"(error rate {after['error_rate']:.0%}); action undone, escalating",
                verification=verification,
            )
    ctx.log.save(incident)
    return {"verification": verification, "outcome": incident.remediation["outcome"]}


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
    and no other incident changed the same service or this incident's cause
    while the outcome was open.
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
    return doubts


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


def jules(ctx: SquadContext, state: SquadState, entry_factory: Any) -> SquadState:
    incident = ctx.incident(state)
    diagnosis = state.get("diagnosis") or {}
    if not diagnosis or not state.get("applied"):
        # Nothing was applied (no diagnosis, no safe action, or dry-run): a human takes over.
        incident.status = "escalated"
        ctx.log.save(incident)
        ctx.say("jules", state, f"nothing to archive; incident is {incident.status}")
        return {}
    if incident.remediation.get("outcome") == UNCLEAR:
        # Memory keeps verified outcomes: an unclear one would teach a fix that may
        # have done nothing (or, as a failure, forbid one that may have worked).
        ctx.say(
            "jules",
            state,
            f"not archived: the recovery is not credited to {incident.remediation['action']} "
            f"{incident.remediation.get('service')} (outcome unclear); nothing learnt",
        )
    else:
        entry = entry_factory(incident, state)
        ctx.memory.archive(entry)
        ctx.say(
            "jules",
            state,
            f"archived {incident.id} to memory: {incident.remediation['action']} -> "
            f"{incident.remediation['outcome']}",
        )
    window_s = state["applied"]["ts"] + 1.0 - state["window_start_ns"] / 1e9
    try:
        config = ctx.actuator.config(diagnosis["service"])
    except Exception:  # advice is optional; an unreachable lab must not lose the archive
        config = {}
    proposal = hardening.propose(dict(state), config, incident.remediation["outcome"], window_s)
    if proposal:
        incident.hardening.append(proposal)
        ctx.log.save(incident)
        ctx.say(
            "jules",
            state,
            f"hardening proposal: {proposal['title']} ({'; '.join(proposal['why'])}): "
            + ", ".join(f"{c['key']} -> {c['to']}" for c in proposal["changes"]),
            proposal=proposal,
        )
    return {}
