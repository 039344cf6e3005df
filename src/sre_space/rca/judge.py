"""The window judged against its reference: every trace's evidence, and the window's own rates.

:func:`judge` counts each kind of evidence only where it is significantly more
frequent than in the reference (:func:`~sre_space.rca.stats.excess_weight`),
then with the weight of how much more; :func:`judge_static` stands in when
there is no reference. ``docs/rca.md`` §3 describes the evidence.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import pairwise

from sre_space.rca.blame import (
    Blame,
    blame_after_answer,
    blame_error,
    blame_latency,
    blame_step,
    callee_of,
)
from sre_space.rca.classify import classify_span
from sre_space.rca.own_time import OwnShift, can_shift, own_shifts, shifts
from sre_space.rca.reference import MIN_SAMPLES, TRACE_SHARE, Reference
from sre_space.rca.stats import excess_weight, median_low
from sre_space.rca.traces import END, START, OpKey, Step, TraceView, own_times


@dataclass
class WindowStats:
    """The window's own rates, per operation, for the evidence details."""

    calls: Counter[OpKey] = field(default_factory=Counter)
    slow: Counter[OpKey] = field(default_factory=Counter)
    edge_calls: Counter[tuple[OpKey, str]] = field(default_factory=Counter)
    edge_slow: Counter[tuple[OpKey, str]] = field(default_factory=Counter)
    # the self time (gap) of the calls out each callee answered
    edge_gaps: dict[tuple[OpKey, str], list[float]] = field(
        default_factory=lambda: defaultdict(list)
    )
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


def callee_shares(
    stats: WindowStats,
    ref: Reference,
    hits_of: Counter[OpKey],
    ref_counts: Callable[[OpKey], tuple[int, int]],
    edge_hits_of: Counter[tuple[OpKey, str]] | None = None,
    edge_ref_counts: Callable[[OpKey, str], tuple[int, int]] | None = None,
) -> dict[tuple[str, str], float]:
    """For each (caller, callee) edge, the share of its grown gap that is the callee's.

    A fault in the caller (its CPU, its pauses) delays its calls to every
    callee; a fault in the callee (its network, its queue) delays the calls of
    every caller. Each side's case is how much of the excess slow-call rate
    over all its edges one fault there would explain, counted robustly: the
    low median of its edges' excess (at least half of them must agree) times
    their number. A caller whose calls to every callee slowed explains them
    all; a caller with one slow callee out of two explains nothing the callee
    does not. The caller's own work counts as one more of its edges: its CPU
    or its pauses would slow that too, a callee's network or queue would not,
    so a caller with a single callee is not an equal suspect for its waits
    when nothing of its own slowed.

    Only edges the reference can judge take part (their operation known well
    enough to call a call slow): an edge it cannot judge never shows a slow
    call, and counting it as one that did not slow would clear the caller of
    a callee that only a newcomer or a rarely seen caller also waits on.
    """
    edge_hits: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    own_hits: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    judged: set[tuple[str, str] | str] = set()  # edges (and callers' own work) it can judge
    by_edge: dict[OpKey, list[tuple[str, int]]] = defaultdict(list)
    if edge_hits_of is not None and edge_ref_counts is not None:
        for (key, answered), n in stats.edge_calls.items():
            by_edge[key].append((answered, n))
    for key, n in stats.calls.items():
        knows = ref.known(key) is not None
        if by_edge.get(key) and edge_hits_of is not None and edge_ref_counts is not None:
            # the callees that answered it here, each its own edge (the
            # operation's calls that none answered are left to the structure rule)
            for answered, m in by_edge[key]:
                acc = edge_hits[(key[0], answered)]
                if knows:
                    judged.add((key[0], answered))
                acc[0] += edge_hits_of[(key, answered)]
                acc[1] += m
                ref_slow, ref_calls = edge_ref_counts(key, answered)
                acc[2] += ref_slow
                acc[3] += ref_calls
            continue
        answer = ref.answered_by(key)
        callee = answer[0] if answer else stats.callee.get(key)
        acc = edge_hits[(key[0], callee)] if callee is not None else own_hits[key[0]]
        if knows:
            judged.add((key[0], callee) if callee is not None else key[0])
        acc[0] += hits_of[key]
        acc[1] += n
        ref_slow, ref_calls = ref_counts(key)
        acc[2] += ref_slow
        acc[3] += ref_calls

    def growth(hits: int, calls: int, ref_hits: int, ref_n: int) -> float:
        rate = hits / calls if calls else 0.0
        ref_rate = ref_hits / ref_n if ref_n else 0.0
        return max(0.0, rate - ref_rate)

    excess = {edge: growth(*counts) for edge, counts in edge_hits.items() if edge in judged}
    own = {caller: growth(*counts) for caller, counts in own_hits.items() if caller in judged}
    return split_edges(excess, own)


