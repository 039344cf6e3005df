"""Published trace-based root-cause localisers, re-implemented from their papers' ideas.

Comparators for ``benchmarks/rca.py``. Each is a function
``(incident, baseline) -> services`` over traces (lists of spans) that returns
every service with a span in the incident, the most likely root cause first.
They read only what every span carries: service, name, parent, start, end and
the error flag (which may be False everywhere: rca-tt has no status codes).

- :func:`microrank`: MicroRank (Yu et al., WWW 2021, "MicroRank: End-to-End
  Latency Issue Localization with Extended Spectrum Analysis in Microservice
  Environments").
- :func:`tracerca`: TraceRCA (Li et al., IWQoS 2021, "Practical Root Cause
  Localization for Microservice Systems via Trace Analysis").
- :func:`simple_rule`: the kind of one-line rule recent benchmark studies found
  competitive: the service whose own errors grew most, else the one whose own
  operations slowed most.

Written for this project from the papers' descriptions, not from their code;
where a paper leaves a choice open or the spans lack what it reads, the
function's docstring says what was chosen. Every method is deterministic: ties
fall to the service name.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from sre_space.rca.traces import TraceView, views
from sre_space.telemetry.model import Span

Traces = list[list[Span]]
Op = tuple[str, str]  # (service, span name)
Kind = tuple[str, str, str, str]  # root (service, name), first other service's (service, name)

K_SIGMA = 3.0  # both papers flag what lies beyond mean + 3 standard deviations
MIN_SAMPLES = 5  # fewer baseline traces of a kind than this: judge by a coarser group
DAMPING = 0.85  # PageRank's usual damping factor
MIN_SUPPORT = 0.1  # TraceRCA: an itemset must be in a tenth of the anomalous traces


@dataclass(slots=True)
class _Tree:
    """One trace reduced to what the comparators read."""

    spans: list[Span]
    parent: list[int]  # index of each span's parent in ``spans``, -1 for a root
    latency_ms: float  # end to end: first start to last end
    kind: Kind
    ops: frozenset[Op]  # the operations it ran (calls out excluded, see _tree)
    calls: frozenset[tuple[Op, Op]]  # (caller operation, callee operation)


def _tree(trace: list[Span]) -> _Tree:
    by_id: dict[str, Span] = {}
    for s in trace:  # exporters retry: a span sent twice counts once
        by_id.setdefault(s.span_id, s)
    spans = list(by_id.values())
    index = {s.span_id: i for i, s in enumerate(spans)}
    parent = [
        index.get(s.parent_id, -1) if s.parent_id and s.parent_id != s.span_id else -1
        for s in spans
    ]
    first = min(s.start_ns for s in spans)
    last = max(s.end_ns for s in spans)
    roots = [i for i, p in enumerate(parent) if p < 0] or [0]  # (or every parent in a cycle)
    root = spans[min(roots, key=lambda i: (spans[i].start_ns, spans[i].name))]
    # Gateways name every request alike (Train Ticket's "/*"): the first
    # operation reached in another service tells which request it was.
    other = [s for s in spans if s.service != root.service]
    nxt = min(other, key=lambda s: (s.start_ns, s.service, s.name)) if other else None
    kind = (root.service, root.name, nxt.service if nxt else "", nxt.name if nxt else "")
    # A span with a child in another service is the caller's side of a call
    # (OTel's CLIENT span): an edge of the call graph, not an operation.
    # Counted as one, it would cover exactly the traces its callee covers and
    # tie with it in any spectrum formula.
    exit_ = [False] * len(spans)
    for i, p in enumerate(parent):
        if p >= 0 and spans[p].service != spans[i].service:
            exit_[p] = True
    ops: set[Op] = set()
    calls: set[tuple[Op, Op]] = set()
    for i, s in enumerate(spans):
        if exit_[i]:
            continue
        op = (s.service, s.name)
        ops.add(op)
        p = parent[i]
        hops = 0
        while p >= 0 and exit_[p] and hops < len(spans):  # (bounded: parents may cycle)
            p, hops = parent[p], hops + 1
        if p >= 0 and not exit_[p]:
            caller = (spans[p].service, spans[p].name)
            if caller != op:
                calls.add((caller, op))
    return _Tree(spans, parent, max(0, last - first) / 1e6, kind, frozenset(ops), frozenset(calls))


def _trees(traces: Iterable[list[Span]]) -> list[_Tree]:
    return [_tree(t) for t in traces if t]


def _services(trees: list[_Tree]) -> list[str]:
    return sorted({s.service for t in trees for s in t.spans})


def _mean_sd(values: list[float]) -> tuple[float, float]:
    n = len(values)
    mean = sum(values) / n
    var = sum((v - mean) ** 2 for v in values) / (n - 1) if n > 1 else 0.0
    return mean, math.sqrt(var)


def _by_score(services: list[str], score: dict[str, tuple[float, ...]]) -> list[str]:
    """Every service, the highest score first; services without one last; ties by name."""
    lowest = (-math.inf,)
    return sorted(services, key=lambda s: (tuple(-x for x in score.get(s, lowest)), s))


# --- MicroRank -----------------------------------------------------------------------


def _trace_thresholds(baseline: list[_Tree]) -> tuple[dict[object, float], float | None]:
    """Latency above which a trace is anomalous: mean + 3 sd of the baseline's traces.

    Per kind of trace (its root operation and the first operation reached in
    another service) and per root operation, where the baseline holds at least
    ``MIN_SAMPLES`` of them; else over all baseline traces (the second value).
    """
    groups: dict[object, list[float]] = defaultdict(list)
    for t in baseline:
        groups[t.kind].append(t.latency_ms)
        groups[t.kind[:2]].append(t.latency_ms)
    limits: dict[object, float] = {}
    for key, values in groups.items():
        if len(values) >= MIN_SAMPLES:
            mean, sd = _mean_sd(values)
            limits[key] = mean + K_SIGMA * sd
    every = [t.latency_ms for t in baseline]
    if len(every) >= MIN_SAMPLES:
        mean, sd = _mean_sd(every)
        return limits, mean + K_SIGMA * sd
    return limits, None


def _pagerank(trees: list[_Tree]) -> dict[Op, float]:
    """Personalised PageRank over operations and traces; the operations' scores, mean 1.

    Nodes are the operations and the traces. A trace links to each operation it
    covers; an operation to each trace that covers it (half its weight) and to
    the operations it calls (the other half, when it calls any: the walk goes
    down the call graph, the way a slow request's time goes). The walk
    restarts at traces in proportion to the rarity of their kind (1 / traces
    with the same set of operations) and to 1 / their number of operations,
    half and half: a rare request, or a short one that leaves few suspects,
    says more about where the fault is.
    """
    ops: dict[Op, int] = {}
    for t in trees:
        for op in sorted(t.ops):
            ops.setdefault(op, len(ops))
    m, n = len(ops), len(trees)
    size = m + n
    calls = {(ops[a], ops[b]) for t in trees for a, b in t.calls}
    out_calls = np.zeros(m)
    for a, _ in calls:
        out_calls[a] += 1
    covering = np.zeros(m)
    for t in trees:
        for op in t.ops:
            covering[ops[op]] += 1
    to_calls = np.where(out_calls > 0, 0.5, 0.0)  # share of an operation's weight to its callees
    src: list[int] = []
    dst: list[int] = []
    weight: list[float] = []
    for a, b in sorted(calls):
        src.append(a)
        dst.append(b)
        weight.append(to_calls[a] / out_calls[a])
    for j, t in enumerate(trees):
        node = m + j
        for op in t.ops:
            i = ops[op]
            src.append(node)
            dst.append(i)
            weight.append(1.0 / len(t.ops))  # (t.ops is not empty: the loop runs)
            src.append(i)
            dst.append(node)
            weight.append((1.0 - to_calls[i]) / covering[i])
    src_a, dst_a = np.array(src, dtype=np.intp), np.array(dst, dtype=np.intp)
    w_a = np.array(weight, dtype=float)
    kinds = Counter(t.ops for t in trees)
    rarity = np.array([1.0 / kinds[t.ops] for t in trees])
    brevity = np.array([1.0 / max(1, len(t.ops)) for t in trees])
    pref = np.zeros(size)
    pref[m:] = 0.5 * rarity / rarity.sum() + 0.5 * brevity / brevity.sum()
    x = np.full(size, 1.0 / size)
    for _ in range(100):
        nxt = DAMPING * np.bincount(dst_a, weights=w_a * x[src_a], minlength=size)
        nxt += (1.0 - DAMPING) * pref
        done = float(np.abs(nxt - x).sum()) < 1e-9
        x = nxt
        if done:
            break
    scores = x[:m]
    scores = scores / scores.mean() if m and scores.mean() > 0 else scores
    return {op: float(scores[i]) for op, i in ops.items()}


def microrank(incident: Traces, baseline: Traces) -> list[str]:
    """MicroRank (Yu et al., WWW 2021): PageRank-weighted spectrum analysis.

    1. Anomaly detection: an incident trace is anomalous when its end-to-end
       latency exceeds the baseline's mean + 3 sd for traces of its kind (root
       operation and first operation reached in another service; failing five
       such baseline traces, its root operation's, then all traces'). The paper
       sets expectations from per-operation latencies of a normal period; this
       per-kind bar is the simplification.
    2. One personalised PageRank over the anomalous traces' graph and one over
       the normal traces' (see :func:`_pagerank`).
    3. Spectrum analysis: for each operation the counts of anomalous traces that
       cover it or not (ef, nf) are weighted by its PageRank score in the
       anomalous graph, those of normal traces (ep, np) by its score in the
       normal graph; operations are ranked by DStar (ef^2 / (ep + nf), one of
       the spectrum formulas the paper compares; fixed here, not chosen per
       data set), ties by ef. A service ranks by its best operation.

    Operations are the spans' (service, name), except a span whose child runs
    in another service: that is the caller's side of a call (OTel's CLIENT
    span), an edge of the call graph, not an operation of its own.

    When (almost) every incident trace is anomalous the baseline's traces serve
    as the normal ones. Latency only, as the paper: errors are not read. With no
    anomalous trace there is nothing to rank: every service ties (by name).
    """
    inc = _trees(incident)
    services = _services(inc)
    limits, overall = _trace_thresholds(_trees(baseline))
    anomalous: list[_Tree] = []
    normal: list[_Tree] = []
    for t in inc:
        bar = limits.get(t.kind, limits.get(t.kind[:2], overall))
        (anomalous if bar is not None and t.latency_ms > bar else normal).append(t)
    if not anomalous:
        return services
    if len(normal) < MIN_SAMPLES:
        normal = normal + _trees(baseline)
    pr_a = _pagerank(anomalous)
    pr_n = _pagerank(normal) if normal else {}
    n_a = len(anomalous)
    cover_a: Counter[Op] = Counter(op for t in anomalous for op in t.ops)
    cover_n: Counter[Op] = Counter(op for t in normal for op in t.ops)
    best: dict[str, tuple[float, float]] = {}
    for op, weight in pr_a.items():
        ef = weight * cover_a[op]
        nf = weight * (n_a - cover_a[op])
        ep = pr_n.get(op, 0.0) * cover_n[op]
        below = ep + nf
        dstar = ef * ef / below if below > 0 else math.inf
        score = (dstar, ef)
        if score > best.get(op[0], (-math.inf, -math.inf)):
            best[op[0]] = score
    return _by_score(services, dict(best))


# --- TraceRCA ------------------------------------------------------------------------

Invocation = tuple[str, str, str]  # (caller service or "", callee service, callee operation)


def _invocations(t: _Tree) -> list[tuple[Invocation, float, bool]]:
    """Calls between services in a trace: (invocation, callee's latency in ms, failed).

    A span whose parent is in another service is the callee's side of a call; a
    root span is a call from outside (caller "").
    """
    out = []
    spans, parent = t.spans, t.parent
    for i, s in enumerate(spans):
        p = parent[i]
        caller = "" if p < 0 else spans[p].service
        if p < 0 or caller != s.service:
            out.append(((caller, s.service, s.name), max(0, s.end_ns - s.start_ns) / 1e6, s.error))
    return out


def tracerca(incident: Traces, baseline: Traces) -> list[str]:
    """TraceRCA (Li et al., IWQoS 2021): anomalous invocations, then suspicious service sets.

    1. Anomalous invocations: each call from one service to another (caller
       service, callee service, callee operation; a root span is a call from
       outside) is judged against the baseline's calls of the same invocation:
       anomalous when its latency lies outside mean +- 3 sd (at least three
       baseline samples), or when it failed and at most a tenth of the
       baseline's did. The paper selects features per invocation and runs an
       unsupervised multi-metric detector; k-sigma per feature is the
       simplification. An invocation the baseline never made is judged by
       its error alone.
    2. A trace is anomalous when it holds an anomalous invocation; its items
       are the services (callers and callees) of its anomalous invocations.
    3. Itemsets of one or two services with support (share of anomalous
       traces whose items hold the set) at least 0.1 are scored by the
       Jaccard index of "anomalous with these services in its items" and
       "these services in the trace" over all incident traces, which combines
       the paper's support and confidence. Instead of full frequent-pattern
       mining, sets of at most two services are mined (the paper reports the
       root cause almost always within small sets).
    4. Services are listed in the order of the best-scored set holding them;
       within a set, by the share of the calls to them that were anomalous
       (the paper ranks within a set by how anomalous a service's
       invocations are), then by their own one-service score. The rest
       follow by that score, then name. Services that every trace holds tie
       on every score: the name decides.
    """
    inc = _trees(incident)
    services = _services(inc)
    samples: dict[Invocation, list[float]] = defaultdict(list)
    failures: Counter[Invocation] = Counter()
    for t in _trees(baseline):
        for key, ms, err in _invocations(t):
            samples[key].append(ms)
            failures[key] += err
    bounds: dict[Invocation, tuple[float, float]] = {}
    for key, values in samples.items():
        if len(values) >= 3:
            mean, sd = _mean_sd(values)
            bounds[key] = (mean - K_SIGMA * sd, mean + K_SIGMA * sd)
    items: list[frozenset[str]] = []  # per anomalous trace
    present: list[frozenset[str]] = []  # per incident trace
    called: Counter[str] = Counter()  # invocations of each service (as the callee)
    called_bad: Counter[str] = Counter()  # of them anomalous
    for t in inc:
        present.append(frozenset(s.service for s in t.spans))
        hit: set[str] = set()
        for key, ms, err in _invocations(t):
            lo_hi = bounds.get(key)
            slow = lo_hi is not None and not lo_hi[0] <= ms <= lo_hi[1]
            n = len(samples.get(key, ()))
            failed = err and failures[key] <= 0.1 * n
            called[key[1]] += 1
            if slow or failed:
                called_bad[key[1]] += 1
                hit.update(x for x in key[:2] if x)
        if hit:
            items.append(frozenset(hit))
    if not items:
        return services
    n_anomalous = len(items)
    single: Counter[str] = Counter(s for it in items for s in it)
    frequent = sorted(s for s, c in single.items() if c >= MIN_SUPPORT * n_anomalous)
    pairs: Counter[tuple[str, str]] = Counter()
    for it in items:
        inside = sorted(s for s in it if s in single and single[s] >= MIN_SUPPORT * n_anomalous)
        for i, a in enumerate(inside):
            for b in inside[i + 1 :]:
                pairs[(a, b)] += 1
    sets: dict[tuple[str, ...], int] = {(s,): single[s] for s in frequent}
    sets.update({p: c for p, c in pairs.items() if c >= MIN_SUPPORT * n_anomalous})

    # which incident traces hold each service, as bits of an int (intersections are cheap)
    holding: dict[str, int] = defaultdict(int)
    for j, p in enumerate(present):
        for s in p:
            holding[s] |= 1 << j

    def jaccard(members: tuple[str, ...], both: int) -> float:
        mask = holding[members[0]]
        for s in members[1:]:
            mask &= holding[s]
        union = n_anomalous + mask.bit_count() - both
        return both / union if union > 0 else 0.0

    def bad_share(s: str) -> float:
        return called_bad[s] / called[s] if called[s] else 0.0

    own = {s: jaccard((s,), single[s]) for s in single}
    score = {m: jaccard(m, c) for m, c in sets.items()}
    scored = sorted(sets, key=lambda m: (-score[m], len(m), m))
    order: list[str] = []
    for members in scored:
        for s in sorted(members, key=lambda s: (-bad_share(s), -own[s], s)):
            if s not in order:
                order.append(s)
    rest = _by_score([s for s in services if s not in order], {s: (v,) for s, v in own.items()})
    return order + rest


# --- a simple rule -------------------------------------------------------------------


def simple_rule(incident: Traces, baseline: Traces) -> list[str]:
    """The service whose own errors grew most; else the one whose own operations slowed most.

    Errors: per service, the share of its spans that failed while none of
    their children did (the error started there), incident minus baseline;
    services that gained at least 5 points (and at least three such spans)
    come first, by that gain. The rest follow by the largest growth of the
    mean self time of one of their operations (an operation the baseline
    never ran counts from zero). A floor of the kind recent benchmark studies
    (e.g. RCAEval, 2025) report as hard to beat.
    """
    now, before = views(incident), views(baseline)

    def tally(vs: list[TraceView]) -> tuple[dict[str, list[int]], dict[Op, list[float]]]:
        errors: dict[str, list[int]] = defaultdict(lambda: [0, 0])  # [started here, spans]
        selfs: dict[Op, list[float]] = defaultdict(lambda: [0.0, 0.0])  # [self ms, spans]
        for v in vs:
            for c in v.calls:
                e = errors[c.service]
                e[0] += c.error_origin
                e[1] += 1
                t = selfs[c.key]
                t[0] += c.self_ms
                t[1] += 1
        return errors, selfs

    err_now, self_now = tally(now)
    err_before, self_before = tally(before)
    services = sorted(err_now)
    gain: dict[str, float] = {}
    for s, (bad, total) in err_now.items():
        b_bad, b_total = err_before.get(s, [0, 0])
        g = bad / total - (b_bad / b_total if b_total else 0.0)
        if g >= 0.05 and bad >= 3:
            gain[s] = g
    slowed: dict[str, float] = {}
    for op, (ms, count) in self_now.items():
        b_ms, b_count = self_before.get(op, [0.0, 0.0])
        g = ms / count - (b_ms / b_count if b_count else 0.0)
        slowed[op[0]] = max(slowed.get(op[0], -math.inf), g)
    return _by_score(
        services, {s: (1.0, gain[s]) if s in gain else (0.0, slowed[s]) for s in services}
    )


COMPARATORS: dict[str, Callable[[Traces, Traces], list[str]]] = {
    "MicroRank (Yu+ WWW'21)": microrank,
    "TraceRCA (Li+ IWQoS'21)": tracerca,
    "rule: error gain, else self-time": simple_rule,
}
