"""Rank services by how much of a window's trouble each one explains.

The window's traces are judged against a *reference*: earlier traces of the
same system (given, or the part of the window before its change point). Three
kinds of evidence, each counted only where it is significantly more frequent
than in the reference (:func:`~sre_space.rca.stats.excess_weight`), and then
with the weight of how much more:

- **errors**, at the span where they originate (failed, no failed child). A
  failed call out that its callee never answered blames the callee.
- **latency**, at the hop that added it: a call whose *self time* exceeds its
  operation's robust baseline (median + k MAD) by a visible share of its
  trace's end-to-end time. Local work blames its own service. The gap of a
  call out (time the callee's span does not cover: network, the callee's
  queue, or the caller's own scheduling) is split between caller and callee
  by which explanation the other edges support: a caller whose calls to
  every callee grew is the suspect (its CPU); a callee that all its callers
  wait on is (its network or queue).
- **structure**, in the sequence of calls each operation makes: an unusual
  first call, next call or stop (calls that vanished, appeared, or changed
  order). The caller decided what to call next, so it is blamed; but when it
  changed course right after a call out, the callee whose answer it had just
  read shares the blame, and takes most of it (an error we cannot see
  propagates up like one we can). A call out whose callee's span is gone
  blames the callee: it never answered.

Each trace gives each service the strongest weight it earned there; errors
count double a slow or reshaped call. Services are ranked by the Ochiai
coefficient of those weighted traces: high when a service is at fault in
many of the traces in trouble *and* in few of the traces it takes part in
without trouble, so neither a service in every trace nor one in a handful
wins by its size alone. Without any reference, static rules stand in: error
origins, and in traces slower than the latency threshold, the span that added
the most time of its own.

Latency also counts where an operation *shifted*: far more of its calls above
the reference's 90th percentile than a tenth; and where a request's own time
in a service (its spans' self time, calls out excluded) rose, by rank, on as
few as three visits. The naive ranking (growth of an
operation's p90 self time) joins as a weak voice that orders what the
evidence leaves level. Every service that took part is ranked, each with a
confidence; docs/rca.md explains the model and its constants.
"""

from __future__ import annotations

import gc
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any, NamedTuple

from sre_space.config import LATENCY_MS
from sre_space.rca.candidate import Candidate, calibrate
from sre_space.rca.changepoint import change_point
from sre_space.rca.classify import CALLEE_CLASSES, classify_span
from sre_space.rca.own_time import OwnShift, own_shifts
from sre_space.rca.reference import HIGH_QUANTILE, MIN_SAMPLES, TRACE_SHARE, Reference
from sre_space.rca.stats import excess_weight, median, median_low, quantile
from sre_space.rca.traces import (
    END,
    START,
    Call,
    OpKey,
    Step,
    TraceView,
    own_times,
    peer_of,
    views,
)
from sre_space.safe_text import message_template
from sre_space.telemetry.model import Span

# A failed request is stronger evidence than a slow or reshaped one: when a
# fault shows both (a saturated pool makes requests queue, then time out), the
# place where the failures originate outranks the place where time was spent.
KIND_WEIGHT = {"error": 1.0, "latency": 0.5, "structure": 0.5}
MIN_SCORE = 0.001  # below this weighted share of the window's traces, a service is noise
MIN_REFERENCE_TRACES = 20
# How far before its detection window the live Brain reads the store: enough
# normal traffic before the onset to learn from, little enough that an older
# incident is not in it.
LIVE_LOOKBACK_S = 60.0
MAX_REFERENCE_TRACES = 4000  # the most recent; more costs time and says little more
# A caller that changes course right after a call out: the share of the blame
# that goes to the callee whose answer it had just read.
AFTER_CALL_CALLEE_SHARE = 2 / 3
EXEMPLARS = 3
# Growth of an operation's p90 self time, the naive ranking, as weak evidence:
# it cannot tell a cause from its effect, so it orders the services the other
# evidence leaves level, and tips a close call, but does not outvote it.
GROWTH_WEIGHT = 0.1
# Own work slower in at least this share of a service's operations (and at
# least this many): the whole process is slower, its CPU, not one piece of work.
CPU_SHARE = 0.5
CPU_MIN_OPERATIONS = 3
ERROR_CLASS_SHARE = 0.1  # errors name the fault class once they are this share of the evidence
# The change point is looked for no earlier than this before the detector's
# onset (see localize): a slowly building fault can take the detector a window
# or two past its start; a change half a minute older is another fault.
ONSET_SLACK_S = 30.0


