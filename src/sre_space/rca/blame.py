"""Evidence against one service, from one call: who a failure, a wait or a change of course blames.

A call's error, its slowness or an unusual step in its sequence of calls is
evidence; these functions say against whom (see ``docs/rca.md`` §3). A failed
call out that its callee never answered blames the callee. The gap of a slow
call out is split between caller and callee by which explanation the other
edges support (:func:`callee_shares`). A caller that changed course right
after a call out shares the blame with the callee whose answer it had read.
"""

from __future__ import annotations

from typing import NamedTuple

from sre_space.rca.classify import CALLEE_CLASSES, classify_span
from sre_space.rca.reference import Reference
from sre_space.rca.traces import ERROR_DISPATCH, START, Call, OpKey, Step, peer_of
from sre_space.telemetry.model import Span

# A caller that changes course right after a call out: the share of the blame
# that goes to the callee whose answer it had just read.
AFTER_CALL_CALLEE_SHARE = 2 / 3


class Blame(NamedTuple):
    """One piece of evidence in one trace, against one service."""

    service: str
    operation: str  # the service's request (entry operation) it concerns
    kind: str  # error | latency | structure
    fault_class: str
    weight: float
    source: OpKey  # the operation whose statistics produced it
    message: str = ""
    step: Step | None = None  # for structure: the unusual step


def _message(span: Span) -> str:
    status = span.http_status
    return span.exception_message or (f"HTTP {status}" if status else span.status_message)


def callee_of(call: Call, ref: Reference | None) -> tuple[str, str] | None:
    """Who answers this call out: its child span's service, its attributes, or the reference."""
    if call.callee is not None and call.callee_op is not None:
        return call.callee, call.callee_op
    known = ref.answered_by(call.key, call) if ref else None
    service = call.span.attributes.get("peer.service")
    if service:  # named by the caller's instrumentation
        return str(service), known[1] if known and known[0] == service else call.span.name
    if known is not None:  # who answered at that address, or that call, before
        return known
    peer = peer_of(call.span)
    return (peer, call.span.name) if peer else None


def _traced(call: Call, ref: Reference | None) -> bool:
    """Whether the callee of a call out is a service we know, not just an address."""
    if call.span.attributes.get("peer.service"):
        return True
    return ref is not None and ref.answered_by(call.key, call) is not None


def _no_answer(call: Call, ref: Reference | None) -> str:
    """A call out that failed without a reply and says nothing of why: how long it waited tells.

    Refused or reset connections fail at once; a callee that took the call and
    went quiet keeps its caller waiting, longer than its slowest tenth of calls.
    """
    st = ref.known(call.key) if ref is not None else None
    if st is not None and call.self_ms > st.high_ms:
        return "timeout"
    return "unreachable"


def blame_error(call: Call, ref: Reference | None, weight: float) -> Blame:
    message = _message(call.span)
    fault = classify_span(call.span) or "error"
    # A call out by its kind or its child, or one that called out in the
    # reference (without span kinds, a call whose callee never answered has no
    # child to tell it from local work).
    if call.exit or (ref is not None and ref.answered_by(call.key) is not None):
        callee = callee_of(call, ref)
        untraced = callee is not None and call.callee is None and not _traced(call, ref)
        if untraced and fault == "saturation":
            # The caller's own pool or queue to a dependency that sends no spans
            # (a database) ran dry before the call left: the pool is the
            # caller's, and so are the evidence and the knob.
            return Blame(call.service, call.entry_op, "error", fault, weight, call.key, message)
        if callee is not None and call.callee is None:
            # No span of the callee's own: it is the suspect. An HTTP status on the
            # call is its answer (the conventions set it only from a response), so
            # its span was lost, not the call: a process out of memory fails its
            # exporter too. Otherwise it never answered: unreachable unless the
            # failure says it took the call and went quiet. (A gRPC status proves
            # nothing: the client library sets UNAVAILABLE itself.)
            answered = call.span.http_status is not None
            no_answer = (
                fault
                if answered or fault in CALLEE_CLASSES or fault == "saturation"
                else _no_answer(call, ref)
            )
            return Blame(callee[0], callee[1], "error", no_answer, weight, call.key, message)
        if callee is not None:
            # The callee answered without failing; the call failed between them
            # (a deadline, the network): the callee's answer did not come in time.
            return Blame(callee[0], callee[1], "error", fault, weight, call.key, message)
    return Blame(call.service, call.entry_op, "error", fault, weight, call.key, message)


