"""The Fixer: the plan for the diagnosis (from memory, else the runbook), the
policy's word on it, a person's approval when asked, and the change applied or
written down as a proposal.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from langgraph.types import interrupt

from sre_space import logs
from sre_space.actuators.targets import generic_proposal
from sre_space.incidents import Incident
from sre_space.rca.localize import LIVE_LOOKBACK_S
from sre_space.squad import releases, runbook
from sre_space.squad.context import MAX_LOOKS, PLAN_KEYS, RELOOK_S, SquadContext
from sre_space.squad.state import SquadState
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
    Outcome,
)


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