class _Blame(NamedTuple):
    """One piece of evidence in one trace, against one service."""

    service: str
    operation: str  # the service's request (entry operation) it concerns
    kind: str  # error | latency | structure
    fault_class: str
    weight: float
    source: OpKey  # the operation whose statistics produced it
    message: str = ""
    step: Step | None = None  # for structure: the unusual step


def _heaviest(weights: dict[Any, float]) -> Any:
    return max(weights.items(), key=lambda kv: kv[1])[0]


@dataclass
class _Finding:
    weight: float = 0.0
    fault_classes: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    sources: dict[tuple[OpKey, Step | None], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    messages: Counter[str] = field(default_factory=Counter)  # by template
    originals: dict[str, str] = field(default_factory=dict)  # template -> a message as it came

    def heaviest_source(self) -> tuple[OpKey, Step | None]:
        return max(self.sources.items(), key=lambda kv: kv[1])[0]


@dataclass
class _Suspect:
    score: float = 0.0  # sum over traces of the strongest weighted blame
    ochiai: float = 0.0
    traces: dict[str, float] = field(default_factory=dict)
    findings: dict[tuple[str, str], _Finding] = field(default_factory=lambda: defaultdict(_Finding))


@dataclass
class _WindowStats:
    """The window's own rates, per operation, for the evidence details."""

    calls: Counter[OpKey] = field(default_factory=Counter)
    slow: Counter[OpKey] = field(default_factory=Counter)
    errors: Counter[OpKey] = field(default_factory=Counter)
    above: Counter[OpKey] = field(default_factory=Counter)  # self time above the reference's p90
    self_ms: dict[OpKey, list[float]] = field(default_factory=lambda: defaultdict(list))
    steps: dict[OpKey, Counter[Step]] = field(default_factory=lambda: defaultdict(Counter))
    step_from: dict[OpKey, Counter[OpKey]] = field(default_factory=lambda: defaultdict(Counter))
    callee: dict[OpKey, str] = field(default_factory=dict)
    # per service: the classes its own failures show, however few (see _fault_class)
    failure_classes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # calls out above the p90 that no traced service answered: a wait on someone unseen
    above_unanswered: Counter[OpKey] = field(default_factory=Counter)
    involved: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


def _message(span: Span) -> str:
    status = span.http_status
    return span.exception_message or (f"HTTP {status}" if status else span.status_message)


def _callee(call: Call, ref: Reference | None) -> tuple[str, str] | None:
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
    st = ref.ops.get(call.key) if ref is not None else None
    if st is not None and st.n >= MIN_SAMPLES and call.self_ms > st.high_ms:
        return "timeout"
    return "unreachable"


def _blame_error(call: Call, ref: Reference | None, weight: float) -> _Blame:
    message = _message(call.span)
    fault = classify_span(call.span) or "error"
    # A call out by its kind or its child, or one that called out in the
    # reference (without span kinds, a call whose callee never answered has no
    # child to tell it from local work).
    if call.exit or (ref is not None and ref.answered_by(call.key) is not None):
        callee = _callee(call, ref)
        untraced = callee is not None and call.callee is None and not _traced(call, ref)
        if untraced and fault == "saturation":
            # The caller's own pool or queue to a dependency that sends no spans
            # (a database) ran dry before the call left: the pool is the
            # caller's, and so are the evidence and the knob.
            return _Blame(call.service, call.entry_op, "error", fault, weight, call.key, message)
        if callee is not None and call.callee is None:
            # The callee never answered (no span of its own): it is the suspect,
            # unreachable unless the failure says it took the call and went quiet.
            no_answer = (
                fault if fault in CALLEE_CLASSES or fault == "saturation" else _no_answer(call, ref)
            )
            return _Blame(callee[0], callee[1], "error", no_answer, weight, call.key, message)
        if callee is not None:
            # The callee answered without failing; the call failed between them
            # (a deadline, the network): the callee's answer did not come in time.
            return _Blame(callee[0], callee[1], "error", fault, weight, call.key, message)
    return _Blame(call.service, call.entry_op, "error", fault, weight, call.key, message)


def _blame_latency(
    call: Call, ref: Reference | None, weight: float, callee_share: float
) -> list[_Blame]:
    if not call.exit:
        return [_Blame(call.service, call.entry_op, "latency", "latency", weight, call.key)]
    callee = _callee(call, ref)
    if callee is None:
        return [_Blame(call.service, call.entry_op, "latency", "latency", weight, call.key)]
    return [
        _Blame(
            call.service, call.entry_op, "latency", "latency", weight * (1 - callee_share), call.key
        ),
        _Blame(callee[0], callee[1], "latency", "latency", weight * callee_share, call.key),
    ]


def _blame_step(call: Call, step: Step, ref: Reference, weight: float) -> list[_Blame]:
    """An unusual step in a call's sequence of child calls (see the module docstring)."""
    own = _Blame(
        call.service, call.entry_op, "structure", "error", weight, call.step_key, step=step
    )
    answer = ref.answered_by(call.key, call)
    if answer is not None and call.callee is None and answer in ref.typical_children(call.key):
        # A call out whose callee's span is gone: the callee never answered.
        return [
            _Blame(
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
        _Blame(
            answer[0],
            answer[1],
            "structure",
            "error",
            weight * AFTER_CALL_CALLEE_SHARE,
            call.step_key,
            step=step,
        ),
    ]


def _callee_shares(
    stats: _WindowStats,
    ref: Reference,
    hits_of: Counter[OpKey],
    ref_counts: Callable[[OpKey], tuple[int, int]],
) -> dict[tuple[str, str], float]:
    """For each (caller, callee) edge, the share of its grown gap that is the callee's.

    A fault in the caller (its CPU, its pauses) delays its calls to every
    callee; a fault in the callee (its network, its queue) delays the calls of
    every caller. Each side's case is how much of the excess slow-call rate
    over all its edges one fault there would explain, counted robustly: the
    low median of its edges' excess (at least half of them must agree) times
    their number. A caller whose calls to every callee slowed explains them
    all; a caller with one slow callee out of two explains nothing the callee
    does not.
    """
    edge_hits: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for key, n in stats.calls.items():
        answer = ref.answered_by(key)
        callee = answer[0] if answer else stats.callee.get(key)
        if callee is None:
            continue
        acc = edge_hits[(key[0], callee)]
        acc[0] += hits_of[key]
        acc[1] += n
        ref_slow, ref_calls = ref_counts(key)
        acc[2] += ref_slow
        acc[3] += ref_calls
    excess: dict[tuple[str, str], float] = {}
    for edge, (hits, calls, ref_hits, ref_n) in edge_hits.items():
        rate = hits / calls if calls else 0.0
        ref_rate = ref_hits / ref_n if ref_n else 0.0
        excess[edge] = max(0.0, rate - ref_rate)
    by_caller: dict[str, list[float]] = defaultdict(list)
    by_callee: dict[str, list[float]] = defaultdict(list)
    for (caller, callee), value in excess.items():
        by_caller[caller].append(value)
        by_callee[callee].append(value)
    shares: dict[tuple[str, str], float] = {}
    for caller, callee in excess:
        c = median_low(by_caller[caller]) * len(by_caller[caller])
        d = median_low(by_callee[callee]) * len(by_callee[callee])
        shares[(caller, callee)] = d / (c + d) if c + d > 0 else 0.5
    return shares


SLOW, ABOVE = 2, 1  # a call slow by the latency rule; one only above its reference's p90


def _window_stats(
    window: list[TraceView], ref: Reference | None
) -> tuple[_WindowStats, list[list[int]]]:
    stats = _WindowStats()
    slow_flags: list[list[int]] = []
    sequences: dict[tuple[OpKey, tuple[OpKey, ...]], int] = {}
    ops = ref.ops if ref is not None else {}
    for v in window:
        flags = []
        for service in {c.key[0] for c in v.calls}:
            stats.involved[service].add(v.trace_id)
        for c in v.calls:
            slow = ref.is_slow(c, v.root_ms) if ref is not None else False
            st = ops.get(c.key)
            above = st is not None and st.n >= MIN_SAMPLES and c.self_ms > st.high_ms
            flags.append(SLOW if slow else ABOVE if above else 0)
            stats.calls[c.key] += 1
            stats.slow[c.key] += slow
            stats.above[c.key] += above
            stats.errors[c.key] += c.error_origin
            if c.error_origin:
                stats.failure_classes[c.key[0]][classify_span(c.span) or "error"] += 1
            stats.self_ms[c.key].append(c.self_ms)
            if v.complete:
                ks = (c.step_key, c.sequence)
                sequences[ks] = sequences.get(ks, 0) + 1
            if c.callee is not None:
                stats.callee.setdefault(c.key, c.callee)
            elif c.exit:
                stats.above_unanswered[c.key] += above
        slow_flags.append(flags)
    for (key, seq), m in sequences.items():  # steps, from the few distinct sequences
        steps, step_from = stats.steps[key], stats.step_from[key]
        for step in pairwise((START, *seq, END)):
            steps[step] += m
            step_from[step[0]] += m
    return stats, slow_flags


@dataclass
class _Judgement:
    blamed: list[tuple[str, list[_Blame]]]
    stats: _WindowStats
    ref: Reference | None = None
    own: dict[OpKey, OwnShift] = field(default_factory=dict)
    w_step: dict[tuple[OpKey, Step], float] = field(default_factory=dict)
    # per service: its operations the reference knows, and those whose own time grew
    known: dict[str, int] = field(default_factory=dict)
    shifted: dict[str, set[str]] = field(default_factory=dict)


def _judge(window: list[TraceView], ref: Reference) -> _Judgement:
    stats, slow_flags = _window_stats(window, ref)
    w_slow = {
        k: excess_weight(hits, stats.calls[k], *ref.slow.get(k, (0, 0)))
        for k, hits in stats.slow.items()
        if hits
    }
    w_err = {
        k: excess_weight(hits, stats.calls[k], *ref.errors.get(k, (0, 0)))
        for k, hits in stats.errors.items()
        if hits
    }
    w_step: dict[tuple[OpKey, Step], float] = {}
    for key, steps in stats.steps.items():
        if ref.step_from[(key, START)] == 0:
            continue  # an operation the reference never saw: judged where it was called
        step_from = stats.step_from[key]
        for step, hits in steps.items():
            if ref.step_from[(key, step[0])] < MIN_SAMPLES:
                continue  # after a call the reference rarely saw: that call is the news
            w = excess_weight(hits, step_from[step[0]], *ref.step_counts(key, step))
            if w > 0:
                w_step[(key, step)] = w
    # Shifted operations: far more of their calls in the reference's slowest
    # tenth than a tenth (a CPU-starved service is a little slower at every
    # call, rarely slow enough for the rule above).
    w_shift = {
        k: excess_weight(hits, stats.calls[k], ref.ops[k].above, ref.ops[k].n)
        for k, hits in stats.above.items()
        if hits
    }
    unusual = {key for key, _ in w_step}
    shares = _callee_shares(stats, ref, stats.slow, lambda k: ref.slow.get(k, (0, 0)))
    shift_shares = _callee_shares(
        stats,
        ref,
        stats.above,
        lambda k: (ref.ops[k].above, ref.ops[k].n) if k in ref.ops else (0, 0),
    )
    visits = [own_times(v, ref.calls_out) for v in window]
    own = own_shifts(visits, ref)
    blamed: list[tuple[str, list[_Blame]]] = []
    for v, flags, in_trace in zip(window, slow_flags, visits, strict=True):
        blames: list[_Blame] = []
        for key, own_ms in in_trace if own else ():
            shift = own.get(key)
            if shift is not None and own_ms > shift.high_ms:
                # this visit's own work, slower than it was: its service's, weighed
                # like a shifted call by how much of its trace the shift is (the
                # shift's, not this visit's: one visit's excess is mostly noise)
                size = (shift.p50_ms - shift.baseline_p50_ms) / max(TRACE_SHARE * v.root_ms, 1e-3)
                w = shift.weight * min(1.0, size)
                blames.append(_Blame(key[0], key[1], "latency", "latency", w, key))
        deeper = any(c.error_origin and c.service in v.in_flight for c in v.calls)
        for c, flag in zip(v.calls, flags, strict=True):
            if c.error_origin and w_err.get(c.key, 0.0) > 0:
                blame = _blame_error(c, ref, w_err[c.key])
                if deeper and c.callee is None and blame.service in v.in_flight:
                    # The callee took the call and is still in it (its spans
                    # below are here), waiting on a failure of its own: that
                    # failure, blamed where it originates, is the account.
                    continue
                blames.append(blame)
            if flag == SLOW and w_slow.get(c.key, 0.0) > 0:
                callee = _callee(c, ref) if c.exit else None
                share = shares.get((c.service, callee[0]), 0.5) if callee else 0.0
                blames.extend(_blame_latency(c, ref, w_slow[c.key], share))
            elif flag and w_shift.get(c.key, 0.0) > 0:
                # weighed by how much of its trace the shift is: drift of a
                # millisecond is real but explains little
                st = ref.ops[c.key]
                size = (c.self_ms - st.median_ms) / max(TRACE_SHARE * v.root_ms, 1e-3)
                w = w_shift[c.key] * min(1.0, size)
                callee = _callee(c, ref) if c.exit else None
                share = shift_shares.get((c.service, callee[0]), 0.5) if callee else 0.0
                blames.extend(_blame_latency(c, ref, w, share))
            if v.complete and (sk := c.step_key) in unusual:
                for step in c.steps():
                    w = w_step.get((sk, step), 0.0)
                    if w > 0:
                        blames.extend(_blame_step(c, step, ref, w))
        if blames:
            blamed.append((v.trace_id, blames))
    known: Counter[str] = Counter()
    shifted: dict[str, set[str]] = defaultdict(set)
    for key in stats.calls:
        known_op = ref.ops.get(key)
        if known_op is None or known_op.n < MIN_SAMPLES:
            continue
        known[key[0]] += 1
        if w_slow.get(key, 0.0) > 0 or w_shift.get(key, 0.0) > 0:
            shifted[key[0]].add(key[1])
    for key in own:
        shifted[key[0]].add(key[1])
    return _Judgement(blamed, stats, ref, own, w_step, dict(known), dict(shifted))


def _judge_static(window: list[TraceView], threshold_ms: float) -> _Judgement:
    """No reference: error origins, and in slow traces the span that added the most time."""
    stats, _ = _window_stats(window, None)
    blamed: list[tuple[str, list[_Blame]]] = []
    for v in window:
        origins = [c for c in v.calls if c.error_origin]
        blames = [_blame_error(c, None, 1.0) for c in origins]
        if not origins and v.root_ms > threshold_ms and v.calls:
            worst = max(v.calls, key=lambda c: c.self_ms)
            stats.slow[worst.key] += 1
            share = 1.0 if worst.exit else 0.0
            blames.extend(b for b in _blame_latency(worst, None, 1.0, share) if b.weight > 0)
        if blames:
            blamed.append((v.trace_id, blames))
    return _Judgement(blamed, stats)


def _step_name(key: OpKey) -> str:
    return {START: "start", END: "end"}.get(key, f"{key[0]} {key[1]}")


def _rate(hits: int, n: int) -> float:
    return round(hits / n, 4) if n else 0.0


def _signal(kind: str, origin: tuple[OpKey, Step | None], j: _Judgement) -> dict[str, Any]:
    """What the statistics of one operation show, for the evidence."""
    source, step = origin
    st, ref = j.stats, j.ref
    # a structural finding's source is the operation as one caller uses it (step_key)
    n = st.calls[source] or st.step_from[source][START]
    doc: dict[str, Any] = {
        "kind": kind,
        "span": {"service": source[0], "name": source[1]},
        "calls": n,
    }
    if kind == "error":
        doc["errors"] = st.errors[source]
        doc["error_rate"] = _rate(st.errors[source], n)
        if ref is not None:
            doc["baseline_error_rate"] = _rate(*ref.errors.get(source, (0, 0)))
    elif kind == "latency" and source in j.own:
        shift = j.own[source]
        # the request's own time in its service, whatever spans it is spread over
        doc["self_time_p50_ms"] = round(shift.p50_ms, 2)
        doc["baseline_self_time_p50_ms"] = round(shift.baseline_p50_ms, 2)
        doc["own_time"] = {
            "visits": shift.visits,
            "p50_ms": round(shift.p50_ms, 2),
            "baseline_visits": shift.baseline_visits,
            "baseline_p50_ms": round(shift.baseline_p50_ms, 2),
            "z": round(shift.z, 2),
        }
        doc["hop"] = "own work"
    elif kind == "latency":
        doc["slow_calls"] = st.slow[source]
        doc["self_time_p50_ms"] = round(median(st.self_ms[source]), 2)
        doc["self_time_max_ms"] = round(max(st.self_ms[source], default=0.0), 1)
        stats = ref.ops.get(source) if ref is not None else None
        if ref is not None and stats is not None:
            doc["slow_rate"] = _rate(st.slow[source], n)
            doc["baseline_slow_rate"] = _rate(*ref.slow.get(source, (0, 0)))
            doc["baseline_self_time_p50_ms"] = round(stats.median_ms, 2)
        callee = st.callee.get(source) or (
            a[0] if ref is not None and (a := ref.answered_by(source)) else None
        )
        doc["hop"] = f"wait on {callee}" if callee else "own work"
    elif kind == "structure" and ref is not None and step is not None:
        doc["unusual_step"] = {
            "after": _step_name(step[0]),
            "next": _step_name(step[1]),
            "share": _rate(st.steps[source][step], st.step_from[source][step[0]]),
            "baseline_share": _rate(*ref.step_counts(source, step)),
        }
    return doc


def _growth(j: _Judgement) -> dict[str, tuple[float, str]]:
    """Per service: the largest growth of one of its operations' p90 self time, and where.

    Against the reference when there is one; without, each operation's p90
    self time itself (the place where the most time is spent).
    """
    out: dict[str, tuple[float, str]] = {}
    ops = j.ref.ops if j.ref is not None else {}
    for key, samples in j.stats.self_ms.items():
        if j.ref is not None:
            st = ops.get(key)
            if st is None or st.n < MIN_SAMPLES:
                continue
            g = quantile(samples, HIGH_QUANTILE) - st.high_ms
        else:
            g = quantile(samples, HIGH_QUANTILE)
        if key[0] not in out or g > out[key[0]][0]:
            out[key[0]] = (g, key[1])
    return out


def _fault_class(service: str, main: _Finding, j: _Judgement) -> str:
    """The class the main finding names; own work slower across the service reads as cpu."""
    fault = str(_heaviest(main.fault_classes))
    # Its own failures, however few, may name what the waits are: a pool that ran
    # out, or memory that did (collection pauses, then MemoryError), explains the
    # slowness and the callers' timeouts before the failures.
    if fault in ("latency", "timeout"):
        for named in ("memory", "saturation"):
            if j.stats.failure_classes[service][named]:
                return named
    # Callers that gave up waiting (timeout) on a service whose own work slowed
    # everywhere waited on its CPU: the slowness is the cause, the timeouts its effect.
    if fault not in ("latency", "timeout"):
        return fault
    keys = j.known.get(service, 0)
    shifted = len(j.shifted.get(service, ()))
    if keys >= CPU_MIN_OPERATIONS and shifted >= CPU_SHARE * keys:
        return "cpu"
    # Callers gave up on a service that still completes work, and that work of
    # its own is slower (or a call out whose answer came in time reached it
    # late): alive and starved, not hung. A hung service finishes nothing its
    # callers wait on and keeps the pace of the rest; calls out whose slow ones
    # went unanswered are a wait on someone else, not its own work.
    st = j.stats
    own = [
        op
        for op in j.shifted.get(service, ())
        if st.above_unanswered[(service, op)] < 0.5 * st.above[(service, op)]
    ]
    if fault == "timeout" and own:
        return "cpu"
    return fault


def _rank(j: _Judgement, n_traces: int, method: str) -> list[Candidate]:
    """Every service that took part, best first (see the module docstring)."""
    suspects: dict[str, _Suspect] = defaultdict(_Suspect)
    for trace_id, blames in j.blamed:
        best: dict[str, float] = {}
        for b in blames:
            w = b.weight * KIND_WEIGHT[b.kind]
            if w <= 0:
                continue
            best[b.service] = max(best.get(b.service, 0.0), w)
            finding = suspects[b.service].findings[(b.kind, b.operation)]
            finding.weight += w
            finding.fault_classes[b.fault_class] += w
            finding.sources[(b.source, b.step)] += w
            if b.message:
                template = message_template(b.message)
                finding.messages[template] += 1
                finding.originals.setdefault(template, b.message)
        for service, w in best.items():
            suspects[service].score += w
            suspects[service].traces[trace_id] = w
    # Ochiai: the weighted traces where the service is at fault, against both the
    # traces in trouble and the traces the service took part in.
    anomalous = len(j.blamed)
    for service, sus in suspects.items():
        involved = len(j.stats.involved.get(service, set()) | set(sus.traces))
        sus.ochiai = sus.score / math.sqrt(anomalous * involved) if anomalous else 0.0
        if sus.score / max(1, n_traces) < MIN_SCORE:
            sus.ochiai = 0.0  # noise: ranked by growth alone, with the rest
    growth = _growth(j)
    top_growth = max((g for g, _ in growth.values()), default=0.0)

    def grown(service: str) -> float:
        g = growth.get(service, (0.0, ""))[0]
        return max(0.0, g) / top_growth if top_growth > 0 else 0.0

    services = set(j.stats.involved) | set(suspects)
    score = {s: suspects[s].ochiai + GROWTH_WEIGHT * grown(s) if s in suspects else
             GROWTH_WEIGHT * grown(s) for s in services}  # fmt: skip
    ranked = sorted(services, key=lambda s: (score[s], grown(s), s), reverse=True)
    out: list[Candidate] = []
    for service in ranked:
        if service not in suspects or suspects[service].ochiai <= 0:
            out.append(_unexplained(service, score[service], growth, j, method))
            continue
        sus = suspects[service]
        findings = sorted(sus.findings.items(), key=lambda kv: kv[1].weight, reverse=True)
        (_, operation), main = findings[0]
        # Failures carry a message, the most specific account of what went wrong
        # (a pool that ran out explains the waits as well as the timeouts): when
        # a real share of the service's evidence is errors, they name the class.
        total_weight = sum(f.weight for _, f in findings)
        failing = [f for (kind, _), f in findings if kind == "error"]
        if failing and failing[0].weight >= ERROR_CLASS_SHARE * total_weight:
            main = failing[0]
        evidence: dict[str, Any] = {
            "method": method,
            "trace_share": round(sus.score / max(1, n_traces), 4),
            "anomalous_traces": len(j.blamed),
            "explained_traces": len(sus.traces),
            "exemplar_trace_ids": sorted(sus.traces, key=sus.traces.__getitem__, reverse=True)[
                :EXEMPLARS
            ],
            "signals": [
                _signal(kind, f.heaviest_source(), j)
                | {"operation": op, "weight": round(f.weight / max(1, n_traces), 4)}
                for (kind, op), f in findings[:EXEMPLARS]
            ],
        }
        messages = Counter[str]()
        originals: dict[str, str] = {}
        for (kind, _), f in findings:
            if kind == "error":
                messages.update(f.messages)
                for template, original in f.originals.items():
                    originals.setdefault(template, original)
        if messages:
            template = messages.most_common(1)[0][0]
            evidence["exception"] = originals.get(template, template)
            evidence["exception_template"] = template
        out.append(
            Candidate(
                service=service,
                operation=operation,
                score=score[service],
                fault_class=_fault_class(service, main, j),
                evidence=evidence,
            )
        )
    calibrate(out)
    return out


def _around_onset(window: list[TraceView], onset_ns: int) -> list[Candidate]:
    """The change that began near the detector's onset, judged against what came before.

    What ended more than ``ONSET_SLACK_S`` before the onset may hold an older
    fault or its repair: the change point is looked for after it. Without
    one there, the traces that ended before the onset are the reference.
    Empty when neither explains anything.
    """

    def end(v: TraceView) -> float:
        return v.start_ns + v.root_ms * 1e6

    recent = [v for v in window if end(v) >= onset_ns - ONSET_SLACK_S * 1e9]
    split = change_point(recent) if recent else None
    if split is not None:
        ranked = _rank(
            _judge(recent[split:], Reference.learn(recent[:split])),
            len(recent) - split,
            "change point",
        )
    else:
        before = [v for v in window if end(v) < onset_ns][-MAX_REFERENCE_TRACES:]
        after = [v for v in window if end(v) >= onset_ns]
        if len(before) < MIN_REFERENCE_TRACES or not after:
            return []
        ranked = _rank(_judge(after, Reference.learn(before)), len(after), "onset")
    return ranked if ranked and ranked[0].evidence.get("explained_traces") else []


def _unexplained(
    service: str, score: float, growth: dict[str, tuple[float, str]], j: _Judgement, method: str
) -> Candidate:
    """A service that took part with no evidence against it (or too little to count)."""
    g, operation = growth.get(service, (0.0, ""))
    if not operation:
        ops = [k[1] for k in j.stats.calls if k[0] == service]
        operation = ops[0] if ops else ""
    evidence: dict[str, Any] = {
        "method": method,
        "anomalous_traces": len(j.blamed),
        "explained_traces": 0,
        "signals": [],
    }
    if g > 0:
        evidence["self_time_p90_growth_ms"] = round(g, 2)
    return Candidate(service, operation, score, "latency", evidence)


def localize(
    traces: Iterable[list[Span]],
    latency_threshold_ms: float = LATENCY_MS,
    top: int | None = None,
    baseline: Iterable[list[Span]] | None = None,
    onset_ns: int | None = None,
) -> list[Candidate]:
    """Every service that took part in ``traces``, most likely root cause first.

    ``top``: only the first so many. Empty only when there are no traces.

    ``onset_ns``: when the trouble began, as the detector saw it. The change
    point is looked for no earlier than ``ONSET_SLACK_S`` before it: a window
    that reaches back into an earlier fault, or its repair, must not find that
    change. Without a change point there, the traces that ended before the
    onset are the reference and the rest are judged.

    ``baseline``: traces of the same system from before (fault-free, or mostly
    so). Without one, the window is split at its change point and its later
    part judged against its earlier part; when it has no change point (or the
    change explains nothing), and when the baseline is too small to learn
    from, static rules apply: error origins, and in traces slower than
    ``latency_threshold_ms`` the span that added the most time.
    """
    with paused_gc():
        return _localize(traces, latency_threshold_ms, top, baseline, onset_ns)


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection for a moment.

    The analysis builds tens of thousands of small objects and no cycles; each
    generation-0 collection would walk every span held, and that, not the
    analysis, would take half the time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _localize(
    traces: Iterable[list[Span]],
    latency_threshold_ms: float,
    top: int | None,
    baseline: Iterable[list[Span]] | None,
    onset_ns: int | None = None,
) -> list[Candidate]:
    window = views(traces)
    if not window:
        return []
    ranked: list[Candidate] = []
    if baseline is None and onset_ns is not None:
        ranked = _around_onset(window, onset_ns)
        if ranked:
            return ranked[:top] if top is not None else ranked
    if baseline is not None:
        reference = views(baseline, limit=MAX_REFERENCE_TRACES)
        if len(reference) >= MIN_REFERENCE_TRACES:
            judgement = _judge(window, Reference.learn(reference))
            ranked = _rank(judgement, len(window), "baseline")
    else:
        split = change_point(window)
        if split is not None:
            judgement = _judge(window[split:], Reference.learn(window[:split]))
            ranked = _rank(judgement, len(window) - split, "change point")
            if not ranked or not ranked[0].evidence.get("explained_traces"):
                ranked = []  # the change explains nothing: the static rules may
    if not ranked:
        ranked = _rank(_judge_static(window, latency_threshold_ms), len(window), "static rules")
    return ranked[:top] if top is not None else ranked
