"""The Brain's ranking, given what Scout saw (pure: no process).

A small shop, frontend -> checkout -> inventory, then -> payments, a minute of
normal and then, from the onset, payments failing on a share of its calls
with a new exception while checkout and frontend are slower at their own
work (a busy host, retries, error handling): what the lab showed when its
drills waited for a warm Scout.
"""

from __future__ import annotations

import random
from typing import Any

from sre_space.squad.brain import failures_first
from sre_space.telemetry.model import Span, SpanEvent, SpanKind

from helpers import span

MS = 1_000_000
CLIENT = SpanKind.CLIENT


def _trace(
    i: int, t: float, rng: random.Random, own: float, fails: bool, inv_delay: float = 0.0
) -> list[Span]:
    """One checkout from ``t`` (ms); ``own`` scales frontend's and checkout's own work."""
    fe_own, co_own = 2 * own * rng.uniform(0.8, 1.2), 3 * own * rng.uniform(0.8, 1.2)
    inv, pay = 3 * rng.uniform(0.8, 1.2) + inv_delay, 5 * rng.uniform(0.8, 1.2)
    s_fc = t + fe_own / 2
    s_co = s_fc + 0.3
    s_ic = s_co + co_own / 2
    e_inv = s_ic + 0.3 + inv
    s_pc = e_inv + 0.4
    e_pay = s_pc + 0.3 + pay
    e_co = e_pay + 0.3 + co_own / 2
    e_fe = e_co + 0.3 + fe_own / 2
    # (service, name, start ms, end ms, parent's n, kind, failed), n = its place from 1
    shape = [
        ("frontend", "POST /api/checkout", t, e_fe, None, SpanKind.SERVER, fails),
        ("frontend", "POST", s_fc, e_co + 0.3, 1, CLIENT, fails),
        ("checkout", "POST /checkout", s_co, e_co, 2, SpanKind.SERVER, fails),
        ("checkout", "GET", s_ic, e_inv + 0.3, 3, CLIENT, False),
        ("inventory", "GET /reserve", s_ic + 0.3, e_inv, 4, SpanKind.SERVER, False),
        ("checkout", "POST", s_pc, e_pay + 0.3, 3, CLIENT, fails),
        ("payments", "POST /charge", s_pc + 0.3, e_pay, 6, SpanKind.SERVER, fails),
    ]
    trace = [
        span(svc, name, a / 1e3, b - a, error=bad, trace=i, n=n, parent=parent, kind=kind)
        for n, (svc, name, a, b, parent, kind, bad) in enumerate(shape, start=1)
    ]
    if fails:  # the exception payments raised, as an instrumentation records it
        attrs = {"exception.type": "KeyError", "exception.message": "'currency'"}
        trace[-1].events.append(SpanEvent("exception", 0, attrs))
    return trace


def shop(own: float, fail_share: float, seed: int = 3) -> tuple[list[list[Span]], int]:
    """300 normal checkouts, then 300 from the onset on; (traces, onset in ns)."""
    rng = random.Random(seed)
    traces = [_trace(i, 1.7e12 + 100 * i, rng, 1.0, False) for i in range(300)]
    onset = 1.7e12 + 100 * 300
    traces += [
        _trace(i, 1.7e12 + 100 * i, rng, own, rng.random() < fail_share) for i in range(300, 600)
    ]
    return traces, int(onset * MS)


def scout(*kinds: str) -> list[dict[str, Any]]:
    return [{"service": "frontend", "operation": "POST /api/checkout", "kind": k} for k in kinds]


def test_failures_alone_rank_when_failures_are_all_scout_saw() -> None:
    traces, onset = shop(own=1.6, fail_share=0.15)
    mixed = failures_first(traces, 800.0, onset, scout("error", "latency"))
    assert mixed[0].service == "checkout"  # slower in its own work at every call
    ranked = failures_first(traces, 800.0, onset, scout("error", "error"))
    top = ranked[0]
    assert (top.service, top.fault_class) == ("payments", "error")
    assert "currency" in top.exception
    # The confidence the failures give, as if nothing else had changed: above
    # the Fixer's 0.45, where counted with the slowdown it was a coin toss.
    clean, _ = shop(own=1.0, fail_share=0.15)
    alone = failures_first(clean, 800.0, onset, scout("error"))[0]
    assert alone.service == "payments"
    assert top.confidence == alone.confidence >= 0.45


def test_without_a_failure_to_rank_the_whole_ranking_stands() -> None:
    traces, onset = shop(own=2.0, fail_share=0.0)  # Scout's errors are from elsewhere
    ranked = failures_first(traces, 800.0, onset, scout("error"))
    assert ranked[0].service in ("checkout", "frontend")
    assert ranked[0].fault_class in ("latency", "cpu")


def test_a_service_blamed_only_where_its_spans_are_missing_ranks_on_failures_too() -> None:
    """Its only evidence is a wait with no span of its own, of a kind out of focus."""
    traces, onset = shop(own=1.0, fail_share=0.15)
    for trace in traces[300:]:
        served = next(s for s in trace if s.service == "inventory")
        trace.remove(served)  # inventory answered, but exported nothing (say, its exporter died)
        asked = next(s for s in trace if s.name == "GET")
        asked.end_ns += 40 * MS  # and checkout waited on it longer
    ranked = failures_first(traces, 800.0, onset, scout("error"))
    assert ranked[0].service == "payments"
    assert "inventory" in {c.service for c in ranked}


def test_a_change_where_nothing_failed_or_slowed_is_not_the_faults_start() -> None:
    """A callee slowed 25 s after its caller began to spend more of its own time.

    50 checkouts a second: a minute of normal; then checkout spends more of
    its own time (a busy host, a service the squad changed), with no request
    failing or slow; 25 s later inventory answers 1.2 s late, and the Brain
    looks 2 s in: too few traces of the fault to split the window at, so
    the change point finds checkout's change, long and clear. It is not
    where Scout's slow requests began.
    """
    rng = random.Random(5)

    def at(i: int) -> float:  # ms
        return 1.7e12 + 20 * i

    traces = [_trace(i, at(i), rng, 1.0, False) for i in range(3000)]
    traces += [_trace(i, at(i), rng, 1.8, False) for i in range(3000, 4250)]
    traces += [_trace(i, at(i), rng, 1.8, False, inv_delay=1200) for i in range(4250, 4350)]
    onset = int(at(4250) * MS)
    slow = [{"service": "checkout", "operation": "POST /checkout", "kind": "slow"}]
    top = failures_first(traces, 800.0, onset, slow)[0]
    assert (top.service, top.fault_class) == ("inventory", "latency")
    assert top.evidence["method"] == "onset"
    # A fault that began before the detector's onset (slow requests at
    # inventory from the change on): the change point is its start.
    building = [_trace(i, at(i), rng, 1.0, False) for i in range(3000)]
    building += [
        _trace(i, at(i), rng, 1.0, False, inv_delay=1200 if rng.random() < 0.4 else 0)
        for i in range(3000, 4350)
    ]
    top = failures_first(building, 800.0, onset, slow)[0]
    assert (top.service, top.evidence["method"]) == ("inventory", "change point")