def blame_latency(
    call: Call, ref: Reference | None, weight: float, callee_share: float
) -> list[Blame]:
    if not call.exit:
        return [Blame(call.service, call.entry_op, "latency", "latency", weight, call.key)]
    callee = callee_of(call, ref)
    if callee is None:
        return [Blame(call.service, call.entry_op, "latency", "latency", weight, call.key)]
    return [
        Blame(
            call.service, call.entry_op, "latency", "latency", weight * (1 - callee_share), call.key
        ),
        Blame(callee[0], callee[1], "latency", "latency", weight * callee_share, call.key),
    ]


def blame_step(call: Call, step: Step, ref: Reference, weight: float) -> list[Blame]:
    """An unusual step in a call's sequence of child calls (see the module docstring)."""
    own = Blame(call.service, call.entry_op, "structure", "error", weight, call.step_key, step=step)
    answer = ref.answered_by(call.key, call)
    if answer is not None and call.callee is None and answer in ref.typical_children(call.key):
        # A call out whose callee's span is gone: the callee never answered.
        return [
            Blame(
                answer[0],
                answer[1],
                "structure",
                _no_answer(call, ref),
                weight,
                call.step_key,
                step=step,
            )
        ]
    prev = step[0]
    if prev == START:
        return [own]  # its first move changed: its own decision
    answer = prev if prev[0] != call.service else ref.answered_by(prev)
    if answer is None:
        return [own]
    # After a call out it did something unusual (stopped short, skipped, called
    # elsewhere). Most often that answer made it (an error we cannot see
    # propagates up, like one we can); sometimes it went wrong on its own just
    # after. Both are suspects, the callee more. A callee after which several
    # callers change course collects a share from each.
    return [
        own._replace(weight=weight * (1 - AFTER_CALL_CALLEE_SHARE)),
        Blame(
            answer[0],
            answer[1],
            "structure",
            "error",
            weight * AFTER_CALL_CALLEE_SHARE,
            call.step_key,
            step=step,
        ),
    ]


def blame_after_answer(blame: Blame, failure: Call, calls: list[Call]) -> list[Blame]:
    """A failure that says nothing of why, right after an answer: the answer shares the blame.

    A framework's error dispatch (no status, no message) only says the request
    failed. When the service's last call out before it was answered, that
    answer most often made it fail (an error or a wrong value we cannot see
    propagates up, like one we can), as with a change of course after a call
    (:func:`blame_step`): the callee takes ``AFTER_CALL_CALLEE_SHARE``. A
    failure with its own account (a status, an exception) keeps all of it.
    """
    if failure.span.name not in ERROR_DISPATCH or _message(failure.span):
        return [blame]
    before = [
        c
        for c in calls
        if c.visit == failure.visit
        and c.callee is not None
        and c.callee_op is not None
        and c.callee != failure.service
        and c.span.end_ns <= failure.span.start_ns
    ]
    if not before:
        return [blame]
    last = max(before, key=lambda c: c.span.end_ns)
    assert last.callee is not None and last.callee_op is not None
    return [
        blame._replace(weight=blame.weight * (1 - AFTER_CALL_CALLEE_SHARE)),
        blame._replace(
            service=last.callee,
            operation=last.callee_op,
            weight=blame.weight * AFTER_CALL_CALLEE_SHARE,
        ),
    ]
