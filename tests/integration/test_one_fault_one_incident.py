"""One fault, one incident: what opened duplicates, and what must still open.

The tracker on a simulated clock (the shop of test_incident_lifecycle: a
gateway in front of catalog, pricing, orders and payments; catalog reads a
database), each case a pattern measured by ``benchmarks/duplicates.py``:

- an anomaly at the cause the Brain just named, still waiting for
  confirmation, opened a second incident for it;
- a drop at a callee that passed its drop on to its own callees was not
  joined to the drop beside it, from the same caller;
- an escalated incident that went quiet was let go, and its cause, still
  failing, opened a new incident;
- an incident that went quiet while the squad still worked on it was not
  there for its cause to join;
- an ambiguous opening was decided before the open incident's Brain had
  named its cause.

Then a real mind restarted on a home where the previous one left incidents:
their cause, still failing, is theirs (the spans are rca_synth's shop,
written into the mind's store as they happen).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rca_synth import Fault
from sre_space.config import Settings
from sre_space.detect.tracker import IncidentTracker
from sre_space.detect.window import Signal
from sre_space.incidents import Incident, IncidentLog
from sre_space.mind import Mind

from helpers import SHOP, Shop, sig, wait_until


def tick(tracker: IncidentTracker, now: float, *signals: Signal) -> list[tuple[str, int]]:
    return [(c.what, c.incident.id) for c in tracker.update(list(signals), SHOP, now)]


def test_an_anomaly_at_the_cause_the_brain_named_is_that_incident_before_it_opens() -> None:
    tracker = IncidentTracker(confirm_s=1, quiet_s=30, link_s=10)
    tick(tracker, 0, sig("pricing", "latency"))
    [(what, first)] = tick(tracker, 1, sig("pricing", "latency"))
    assert what == "opened"
    opened = tracker.active()[0]
    opened.busy = True  # handed to the squad
    # Orders turns slow too, and waits for confirmation, when the Brain names it.
    assert tick(tracker, 1.5, sig("pricing", "latency"), sig("orders", "latency")) == []
    assert len(tracker.incidents) == 2
    assert tracker.attribute(opened, "orders", 2) is opened
    assert tracker.incidents == [opened] and opened.origins == {"pricing", "orders"}
    assert tick(tracker, 2.5, sig("pricing", "latency"), sig("orders", "latency")) == []
    assert tick(tracker, 5, sig("orders", "latency")) == []
    assert [i.id for i in tracker.incidents] == [first]


def test_a_drop_passed_on_to_callees_beside_a_sibling_drop_is_one_incident() -> None:
    """The gateway calls less of everything (its requests end early): one incident."""
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    drops = [sig("catalog", "traffic"), sig("orders", "traffic"), sig("payments", "traffic")]
    changes = tick(tracker, 0, *drops)
    assert [what for what, _ in changes] == ["opened"]
    [one] = tracker.active()
    assert one.services == {"catalog", "orders", "payments"}
    # A drop at a callee beside a failing one is still its own.
    other = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    failing = [sig("catalog", "traffic"), sig("orders", "traffic"), sig("payments", "error")]
    assert [what for what, _ in tick(other, 0, *failing)] == ["opened", "opened"]


def test_an_escalated_incident_that_went_quiet_takes_its_cause_back() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [(_, first)] = tick(tracker, 0, sig("pricing", "latency"))
    incident = tracker.active()[0]
    tracker.settled(incident, "watching", 1)  # escalated: a human has it
    assert tick(tracker, 31) == [("resolved", first)]  # quiet: watched only for its cause
    # The same kind of trouble at its cause: that incident again, not a new one.
    assert tick(tracker, 60, sig("pricing", "latency")) == [("again", first)]
    assert tracker.active() == [incident] and len(tracker.incidents) == 1
    assert tick(tracker, 91) == [("resolved", first)]
    # Failures where it was only slow: another fault, its own incident.
    [(what, second)] = tick(tracker, 100, sig("pricing", "error"))
    assert what == "opened" and second != first
    # A different cause beside it: its own incident too.
    [(what, third)] = tick(tracker, 101, sig("pricing", "error"), sig("payments", "latency"))
    assert what == "opened" and third not in (first, second)


def test_long_after_an_escalated_incident_went_quiet_its_cause_is_a_new_incident() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10, again_s=60)
    [(_, first)] = tick(tracker, 0, sig("pricing", "latency"))
    tracker.settled(tracker.active()[0], "watching", 1)
    assert tick(tracker, 31) == [("resolved", first)]
    [(what, later)] = tick(tracker, 92, sig("pricing", "latency"))
    assert what == "opened" and later != first


def test_a_mitigated_incident_that_went_quiet_is_resolved_and_its_cause_recurs() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [(_, first)] = tick(tracker, 0, sig("pricing", "latency"))
    tracker.settled(tracker.active()[0], "mitigated", 1)
    assert tick(tracker, 31) == [("resolved", first)]
    [(what, again)] = tick(tracker, 40, sig("pricing", "latency"))
    assert what == "opened" and again != first


def test_an_incident_the_squad_works_on_does_not_resolve_and_keeps_its_cause() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [(_, first)] = tick(tracker, 0, sig("catalog", "latency"), sig("db", "latency"))
    incident = tracker.active()[0]
    incident.busy = True  # a long verification: 40 s without anomalies of its own
    assert tick(tracker, 40) == []
    assert tick(tracker, 41, sig("db", "latency")) == []  # its cause again: still that incident
    assert tracker.active() == [incident] and len(tracker.incidents) == 1
    tracker.settled(incident, "mitigated", 45)
    assert not incident.busy
    assert tick(tracker, 75) == [("resolved", first)]


def test_an_ambiguous_opening_awaits_the_brains_answer() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tick(tracker, 0, sig("gateway"), sig("catalog"))
    working = tracker.active()[0]
    working.busy = True
    [(what, _)] = tick(tracker, 1, sig("gateway"), sig("catalog"), sig("db", "latency"))
    assert what == "opened"
    beside = next(i for i in tracker.active() if i is not working)
    assert tracker.ambiguous(beside, SHOP) == "beside"
    assert tracker.awaits_brain(beside, SHOP) is working  # no cause named yet
    tracker.attribute(working, "catalog", 2)
    assert tracker.awaits_brain(beside, SHOP) is None  # named: Scout's look decides
    working.busy = False
    working.cause = ""
    assert tracker.awaits_brain(beside, SHOP) is None  # the squad is done with it


def test_the_mind_opens_an_ambiguous_anomaly_only_once_the_cause_is_named(tmp_path: Path) -> None:
    """Scout's side: the opening waits (confirmed again later), then is decided."""
    mind = Mind(
        Settings(home=tmp_path / "home", otlp_http_port=0, otlp_grpc_port=-1, detect_window_s=5.0)
    )
    try:
        tracker, edges = mind.tracker, set(SHOP)
        tick(tracker, 0, sig("gateway"), sig("catalog"))
        assert [w for w, _ in tick(tracker, 1, sig("gateway"), sig("catalog"))] == ["opened"]
        working = tracker.active()[0]
        working.busy, working.ref = True, "INC-WORKING"  # the squad's; the Brain not done
        tick(tracker, 2, sig("gateway"), sig("catalog"), sig("db", "latency"))
        [change] = tracker.update([sig("gateway"), sig("catalog"), sig("db", "latency")], SHOP, 3)
        assert change.what == "opened"
        mind._opened(change.incident, 3, edges)
        assert change.incident.opened_at is None and mind.log.list() == []  # it waits
        tracker.attribute(working, "db", 4)  # the Brain: db is the cause of that incident
        assert tracker.incidents == [working]  # the waiting anomaly was that cause: never opens
        assert mind.log.list() == []
    finally:
        mind.log.close()
        mind.alerts.close()


