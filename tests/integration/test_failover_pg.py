"""Failover for real: the leader killed (SIGKILL) between `apply` and its verdict.

The leader is a process holding the lease on a real PostgreSQL, running the
squad's graph on the shared log and checkpointer, acting through an exec
target whose action is a real program; the standby is a real Mind (its own
home, the same state URL). One run of ``benchmarks/failover.py``: the standby
takes the lease once the dead leader's term runs out, finds the incident
``mitigating`` and verifies it again from the shared checkpoint; it never
applies the change a second time. Unhealthy afterwards, it undoes it. A change
awaiting a person's approval when the leader dies waits on the new leader, which
applies it once approved, under its own lease epoch.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pg_helpers import pg_url
from sre_space.state.url import StateUrl

import helpers

__all__ = ["pg_url"]

sys.path.insert(0, str(helpers.ROOT / "benchmarks"))  # scripts, not a package
import failover

TERM_S = 3.0


@pytest.mark.parametrize("healthy", [True, False], ids=["verified", "undone"])
def test_the_standby_verifies_what_the_killed_leader_applied(
    pg_url: StateUrl, tmp_path: Path, healthy: bool
) -> None:
    run = failover.one_run(pg_url, tmp_path, TERM_S, healthy=healthy)
    assert run.takeover_s is not None  # the standby took the lease (within the waits' deadlines)
    assert run.applies == 1 and run.epochs == [1]  # applied once, by the dead leader; never again
    assert run.steps[run.steps.index("applied") :][:3] == ["applied", "resumed", "verified"]
    actions = (tmp_path / "actions.log").read_text().split()
    if healthy:
        assert run.status in ("mitigated", "resolved") and actions == ["scale-3"]
    else:
        assert run.status == "escalated" and run.outcome == "undone"
        assert actions == ["scale-3", "unscale"]  # the new leader's undo, under its lease


def test_a_change_awaiting_approval_waits_on_the_new_leader_and_is_applied_once(
    pg_url: StateUrl, tmp_path: Path
) -> None:
    run = failover.one_run(pg_url, tmp_path, TERM_S, policy="approve")
    assert run.takeover_s is not None
    assert run.applies == 1 and run.epochs == [2]  # applied by the new leader, under its epoch
    assert "human:approve" in run.steps and run.status in ("mitigated", "resolved"), run.steps
    assert (tmp_path / "actions.log").read_text().split() == ["scale-3"]