def split_edges(
    excess: dict[tuple[str, str], float], own: dict[str, float]
) -> dict[tuple[str, str], float]:
    """Each (caller, callee) edge's share that is the callee's, from how much each edge grew.

    See :func:`callee_shares`. ``own``: how much each caller's own work grew,
    counted as one more of its edges.
    """
    by_caller: dict[str, list[float]] = defaultdict(list)
    by_callee: dict[str, list[float]] = defaultdict(list)
    for (caller, callee), value in excess.items():
        by_caller[caller].append(value)
        by_callee[callee].append(value)
    for caller, value in own.items():
        if caller in by_caller:
            by_caller[caller].append(value)
    shares: dict[tuple[str, str], float] = {}
    for caller, callee in excess:
        c = median_low(by_caller[caller]) * len(by_caller[caller])
        d = median_low(by_callee[callee]) * len(by_callee[callee])
        shares[(caller, callee)] = d / (c + d) if c + d > 0 else 0.5
    return shares


SLOW, ABOVE = 2, 1  # a call slow by the latency rule; one only above its reference's p90


def window_stats(
    window: list[TraceView], ref: Reference | None
) -> tuple[WindowStats, list[list[int]]]:
    stats = WindowStats()
    slow_flags: list[list[int]] = []
    sequences: dict[tuple[OpKey, tuple[OpKey, ...]], int] = {}
    for v in window:
        flags = []
        for service in {c.key[0] for c in v.calls}:
            stats.involved[service].add(v.trace_id)
        for c in v.calls:
            slow = ref.is_slow(c, v.root_ms) if ref is not None else False
            st = ref.known(c.key) if ref is not None else None
            above = st is not None and c.self_ms > st.high_ms
            flags.append(SLOW if slow else ABOVE if above else 0)
            stats.calls[c.key] += 1
            stats.slow[c.key] += slow
            if c.callee is not None:
                stats.edge_calls[(c.key, c.callee)] += 1
                stats.edge_slow[(c.key, c.callee)] += slow
                if c.exit:
                    stats.edge_gaps[(c.key, c.callee)].append(c.self_ms)
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
class Judgement:
    blamed: list[tuple[str, list[Blame]]]
    stats: WindowStats
    ref: Reference | None = None
    own: dict[OpKey, OwnShift] = field(default_factory=dict)
    w_step: dict[tuple[OpKey, Step], float] = field(default_factory=dict)
    # per service: its operations the reference knows, and those whose own time grew
    known: dict[str, int] = field(default_factory=dict)
    shifted: dict[str, set[str]] = field(default_factory=dict)