def test_a_slow_brain_is_waited_for_past_one_window_but_not_for_ever(tmp_path: Path) -> None:
    """A starved host: the Brain's answer takes longer than a detection window."""
    window = 5.0
    mind = Mind(
        Settings(home=tmp_path / "home", otlp_http_port=0, otlp_grpc_port=-1, detect_window_s=window)
    )
    try:
        tracker, edges = mind.tracker, set(SHOP)
        tick(tracker, 0, sig("gateway"), sig("catalog"))
        tick(tracker, 1, sig("gateway"), sig("catalog"))
        working = tracker.active()[0]
        working.busy, working.ref = True, "INC-WORKING"  # the squad's; the Brain not done
        tick(tracker, 2, sig("gateway"), sig("catalog"), sig("db", "latency"))
        [change] = tracker.update([sig("gateway"), sig("catalog"), sig("db", "latency")], SHOP, 3)
        beside = change.incident
        late = beside.first_seen + 2 * window  # two windows on, still no answer: it waits
        mind._opened(beside, late, edges)
        assert beside.opened_at is None and mind.log.list() == []
        # Past the wait, Scout's own look decides (here: nothing stands out, its own).
        mind._opened(beside, beside.first_seen + mind.settings.brain_wait_s, edges)
        assert [i.id for i in mind.log.list()] == [beside.ref]
    finally:
        mind.log.close()
        mind.alerts.close()


