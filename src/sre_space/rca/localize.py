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

Where each part lives: whom one call's evidence blames (``rca/blame.py``),
the window judged against its reference (``rca/judge.py``), the ranking and
its evidence (``rca/rank.py``); here, the choice of reference and the entry
point.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

from sre_space.config import LATENCY_MS
from sre_space.rca.candidate import Candidate
from sre_space.rca.changepoint import change_point
from sre_space.rca.judge import Judgement, judge, judge_static
from sre_space.rca.rank import rank
from sre_space.rca.reference import Reference
from sre_space.rca.traces import TraceView, views
from sre_space.telemetry.model import Span

MIN_REFERENCE_TRACES = 20
# How far before its detection window the live Brain reads the store: enough
# normal traffic before the onset to learn from, little enough that an older
# incident is not in it.
LIVE_LOOKBACK_S = 60.0
# A quiet system (a request every few seconds) has a handful of traces in that
# minute, too few to learn normal from: the look-back reaches further, at most
# LIVE_LOOKBACK_MAX_S, until this many traces started before the window.
LIVE_REFERENCE_TRACES = 100
LIVE_LOOKBACK_MAX_S = 600.0
MAX_REFERENCE_TRACES = 4000  # the most recent; more costs time and says little more
# The change point is looked for no earlier than this before the detector's
# onset (see localize): a slowly building fault can take the detector a window
# or two past its start; a change half a minute older is another fault.
ONSET_SLACK_S = 30.0


# A judgement of the window and the ranking of all its evidence: (judgement,
# traces judged, method, ranking). ``localize`` ranks it again on a focus.
Judged = tuple[Judgement, int, str, list[Candidate]]


def _ranked(judgement: Judgement, n: int, method: str) -> Judged:
    return judgement, n, method, rank(judgement, n, method)


def _troubled_share(traces: list[TraceView], threshold_ms: float) -> float:
    """The share of traces with a failure or slower end to end than the threshold."""
    troubled = sum(
        v.root_ms > threshold_ms or any(c.error_origin for c in v.calls) for v in traces
    )
    return troubled / len(traces) if traces else 0.0


def _around_onset(window: list[TraceView], onset_ns: int, threshold_ms: float) -> Judged | None:
    """The change that began near the detector's onset, judged against what came before.

    What ended more than ``ONSET_SLACK_S`` before the onset may hold an older
    fault or its repair: the change point is looked for after it, and it is
    this fault's start only when the traces between it and the onset failed
    or were too slow more often than those before it (a fault that built up
    before the detector saw it). One found where nothing of the kind began
    is another change (a busy host, a service the squad changed), which a
    fault's first seconds, too few traces to split at, could not outweigh.
    Without one, the traces that ended before the onset are the reference.
    None when neither explains anything.
    """

    def end(v: TraceView) -> float:
        return v.start_ns + v.root_ms * 1e6

    recent = [v for v in window if end(v) >= onset_ns - ONSET_SLACK_S * 1e9]
    split = change_point(recent) if recent else None
    if split is not None:
        between = [v for v in recent[split:] if end(v) < onset_ns]
        if between and _troubled_share(between, threshold_ms) <= _troubled_share(
            recent[:split], threshold_ms
        ):
            split = None
    if split is not None:
        normal = recent[:split]
        if len(normal) < LIVE_REFERENCE_TRACES:
            # A quiet system has a handful of traces in the slack's half minute:
            # normal is learnt from older ones too, the newest, up to as many as
            # the look-back wants. (A busy one keeps to the half minute: older
            # traces may hold an earlier fault or its repair, or a cold start.)
            older = [v for v in window if end(v) < onset_ns - ONSET_SLACK_S * 1e9]
            normal = (older + normal)[-LIVE_REFERENCE_TRACES:]
        judged = _ranked(
            judge(recent[split:], Reference.learn(normal)), len(recent) - split, "change point"
        )
    else:
        before = [v for v in window if end(v) < onset_ns][-MAX_REFERENCE_TRACES:]
        after = [v for v in window if end(v) >= onset_ns]
        if len(before) < MIN_REFERENCE_TRACES or not after:
            return None
        judged = _ranked(judge(after, Reference.learn(before)), len(after), "onset")
    ranked = judged[3]
    return judged if ranked and ranked[0].evidence.get("explained_traces") else None


def live_window(
    traces_since: Callable[[int], list[list[Span]]], window_start_ns: int
) -> list[list[Span]]:
    """The traces the live Brain judges: its detection window and the normal before it.

    ``LIVE_LOOKBACK_S`` before the window, or further back (at most
    ``LIVE_LOOKBACK_MAX_S``) until ``LIVE_REFERENCE_TRACES`` traces started
    before the window, whichever holds more. ``traces_since(ns)``: the
    store's traces whose root started at or after ``ns``.
    """
    traces = traces_since(window_start_ns - int(LIVE_LOOKBACK_S * 1e9))
    known = sum(1 for t in traces if t and min(s.start_ns for s in t) < window_start_ns)
    if known >= LIVE_REFERENCE_TRACES:
        return traces
    wider = [(min(s.start_ns for s in t), t) for t in
             traces_since(window_start_ns - int(LIVE_LOOKBACK_MAX_S * 1e9)) if t]  # fmt: skip
    before = sorted(start for start, _ in wider if start < window_start_ns)
    if len(before) <= known:
        return traces  # nothing more to learn from further back
    cutoff = before[-min(LIVE_REFERENCE_TRACES, len(before))]
    return [t for start, t in wider if start >= cutoff]


def localize(
    traces: Iterable[list[Span]],
    latency_threshold_ms: float = LATENCY_MS,
    top: int | None = None,
    baseline: Iterable[list[Span]] | None = None,
    onset_ns: int | None = None,
    focus: frozenset[str] | None = None,
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

    ``focus``: only these kinds of evidence order the services and make the
    confidence (``rank.rank``), on the same judgement of the same traces as
    without it (which reference, which method); when nothing of those kinds
    stands out, the whole ranking stands. The live Brain asks for failures
    alone when failures are all that Scout saw.
    """
    with paused_gc():
        window = views(traces)
        if not window:
            return []
        judgement, n, method, ranked = _judged(window, latency_threshold_ms, baseline, onset_ns)
        if focus is not None:
            focused = rank(judgement, n, method, focus)
            if focused and focused[0].evidence.get("explained_traces"):
                ranked = focused
        return ranked[:top] if top is not None else ranked


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


def _judged(
    window: list[TraceView],
    latency_threshold_ms: float,
    baseline: Iterable[list[Span]] | None,
    onset_ns: int | None,
) -> Judged:
    """The window judged against its reference (see :func:`localize`), and ranked."""
    if baseline is None and onset_ns is not None:
        near = _around_onset(window, onset_ns, latency_threshold_ms)
        if near is not None:
            return near
    if baseline is not None:
        reference = views(baseline, limit=MAX_REFERENCE_TRACES)
        if len(reference) >= MIN_REFERENCE_TRACES:
            return _ranked(judge(window, Reference.learn(reference)), len(window), "baseline")
    else:
        split = change_point(window)
        if split is not None:
            judged = _ranked(
                judge(window[split:], Reference.learn(window[:split])),
                len(window) - split,
                "change point",
            )
            ranked = judged[3]
            if ranked and ranked[0].evidence.get("explained_traces"):
                return judged
            # the change explains nothing: the static rules may
    return _ranked(judge_static(window, latency_threshold_ms), len(window), "static rules")
