"""The published RCA methods the rca benchmark compares against (``benchmarks/comparators.py``).

Each must rank every service of the incident exactly once, find the faulty
service in a clear-cut case of a generated system (``rca_synth``), and take
degenerate input (no baseline, one span) without raising.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

import pytest

from rca_synth import Style, System, SystemFault, random_system, system_window
from sre_space.telemetry.model import Span

import helpers

# benchmarks are scripts, not a package
sys.path.insert(0, str(helpers.ROOT / "benchmarks"))
import comparators

Method = Callable[[list[list[Span]], list[list[Span]]], list[str]]
METHODS: dict[str, Method] = {
    "microrank": comparators.microrank,
    "tracerca": comparators.tracerca,
    "simple_rule": comparators.simple_rule,
}
QUIET = Style(background_errors=0.0)  # no stray failures: the fault is the only one


def leaf_behind_cache(system: System) -> str:
    """A service that calls no one, now called on only half of the requests that could.

    Requests that take the same path without reaching it stay normal: the
    contrast every spectrum and itemset method needs (a service on every
    request of a path is indistinguishable from the path's other services).
    """
    callers = {op.service for op in system.operations if op.calls}
    target = next(s for s in system.services if s not in callers)
    for op in system.operations:
        for inv in op.calls:
            if inv.op.service == target:
                inv.probability = 0.5
    return target


def case(seed: int, kind: str) -> tuple[list[list[Span]], list[list[Span]], str]:
    rnd = random.Random(seed)
    system = random_system(rnd, 8)
    target = leaf_behind_cache(system)
    operation = sorted(op.name for op in system.operations if op.service == target)[0]
    baseline = system_window(rnd, system, 120, style=QUIET)
    fault = SystemFault(
        kind, target, rate=1.0, delay_ms=400.0, on_the_way_in=False, operation=operation
    )
    incident = system_window(rnd, system, 120, start_ms=1.8e12, fault=fault, style=QUIET)
    return incident, baseline, target


def services(traces: list[list[Span]]) -> set[str]:
    return {s.service for t in traces for s in t}


@pytest.mark.parametrize("seed", [2, 7, 11])
@pytest.mark.parametrize("name", list(METHODS))
def test_a_slow_leaf_ranks_first_and_every_service_once(name: str, seed: int) -> None:
    incident, baseline, target = case(seed, "latency")
    # CPU time, not wall time: on a loaded machine a wall clock measures the neighbours.
    t0 = time.process_time()
    ranked = METHODS[name](incident, baseline)
    took = time.process_time() - t0
    assert sorted(ranked) == sorted(services(incident))  # every service, each once
    assert ranked[0] == target, ranked[:3]
    assert took < 2.0  # a few thousand spans: far under the benchmark's 0.5 s per 10,000


@pytest.mark.parametrize("seed", [2, 7])
@pytest.mark.parametrize("name", ["tracerca", "simple_rule"])
def test_a_failing_leaf_ranks_first(name: str, seed: int) -> None:
    incident, baseline, target = case(seed, "error")
    ranked = METHODS[name](incident, baseline)
    assert sorted(ranked) == sorted(services(incident))
    assert ranked[0] == target, ranked[:3]


def test_microrank_reads_latency_only_but_still_ranks_everyone() -> None:
    incident, baseline, _ = case(2, "error")
    ranked = comparators.microrank(incident, baseline)
    assert sorted(ranked) == sorted(services(incident))


def test_rankings_are_deterministic() -> None:
    incident, baseline, _ = case(7, "latency")
    for method in METHODS.values():
        assert method(incident, baseline) == method(incident, baseline)


def one_span(service: str, *, error: bool = False, trace: str = "a" * 32) -> list[Span]:
    return [Span(trace, "1" * 16, None, service, "GET /", 0, 5_000_000, error=error)]


@pytest.mark.parametrize("name", list(METHODS))
def test_degenerate_input(name: str) -> None:
    method = METHODS[name]
    incident, baseline, _ = case(11, "latency")
    # no baseline at all
    assert sorted(method(incident, [])) == sorted(services(incident))
    # a single-span trace, against a baseline or none, failing or not
    assert method([one_span("solo")], baseline) == ["solo"]
    assert method([one_span("solo", error=True)], []) == ["solo"]
    assert method([one_span("solo")], [one_span("solo", trace="b" * 32)]) == ["solo"]
    # nothing happened
    assert method([], baseline) == []
    assert method([[]], []) == []
