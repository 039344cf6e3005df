"""The Brain: the root cause of the incident, from the recent traces, and what memory recalls."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from sre_space.rca.candidate import Candidate, confidence_words, signature
from sre_space.rca.localize import live_window, localize
from sre_space.squad.context import RELOOK_S, SquadContext
from sre_space.squad.state import SquadState
from sre_space.telemetry.model import Span, SpanKind
from sre_space.vocabulary import describe

BRAIN_DETAILED = 3  # candidates kept with their evidence in the incident; the rest in brief
FAILURES = frozenset({"error"})  # the evidence that ranks when failures are all Scout saw


def brain(ctx: SquadContext, state: SquadState) -> SquadState:
    if state.get("relook"):
        ctx.clock.sleep(RELOOK_S)  # the squad loop waits too: this incident is still open
    incident = ctx.incident(state)
    # From a while before the window: the change point inside shows where the
    # trouble began, and what came before it is the reference for normal.
    traces = live_window(ctx.store.traces_since, state["window_start_ns"])
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


def reread_class(ctx: SquadContext, state: SquadState) -> SquadState:
    """The class read again once a change was made, on every request started before it.

    Callers that gave up on a service: hung, or alive and starved of CPU? The
    rule (``rca/rank.py``) asks whether the service's own work got slower,
    and on the first look it may have finished nothing of its own since the
    onset: a starved process takes longer than its callers wait, so its first
    slow requests end seconds after theirs. By the time the change is made
    they have ended, and the same ranking over the requests started before
    it can say so. Only ``timeout`` is read again (the one class whose rival
    needs the service's own finished work), and only the diagnosed service's
    class changes: the service was acted on, and stays the answer.
    """
    diagnosis = dict(state.get("diagnosis") or {})
    applied = state.get("applied") or {}
    if diagnosis.get("fault_class") != "timeout" or not applied:
        return {}
    service = diagnosis["service"]
    incident = ctx.incident(state)
    if any(a.get("step") == "reclassified" for a in incident.audit):
        # Read again before this mind (or the one it took over from) restarted:
        # its store may hold none of those requests now; the incident says.
        cls = str(incident.root_cause.get("fault_class") or "cpu")
        diagnosis.update(fault_class=cls, description=describe(cls), signature=incident.signature)
        return {"diagnosis": diagnosis}
    change_ns = int(float(applied.get("started", applied["ts"])) * 1e9)
    window = live_window(ctx.store.traces_since, state["window_start_ns"])
    before = [kept for t in window if (kept := [s for s in t if s.start_ns < change_ns])]
    again = next(
        (c for c in _own_candidates(ctx, state, before, incident.first_error_at)
         if c.service == service),
        None,
    )  # fmt: skip
    if again is None or again.fault_class != "cpu":
        return {}
    # The first look's operation and exception stay: only the class was in doubt.
    sig = signature(
        service, str(diagnosis["operation"]), "cpu", str(diagnosis.get("exception", ""))
    )
    diagnosis.update(fault_class="cpu", description=describe("cpu"), signature=sig)
    incident.root_cause["fault_class"] = "cpu"
    incident.signature = sig
    incident.audit.append(
        {"ts": time.time(), "step": "reclassified", "from": "timeout", "to": "cpu"}
    )
    ctx.log.save(incident)
    ctx.say(
        "brain",
        state,
        f"{service} is cpu, not timeout: its requests started before the change were "
        "slower at its own work, once they had ended (the first look saw none end)",
        diagnosis=diagnosis,
    )
    return {"diagnosis": diagnosis}


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
    candidates = failures_first(traces, threshold, onset_ns, state.get("signals") or ())
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


def failures_first(
    traces: list[list[Span]],
    threshold: float,
    onset_ns: int | None,
    signals: Iterable[Mapping[str, Any]],
) -> list[Candidate]:
    """The ranking; on the failures alone when failures are all that Scout saw.

    When Scout opened the incident on failed requests alone, the question is
    which service the failures come from. A service slower at its own work
    (a busy host, a caller's retries, error handling) or a reshaped call is
    something else than what people see, and, counted with the failures, it
    made a clear new exception a coin toss. So the services are ordered, and
    the confidence made, by the failures' evidence only (``focus``); each
    one's fault class still reads all of its evidence (a CPU-starved service
    is found by its callers' timeouts and named by its slower work). When
    no failure stands out there, the whole ranking stands. Offline
    (``analyze``) there is no Scout, and every kind of evidence ranks.
    """
    only_failures = {str(s.get("kind")) for s in signals} == {"error"}
    return localize(traces, threshold, onset_ns=onset_ns, focus=FAILURES if only_failures else None)


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
