"""Incidents through a real squad: concurrent faults, and one fault's whole lifecycle.

Two independent faults while the squad is busy: two incidents, each with its
own cause. A real mind (Scout's thread, the squad's LangGraph graph, the incident log and
memory) receives the traces of rca_synth's shop, written into its store as
they happen. Catalog slows down in its own work: the squad diagnoses it and
the Fixer restarts it through an ``exec`` target whose program blocks until
the test opens a gate, so the squad is held inside that incident. Meanwhile
payments starts failing behind the same front door: Scout must open an
incident for it at once, and once the squad is free the Brain must name
payments for it (catalog is still slow: the other incident's cause).

One fault's lifecycle: a restart that holds while the fault goes on, weaker, is
the same incident, degraded; quiet, it resolves; the same fault later is a new
incident marked as a recurrence of the first.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rca_synth import Fault
from sre_space.config import Settings
from sre_space.incidents import Incident
from sre_space.mind import Mind
from sre_space.rca.localize import LIVE_LOOKBACK_S
from sre_space.vocabulary import ACTIONS

from helpers import Shop, wait_until

GATE = """
import pathlib, sys, time
here = pathlib.Path(sys.argv[1])
(here / "started").write_text("")
deadline = time.monotonic() + 300
while not (here / "gate").exists() and time.monotonic() < deadline:
    time.sleep(0.05)