# --- a restarted mind ----------------------------------------------------------------


def _left(home: Path, status: str) -> str:
    """An incident a killed mind left: catalog slow in its own work, found by the Brain."""
    log = IncidentLog(home / "incidents.db")
    incident = Incident(id=log.new_id(), status=status, detected_at=time.time() - 20)
    incident.signature = "catalog|GetProduct|latency|"
    incident.root_cause = {
        "service": "catalog",
        "operation": "GetProduct",
        "fault_class": "latency",
        "confidence": 0.8,
        "evidence": {},
    }
    if status == "mitigating":  # killed inside the Fixer's call: resumed, and escalated
        incident.remediation = {"action": "restart", "service": "catalog", "outcome": "pending"}
    log.save(incident)
    log.close()
    return incident.id


@pytest.mark.parametrize("status", ["mitigating", "mitigated"])
def test_a_restarted_mind_keeps_the_cause_of_what_the_previous_one_left(
    home: Path, status: str
) -> None:
    left = _left(home, status)
    settings = Settings(
        home=home,
        otlp_http_port=0,
        otlp_grpc_port=-1,
        policy="dry-run",
        detect_window_s=5.0,
    )
    mind = Mind(settings).start()
    try:
        with Shop(mind, seed=11) as shop:
            wait_until(lambda: len(mind.store.traces_since(0)) >= 50, 120, what="healthy traffic")
            start = time.time()
            shop.fault = Fault(own_ms={"catalog": 1000.0})  # the fault goes on

            def seen_by_left() -> bool:
                if status == "mitigated":  # the fix holds, the cause still shows
                    found = mind.log.get(left)
                    return found is not None and found.status == "degraded"
                return any(  # escalated by the resume: Scout still watches its cause
                    e.incident_id == left and e.agent == "scout" and "spreading" in e.message
                    for e in mind.log.events(0, limit=10_000)
                )

            wait_until(seen_by_left, 120, interval=0.2, what=f"the {status} incident's cause")
            # Scout keeps looking with catalog slow, long enough to confirm an opening.
            with mind._guard:
                [tracked] = [t for t in mind.tracker.incidents if t.ref == left]
            seen = tracked.cause_seen
            wait_until(lambda: tracked.cause_seen >= seen + 2.0, 60, what="two more seconds")
        assert [i.id for i in mind.log.since(start - 60)] == [left], [
            (e.incident_id, e.message) for e in mind.log.events(0, limit=10_000)
        ]
    finally:
        mind.stop()
