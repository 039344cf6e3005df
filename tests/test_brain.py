"""The Brain's choice among the ranked causes, given what Scout saw (pure: no process)."""

from __future__ import annotations

from typing import Any

from sre_space.rca.candidate import Candidate
from sre_space.squad.brain import failures_first


def cand(service: str, cls: str, *kinds: str, exception: str = "") -> Candidate:
    evidence: dict[str, Any] = {"signals": [{"kind": k, "span": {"service": service}} for k in kinds]}
    if exception:
        evidence["exception"] = exception
    return Candidate(service, "op", 1.0, cls, evidence, 0.3)


def scout(*kinds: str) -> list[dict[str, Any]]:
    return [{"service": "front", "operation": "GET /", "kind": k} for k in kinds]


def test_an_answer_that_explains_no_failure_is_passed_over_when_scout_saw_only_failures() -> None:
    slow = cand("checkout", "cpu", "latency", "structure")
    failing = cand("payments", "error", "error", exception="KeyError: 'currency'")
    other = cand("frontend", "latency", "latency")
    ranked = failures_first([slow, other, failing], scout("error", "error"))
    assert [c.service for c in ranked] == ["payments", "checkout", "frontend"]
    assert ranked[0].confidence == 0.3  # its own confidence: a weak answer still asks a person


def test_a_slow_cause_stands_when_it_explains_the_failures_or_scout_saw_slowness() -> None:
    timeouts = cand("checkout", "cpu", "error", "latency")  # the callers' timeouts are its own
    failing = cand("payments", "error", "error")
    assert failures_first([timeouts, failing], scout("error"))[0] is timeouts
    slow = cand("checkout", "cpu", "latency")
    assert failures_first([slow, failing], scout("error", "latency"))[0] is slow
    assert failures_first([slow, failing], [])[0] is slow  # offline: no Scout
    assert failures_first([slow, cand("db", "latency", "latency")], scout("error"))[0] is slow