print("{}")
"""
NOOP = 'print("{}")'


def host(tmp_path: Path, **overrides: object) -> Mind:
    """A mind whose Fixer acts on catalog through an exec target: the gate program."""
    home = tmp_path / "home"
    home.mkdir()
    gate, noop = tmp_path / "gate.py", tmp_path / "noop.py"
    gate.write_text(GATE)
    noop.write_text(NOOP)
    acts = "\n".join(f'actions.{a} = ["{sys.executable}", "{gate}", "{tmp_path}"]' for a in ACTIONS)
    undos = "\n".join(f'undo.{a} = ["{sys.executable}", "{noop}"]' for a in ACTIONS)
    (home / "targets.toml").write_text(
        f'[catalog]\nkind = "exec"\ntimeout_s = 300\n{acts}\n{undos}\n'
    )
    settings = Settings(
        **{
            "home": home,
            "otlp_http_port": 0,
            "otlp_grpc_port": -1,
            "policy": "auto",
            "detect_window_s": 5.0,
            "verify_timeout_s": 5.0,  # a restart that cannot help is judged soon
            **overrides,
        }
    )
    return Mind(settings).start()


@pytest.fixture
def mind(tmp_path: Path) -> Iterator[Mind]:
    mind = host(tmp_path)
    try:
        yield mind
    finally:
        (tmp_path / "gate").write_text("")  # never leave the squad blocked
        mind.stop()


def healthy(mind: Mind) -> None:
    """Healthy first: the Brain's reference for normal, the detector's baseline."""
    wait_until(lambda: len(mind.store.traces_since(0)) >= 100, 120, what="10 s of healthy traffic")


@contextlib.contextmanager
def journal_on_failure(mind: Mind) -> Iterator[None]:
    """A failed assertion says what the squad said (the incident log's events)."""
    try:
        yield
    except AssertionError as exc:
        said = "\n".join(
            f"{e.ts:.1f} {e.agent} {e.incident_id}: {e.message}" for e in mind.log.events(0)
        )
        raise AssertionError(f"{exc}\n{said}") from None


def cause_of(mind: Mind, service: str) -> Incident | None:
    return next(
        (i for i in mind.log.list(limit=50) if i.root_cause.get("service") == service), None
    )


def test_a_second_fault_opens_its_own_incident_while_the_squad_is_busy(
    mind: Mind, tmp_path: Path
) -> None:
    with Shop(mind, seed=7) as shop, journal_on_failure(mind):
        healthy(mind)
        shop.fault = Fault(own_ms={"catalog": 1000.0})
        first = wait_until(lambda: cause_of(mind, "catalog"), 180, what="catalog diagnosed")
        # The Fixer acts: its program holds the squad inside the first incident.
        wait_until((tmp_path / "started").exists, 180, interval=0.2, what="the restart running")
        busy_since = time.time()
        shop.fault = Fault(own_ms={"catalog": 1000.0}, error="payments")

        def opened_meanwhile() -> Incident | None:
            return next((i for i in mind.log.since(busy_since) if i.id != first.id), None)

        second = wait_until(opened_meanwhile, 120, what="payments' incident opened")
        # Opened while the squad is still inside the first incident's action.
        assert not (tmp_path / "gate").exists()
        held = mind.log.get(first.id)
        assert held is not None and held.status == "mitigating"
        assert second.status == "open" and second.detected_at >= busy_since
        (tmp_path / "gate").write_text("")
        # The squad goes on: the restart did not help (catalog is still slow), and
        # the second incident is diagnosed on its own evidence while it is.
        diagnosed = wait_until(
            lambda: (i := mind.log.get(second.id)) is not None and i.root_cause and i,
            180,
            what="the second incident diagnosed",
        )
    assert diagnosed.root_cause["service"] == "payments"
    done = mind.log.get(first.id)
    assert done is not None and done.root_cause["service"] == "catalog"
    assert done.status != "mitigating"


def status_of(mind: Mind, incident_id: str, *statuses: str) -> Incident | None:
    found = mind.log.get(incident_id)
    return found if found is not None and found.status in statuses else None


def test_a_fix_that_holds_is_degraded_then_resolved_and_the_fault_again_recurs(
    tmp_path: Path,
) -> None:
    (tmp_path / "gate").write_text("")  # the restart returns at once
    # No cooldown: the same fault comes back within a minute of the first restart.
    mind = host(tmp_path, policy_cooldown_s=0.0, verify_timeout_s=60.0, verify_window_s=2.0)
    try:
        with Shop(mind, seed=7) as shop, journal_on_failure(mind):
            healthy(mind)
            start = time.time()
            shop.fault = Fault(own_ms={"catalog": 1000.0})
            wait_until((tmp_path / "started").exists, 180, interval=0.2, what="the restart")
            # The restart helps: no request over the 800 ms rule, but catalog is still
            # slower than it was (the fault goes on, weaker).
            shop.fault = Fault(own_ms={"catalog": 300.0})
            first = wait_until(
                lambda: next(iter(mind.log.since(start)), None), 30, what="the incident"
            )
            degraded = wait_until(
                lambda: status_of(mind, first.id, "degraded"), 180, what="degraded"
            )
            assert degraded.root_cause["service"] == "catalog"
            assert degraded.residual and degraded.residual[0]["service"] == "catalog"
            moves = [(a["from"], a["to"]) for a in degraded.audit if a.get("step") == "status"]
            assert ("mitigating", "mitigated") in moves and ("mitigated", "degraded") in moves
            assert [i.id for i in mind.log.since(start)] == [first.id]  # one fault, one incident
            shop.fault = Fault()
            stopped = time.time()
            wait_until(lambda: status_of(mind, first.id, "resolved"), 180, what="resolved")
            assert [i.id for i in mind.log.since(start)] == [first.id]
            # The same fault on the same healthy reference as the first time: the Brain
            # compares with the minute before the window, which must not hold the fault.
            time.sleep(max(0.0, stopped + LIVE_LOOKBACK_S + 2 - time.time()))
            again_at = time.time()
            shop.fault = Fault(own_ms={"catalog": 1000.0})
            again = wait_until(
                lambda: next((i for i in mind.log.since(again_at) if i.recurs), None),
                180,
                what="the recurrence",
            )
        assert again.id != first.id and again.recurs == first.id
        assert again.root_cause["service"] == "catalog"
    finally:
        mind.stop()
