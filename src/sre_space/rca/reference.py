"""What normal looks like: per-operation baselines learned from reference traces.

For every operation (service, span name): its self time (median and MAD), how
often a call of it is slow by the latency rule, how often it is where an error
originates, which service answers it when it is a call out, which operations
it calls (its *shape*) and in what order (its *steps*). The same rules are
then applied to the window under suspicion, and only what happens there more
often than here is evidence.

A reference is rarely perfectly clean: the traces a live store held before an
incident may include the previous one, or the first seconds after a restart
when spans were lost. Rates are therefore counted per time slice, and a slice
in which an operation behaved significantly unlike the rest of the reference
is left out of that operation's rate (at most half of the slices).
Medians take care of the self times.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import pairwise

from sre_space.rca.stats import mad_sigma, median, proportion_z, quantile
from sre_space.rca.traces import (
    END,
    START,
    Call,
    OpKey,
    Step,
    TraceView,
    own_times,
    peer_address,
)

MIN_SAMPLES = 8  # fewer reference calls than this: no opinion on the operation
SIGMAS = 4.0  # a call is slow when its self time exceeds the median by this many sigmas ...
TRACE_SHARE = 0.1  # ... and by this share of its trace's end-to-end time (it matters)
MAX_SLICES = 8
MIN_SLICE_TRACES = 25
TRIM_Z = 4.0  # a slice this unlike the rest of the reference is not normal
# A call slower than this quantile of its operation's reference self times is
# in the slowest tenth; a window where far more than a tenth are is shifted.
HIGH_QUANTILE = 0.9

Counts = tuple[int, int]  # (events, opportunities)


@dataclass(slots=True, frozen=True)
class OpStats:
    n: int
    median_ms: float
    sigma_ms: float
    high_ms: float  # its HIGH_QUANTILE: a call above it is in the reference's slowest tenth
    above: int  # reference calls above high_ms (about n / 10; fewer with ties)


def robust_counts(slices: list[Counts]) -> Counts:
    """Events and opportunities over the slices, without those significantly unlike the rest.

    The slice whose rate stands out most against the others (either way: a
    burst of errors, or a moment when spans were lost) is dropped while it
    stands out by ``TRIM_Z``, at most half of the slices.
    """
    parts = [s for s in slices if s[1] > 0]
    total = len(parts)
    hits, n = sum(h for h, _ in parts), sum(m for _, m in parts)
    while len(parts) > 1 and 2 * (len(parts) - 1) >= total:
        zs = [abs(proportion_z(h, m, hits - h, n - m)) for h, m in parts]
        i = max(range(len(parts)), key=zs.__getitem__)
        if zs[i] < TRIM_Z:
            break
        h, m = parts.pop(i)
        hits, n = hits - h, n - m
    return hits, n


@dataclass
class Reference:
    """Baselines of one reference window (see the module docstring)."""

    n_traces: int = 0
    ops: dict[OpKey, OpStats] = field(default_factory=dict)
    calls: Counter[OpKey] = field(default_factory=Counter)
    slow: dict[OpKey, Counts] = field(default_factory=dict)
    # per call out and the service that answered it: HTTP clients name their
    # spans by method alone ("GET"), so one operation holds calls to many callees
    slow_edge: dict[tuple[OpKey, str], Counts] = field(default_factory=dict)
    errors: dict[OpKey, Counts] = field(default_factory=dict)
    presence: dict[OpKey, Counter[OpKey]] = field(default_factory=lambda: defaultdict(Counter))
    steps: dict[tuple[OpKey, Step], Counts] = field(default_factory=dict)
    step_from: Counter[tuple[OpKey, OpKey]] = field(default_factory=Counter)
    callee: dict[OpKey, tuple[str, str]] = field(default_factory=dict)
    # the service (and operation) that answered at a call's address (peer_address)
    at_address: dict[str, tuple[str, str]] = field(default_factory=dict)
    # per call out and the service that answered it: its self time (the gap), sorted
    gaps: dict[tuple[OpKey, str], list[float]] = field(default_factory=dict)
    # per operation: its calls' self time, sorted
    self_ms: dict[OpKey, list[float]] = field(default_factory=dict)
    # per entry operation of a service: its visits' own time, sorted (traces.own_times)
    own: dict[OpKey, list[float]] = field(default_factory=dict)

    @classmethod
    def learn(cls, views: list[TraceView]) -> Reference:
        ref = cls(n_traces=len(views))
        n_slices = max(1, min(MAX_SLICES, len(views) // MIN_SLICE_TRACES))
        samples: dict[OpKey, list[float]] = defaultdict(list)
        callees: dict[OpKey, Counter[tuple[str, str]]] = defaultdict(Counter)
        addresses: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
        gaps: dict[tuple[OpKey, str], list[float]] = defaultdict(list)
        calls: list[dict[OpKey, int]] = [{} for _ in range(n_slices)]
        errors: list[dict[OpKey, int]] = [{} for _ in range(n_slices)]
        # Calls are counted by their whole sequence of children (few distinct
        # ones per operation); steps and presence are derived from those.
        sequences: list[dict[tuple[OpKey, tuple[OpKey, ...]], int]] = [{} for _ in range(n_slices)]
        shapes: dict[tuple[OpKey, tuple[OpKey, ...]], int] = {}
        n = max(1, len(views))
        for i, v in enumerate(views):
            s = i * n_slices // n
            s_calls, s_errors, s_seq = calls[s], errors[s], sequences[s]
            for c in v.calls:
                key = c.key
                samples[key].append(c.self_ms)
                s_calls[key] = s_calls.get(key, 0) + 1
                if c.error_origin:
                    s_errors[key] = s_errors.get(key, 0) + 1
                ks = (key, c.sequence)
                shapes[ks] = shapes.get(ks, 0) + 1
                if v.complete:  # a trace still in flight (or cut short) has no order to learn
                    ss = (c.step_key, c.sequence)
                    s_seq[ss] = s_seq.get(ss, 0) + 1
                if c.callee is not None and c.callee_op is not None:
                    callees[key][(c.callee, c.callee_op)] += 1
                    gaps[(key, c.callee)].append(c.self_ms)
                    address = peer_address(c.span)
                    if address:
                        addresses[address][(c.callee, c.callee_op)] += 1
        for key, values in samples.items():
            values.sort()
            med = median(values)
            high = quantile(values, HIGH_QUANTILE)
            above = len(values) - bisect_right(values, high)
            ref.ops[key] = OpStats(len(values), med, mad_sigma(values, med), high, above)
            ref.calls[key] = len(values)
        ref.self_ms = dict(samples)
        ref.gaps = {edge: sorted(values) for edge, values in gaps.items()}
        ref.callee = {k: cnt.most_common(1)[0][0] for k, cnt in callees.items()}
        own: dict[OpKey, list[float]] = defaultdict(list)
        for v in views:
            for key, own_ms in own_times(v, ref.calls_out):
                own[key].append(own_ms)
        ref.own = {k: sorted(v) for k, v in own.items()}
        ref.at_address = {k: cnt.most_common(1)[0][0] for k, cnt in addresses.items()}
        for (key, seq), m in shapes.items():
            presence = ref.presence[key]
            for child in set(seq):
                presence[child] += m
        slow: list[dict[OpKey, int]] = [{} for _ in range(n_slices)]
        edge_calls: list[Counter[tuple[OpKey, str]]] = [Counter() for _ in range(n_slices)]
        edge_slow: list[Counter[tuple[OpKey, str]]] = [Counter() for _ in range(n_slices)]
        for i, v in enumerate(views):  # how often the rule fires on the normal
            s = i * n_slices // n
            s_slow = slow[s]
            for c in v.calls:
                is_slow = ref.is_slow(c, v.root_ms)
                if is_slow:
                    s_slow[c.key] = s_slow.get(c.key, 0) + 1
                if c.callee is not None:
                    edge_calls[s][(c.key, c.callee)] += 1
                    edge_slow[s][(c.key, c.callee)] += is_slow
        for key in samples:
            per_slice = [calls[s].get(key, 0) for s in range(n_slices)]
            ref.slow[key] = robust_counts(
                [(slow[s].get(key, 0), m) for s, m in enumerate(per_slice)]
            )
            ref.errors[key] = robust_counts(
                [(errors[s].get(key, 0), m) for s, m in enumerate(per_slice)]
            )
        for edge in set().union(*edge_calls):
            ref.slow_edge[edge] = robust_counts(
                [(edge_slow[s][edge], edge_calls[s][edge]) for s in range(n_slices)]
            )
        steps = [Counter[tuple[OpKey, Step]]() for _ in range(n_slices)]
        step_from = [Counter[tuple[OpKey, OpKey]]() for _ in range(n_slices)]
        for s in range(n_slices):
            for (key, seq), m in sequences[s].items():
                for step in pairwise((START, *seq, END)):
                    steps[s][(key, step)] += m
                    step_from[s][(key, step[0])] += m
            ref.step_from.update(step_from[s])
        for key_step in set().union(*steps):
            key, step = key_step
            ref.steps[key_step] = robust_counts(
                [(steps[s][key_step], step_from[s][(key, step[0])]) for s in range(n_slices)]
            )
        return ref

    def gap_samples(self, edge: tuple[OpKey, str]) -> list[float] | None:
        """A call out's self times to this callee, or (too few) to any, sorted."""
        found = self.gaps.get(edge)
        if found is not None and len(found) >= MIN_SAMPLES:
            return found
        return self.self_ms.get(edge[0])

    def slow_counts(self, key: OpKey, callee: str | None = None) -> Counts:
        """How often the latency rule fired on ``key`` (on its calls to ``callee``, where
        the reference saw enough of them; else on all its calls)."""
        if callee is not None:
            edge = self.slow_edge.get((key, callee))
            if edge is not None and edge[1] >= MIN_SAMPLES:
                return edge
        return self.slow.get(key, (0, 0))

    def known(self, key: OpKey) -> OpStats | None:
        """The operation's normal, where the reference saw enough of it to have one."""
        st = self.ops.get(key)
        return st if st is not None and st.n >= MIN_SAMPLES else None

    def is_slow(self, call: Call, root_ms: float) -> bool:
        """Self time well above this operation's normal, by enough to matter to the trace."""
        st = self.known(call.key)
        if st is None:
            return False
        return call.self_ms - st.median_ms > max(SIGMAS * st.sigma_ms, TRACE_SHARE * root_ms)

    def calls_out(self, call: Call) -> bool:
        """A call out of its service: by its kind or child, or as the reference knows it."""
        return call.exit or call.key in self.callee

    def step_counts(self, key: OpKey, step: Step) -> Counts:
        """How often ``key``'s calls took ``step`` after ``step[0]``, of how many got there."""
        found = self.steps.get((key, step))
        return found if found is not None else (0, self.step_from[(key, step[0])])

    def typical_children(self, key: OpKey) -> set[OpKey]:
        """Operations that at least half of this operation's calls make."""
        n = self.calls[key]
        return {k for k, c in self.presence.get(key, {}).items() if 2 * c >= n}

    def answered_by(self, key: OpKey, call: Call | None = None) -> tuple[str, str] | None:
        """The (service, operation) that normally answers this call out, if one does.

        With ``call``: by the address it went to first (span names such as
        "POST" are shared by calls to several services).
        """
        if call is not None:
            address = peer_address(call.span)
            if address and address in self.at_address:
                return self.at_address[address]
        return self.callee.get(key)