def judge(window: list[TraceView], ref: Reference) -> Judgement:
    stats, slow_flags = window_stats(window, ref)
    w_slow = {
        k: excess_weight(hits, stats.calls[k], *ref.slow.get(k, (0, 0)))
        for k, hits in stats.slow.items()
        if hits
    }
    # the same per callee: slow calls to one of several callees, diluted among
    # the operation's calls to the others, still stand out on their own edge
    w_slow_edge = {
        edge: excess_weight(hits, stats.edge_calls[edge], *ref.slow_counts(*edge))
        for edge, hits in stats.edge_slow.items()
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
    shares = callee_shares(
        stats, ref, stats.slow, lambda k: ref.slow.get(k, (0, 0)), stats.edge_slow, ref.slow_counts
    )
    shift_shares = callee_shares(
        stats,
        ref,
        stats.above,
        lambda k: (ref.ops[k].above, ref.ops[k].n) if k in ref.ops else (0, 0),
    )
    visits = [own_times(v, ref.calls_out) for v in window]
    own = own_shifts(visits, ref)
    # A call out's gap, per callee, by rank: a few calls to one callee that
    # all wait longer stand out where a rate test on so few cannot
    gap_shift = shifts(stats.edge_gaps, ref.gap_samples)
    # whose the longer gaps are, by the same account as slow calls': every edge
    # of the window counts, with its shift's weight or none
    gap_edges: dict[tuple[str, str], float] = {}
    for (op, answered), found in gap_shift.items():
        pair = (op[0], answered)
        gap_edges[pair] = max(gap_edges.get(pair, 0.0), found.weight)
    # (an edge or an entry the reference has too few samples of says nothing:
    # it is left out, not counted as one that did not grow)
    for (op, answered), gaps in stats.edge_gaps.items():
        before = ref.gap_samples((op, answered))
        if before is not None and can_shift(len(gaps), len(before)):
            gap_edges.setdefault((op[0], answered), 0.0)
    own_grew: dict[str, float] = {}
    visits_of = Counter(k for in_trace in visits for k, _ in in_trace)
    for entry, n in visits_of.items():
        before = ref.own.get(entry)
        if entry not in own and not can_shift(n, len(before) if before else 0):
            continue
        grew = own[entry].weight if entry in own else 0.0
        own_grew[entry[0]] = max(own_grew.get(entry[0], 0.0), grew)
    gap_shares = split_edges(gap_edges, own_grew)
    blamed: list[tuple[str, list[Blame]]] = []
    for v, flags, in_trace in zip(window, slow_flags, visits, strict=True):
        blames: list[Blame] = []
        for key, own_ms in in_trace if own else ():
            shift = own.get(key)
            if shift is not None and own_ms > shift.high_ms:
                # this visit's own work, slower than it was: its service's, weighed
                # like a shifted call by how much of its trace the shift is (the
                # shift's, not this visit's: one visit's excess is mostly noise)
                size = (shift.p50_ms - shift.baseline_p50_ms) / max(TRACE_SHARE * v.root_ms, 1e-3)
                w = shift.weight * min(1.0, size)
                blames.append(Blame(key[0], key[1], "latency", "latency", w, key))
        deeper = any(c.error_origin and c.service in v.in_flight for c in v.calls)
        for c, flag in zip(v.calls, flags, strict=True):
            if c.error_origin and w_err.get(c.key, 0.0) > 0:
                blame = blame_error(c, ref, w_err[c.key])
                if deeper and c.callee is None and blame.service in v.in_flight:
                    # The callee took the call and is still in it (its spans
                    # below are here), waiting on a failure of its own: that
                    # failure, blamed where it originates, is the account.
                    continue
                if blame.service == c.service:
                    blames.extend(blame_after_answer(blame, c, v.calls))
                else:
                    blames.append(blame)
            w = w_slow.get(c.key, 0.0)
            if c.callee is not None:
                w = max(w, w_slow_edge.get((c.key, c.callee), 0.0))
            if flag == SLOW and w > 0:
                callee = callee_of(c, ref) if c.exit else None
                share = shares.get((c.service, callee[0]), 0.5) if callee else 0.0
                blames.extend(blame_latency(c, ref, w, share))
            elif (
                c.callee is not None
                and (g := gap_shift.get((c.key, c.callee))) is not None
                and c.self_ms > g.high_ms
            ):
                # before the operation's shift: that pools the calls to every callee
                size = (g.p50_ms - g.baseline_p50_ms) / max(TRACE_SHARE * v.root_ms, 1e-3)
                share = gap_shares.get((c.service, c.callee), 0.5)
                blames.extend(blame_latency(c, ref, g.weight * min(1.0, size), share))
            elif flag and w_shift.get(c.key, 0.0) > 0:
                # weighed by how much of its trace the shift is: drift of a
                # millisecond is real but explains little
                st = ref.ops[c.key]
                size = (c.self_ms - st.median_ms) / max(TRACE_SHARE * v.root_ms, 1e-3)
                w = w_shift[c.key] * min(1.0, size)
                callee = callee_of(c, ref) if c.exit else None
                share = shift_shares.get((c.service, callee[0]), 0.5) if callee else 0.0
                blames.extend(blame_latency(c, ref, w, share))
            if v.complete and (sk := c.step_key) in unusual:
                for step in c.steps():
                    w = w_step.get((sk, step), 0.0)
                    if w > 0:
                        blames.extend(blame_step(c, step, ref, w))
        if blames:
            blamed.append((v.trace_id, blames))
    known: Counter[str] = Counter()
    shifted: dict[str, set[str]] = defaultdict(set)
    for key in stats.calls:
        if ref.known(key) is None:
            continue
        known[key[0]] += 1
        if w_slow.get(key, 0.0) > 0 or w_shift.get(key, 0.0) > 0:
            shifted[key[0]].add(key[1])
    for key in own:
        shifted[key[0]].add(key[1])
    return Judgement(blamed, stats, ref, own, w_step, dict(known), dict(shifted))


def judge_static(window: list[TraceView], threshold_ms: float) -> Judgement:
    """No reference: error origins, and in slow traces the span that added the most time."""
    stats, _ = window_stats(window, None)
    blamed: list[tuple[str, list[Blame]]] = []
    for v in window:
        origins = [c for c in v.calls if c.error_origin]
        blames = [blame_error(c, None, 1.0) for c in origins]
        if not origins and v.root_ms > threshold_ms and v.calls:
            worst = max(v.calls, key=lambda c: c.self_ms)
            stats.slow[worst.key] += 1
            share = 1.0 if worst.exit else 0.0
            blames.extend(b for b in blame_latency(worst, None, 1.0, share) if b.weight > 0)
        if blames:
            blamed.append((v.trace_id, blames))
    return Judgement(blamed, stats)
