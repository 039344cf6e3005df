"""Incidents grouped by cause, and their lifecycle after the squad, on a simulated clock.

The shop: a gateway in front of catalog, pricing, orders and payments; catalog
reads a database. Every request passes through the gateway, so the gateway is
anomalous in every fault: it must not make later faults part of the first.
"""

from __future__ import annotations

from pathlib import Path

from sre_space.detect.tracker import IncidentTracker
from sre_space.incidents import Incident, IncidentLog

from helpers import SHOP, sig


def tick(tracker: IncidentTracker, now: float, *services: str) -> list[tuple[str, int]]:
    return [(c.what, c.incident.id) for c in tracker.update([sig(s) for s in services], SHOP, now)]


def test_a_second_fault_behind_the_same_gateway_opens_its_own_incident() -> None:
    tracker = IncidentTracker(confirm_s=2, quiet_s=30, link_s=10)
    tick(tracker, 0, "gateway", "catalog", "db")
    [(what, first)] = tick(tracker, 2, "gateway", "catalog", "db")
    assert what == "opened"
    [one] = tracker.active()
    assert one.origin == "db" and one.services == {"gateway", "catalog", "db"}
    tracker.settled(one, "watching", 3)  # escalated: a human has it, Scout still watches
    # Payments hangs while the first fault goes on: two causes, two incidents.
    assert tick(tracker, 4, "gateway", "catalog", "db", "orders", "payments") == []
    [(what, second)] = tick(tracker, 6, "gateway", "catalog", "db", "orders", "payments")
    assert what == "opened" and second != first
    two = tracker.active()[1]
    assert two.origin == "payments" and two.services == {"gateway", "orders", "payments"}
    assert one.services == {"gateway", "catalog", "db"}  # nothing of payments' folded in


def test_after_the_cause_went_quiet_a_shared_caller_alone_is_a_new_incident() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [(_, first)] = tick(tracker, 0, "gateway", "catalog")
    assert tick(tracker, 5, "gateway") == []  # catalog flickered: still its cascade
    assert tick(tracker, 25, "gateway") == [("opened", first + 1)]  # 20 s after: another cause


def test_the_brains_root_cause_folds_a_second_view_of_the_same_cause() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tick(tracker, 0, "gateway", "catalog")
    first = tracker.active()[0]
    tick(tracker, 25, "gateway")  # ambiguous: the gateway is catalog's caller
    second = tracker.active()[1]
    assert tracker.attribute(second, "catalog", 25) is first
    assert tracker.active() == [first]
    third = tracker.update([sig("pricing")], SHOP, 26)[0].incident
    assert tracker.attribute(third, "pricing", 26) is third and third.cause == "pricing"


def test_a_mitigated_incident_whose_cause_still_shows_is_degraded_not_new() -> None:
    tracker = IncidentTracker(confirm_s=2, quiet_s=30, link_s=10)
    tick(tracker, 0, "gateway", "catalog", "db")
    [(_, first)] = tick(tracker, 2, "gateway", "catalog", "db")
    incident = tracker.active()[0]
    tracker.attribute(incident, "catalog", 2)  # the Brain: catalog's pool
    tracker.settled(incident, "mitigated", 40)  # the squad took a while; the fix holds
    assert tick(tracker, 43, "catalog") == [("degraded", first)]  # 3 s later, weaker
    assert incident.state == "degraded" and [s.service for s in incident.signals] == ["catalog"]
    assert tick(tracker, 50, "db") == []  # still the same incident, nothing new
    assert len(tracker.incidents) == 1
    assert tick(tracker, 79, ) == []  # not yet quiet for 30 s
    assert tick(tracker, 80) == [("resolved", first)]
    # The same cause after resolution: a new incident (the log marks it a recurrence).
    assert tick(tracker, 81, "catalog") == []
    [(what, again)] = tick(tracker, 83, "catalog")
    assert what == "opened" and again != first


def test_another_kind_of_trouble_at_a_mitigated_cause_is_a_new_fault() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [(_, slow)] = [
        (c.what, c.incident.id) for c in tracker.update([sig("payments", "latency")], SHOP, 0)
    ]
    incident = tracker.active()[0]
    tracker.settled(incident, "mitigated", 5)  # a circuit opened in front of it
    # The circuit stops calls to it: fewer requests there is the fix, not a fault.
    assert tracker.update([sig("payments", "traffic")], SHOP, 6)[0].what == "degraded"
    # A bad release there later raises errors: another fault, its own incident.
    [change] = tracker.update([sig("payments", "error")], SHOP, 20)
    assert (change.what, change.incident.origin) == ("opened", "payments")
    assert change.incident.id != slow


def test_a_degraded_incident_whose_fault_ended_takes_no_later_fault_as_its_own() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [release] = tracker.update([sig("gateway"), sig("orders"), sig("payments")], SHOP, 0)
    first = release.incident
    assert first.origin == "payments"
    tracker.attribute(first, "orders", 1)  # the Brain named the caller: a wrong guess
    tracker.settled(first, "mitigated", 10)  # orders restarted; payments' release still fails
    [weaker] = tracker.update([sig("payments")], SHOP, 12)
    assert (weaker.what, weaker.incident) == ("degraded", first)
    assert tracker.update([sig("payments")], SHOP, 18) == []  # the fault goes on: the same
    # The bad release is rolled back at 19; 15 s later orders crashes. Degraded
    # must not swallow it: nobody would act on it, and nobody would be told.
    [crash] = tracker.update([sig("gateway"), sig("orders")], SHOP, 34)
    assert crash.what == "opened" and crash.incident is not first
    assert tracker.attribute(crash.incident, "orders", 35) is crash.incident
    # The degraded one resolves on its own quiet (its fault ended at 19), the crash goes on.
    changes = tracker.update([sig("gateway"), sig("orders")], SHOP, 49)
    assert [(c.what, c.incident) for c in changes] == [("resolved", first)]
    assert tracker.active() == [crash.incident]


def test_a_degraded_incident_behind_the_squads_workaround_keeps_its_cause_through_quiet() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [slow] = tracker.update([sig("payments", "latency")], SHOP, 0)
    incident = slow.incident
    incident.masked = True  # a circuit opened in front of payments
    tracker.settled(incident, "mitigated", 5)
    assert tracker.update([sig("payments", "traffic")], SHOP, 6)[0].what == "degraded"
    # Quiet behind the circuit, then a half-open trial lets calls through: the same fault.
    assert tracker.update([sig("payments", "latency")], SHOP, 25) == []
    assert tracker.active() == [incident]


def test_fewer_calls_from_a_slowed_caller_are_its_incident_a_failing_or_vanished_callee_not() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [opened] = tracker.update([sig("gateway", "latency"), sig("catalog", "latency")], SHOP, 0)
    incident = opened.incident
    tracker.settled(incident, "watching", 5)
    # The slowed gateway sends less to orders (its clients wait): part of this incident.
    [grew] = tracker.update([sig("orders", "traffic")], SHOP, 20)
    assert (grew.what, grew.incident) == ("grew", incident) and "orders" in incident.services
    # ... and so is pricing, seen with the slow gateway in front of it.
    [grew] = tracker.update([sig("gateway", "slow"), sig("pricing", "traffic")], SHOP, 21)
    assert (grew.what, grew.incident) == ("grew", incident) and len(tracker.active()) == 1
    # pricing hanging: fewer calls finish there, and its callers fail. Its own fault.
    [hang] = tracker.update([sig("gateway", "error"), sig("pricing", "traffic")], SHOP, 22)
    assert hang.what == "opened" and hang.incident.origin == "pricing"
    # payments vanishes while orders fails calling it: a fault of its own.
    [change] = tracker.update([sig("payments", "structure"), sig("orders", "error")], SHOP, 23)
    assert change.what == "opened" and change.incident not in (incident, hang.incident)


def test_a_cause_that_never_went_quiet_is_one_fault_changing_its_face() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [slow] = tracker.update([sig("catalog", "slow")], SHOP, 0)  # the pool makes requests wait
    tracker.settled(slow.incident, "watching", 5)  # escalated; catalog stays anomalous
    assert tracker.update([sig("catalog", "slow")], SHOP, 6) == []
    assert tracker.update([sig("catalog", "error")], SHOP, 8) == []  # ... now they fail
    assert tracker.active() == [slow.incident]
    # Quiet for longer than link_s, then errors: a fault of its own.
    [other] = tracker.update([sig("catalog", "error")], SHOP, 20)
    assert other.what == "opened" and other.incident is not slow.incident


def test_a_fix_that_holds_leaves_slowness_where_there_were_failures_one_incident() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [failing] = tracker.update([sig("catalog", "error")], SHOP, 0)  # its pool times out
    tracker.settled(failing.incident, "mitigated", 12)  # a bigger pool; the database is still slow
    [change] = tracker.update([sig("catalog", "latency")], SHOP, 15)
    assert (change.what, change.incident) == ("degraded", failing.incident)
    assert len(tracker.incidents) == 1


def test_the_quiet_period_starts_when_the_squad_is_done() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tick(tracker, 0, "pricing")
    incident = tracker.active()[0]
    tracker.settled(incident, "mitigated", 60)  # 60 s of squad work, no updates meanwhile
    assert tick(tracker, 61) == []
    assert tick(tracker, 90) == [("resolved", incident.id)]


def test_an_escalated_incident_is_not_degraded_and_grows_only_with_its_cause() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tick(tracker, 0, "catalog")
    incident = tracker.active()[0]
    tracker.settled(incident, "watching", 1)
    assert tick(tracker, 2, "gateway", "catalog") == [("grew", incident.id)]
    assert incident.state == "watching"


def test_a_cycle_of_anomalous_services_is_one_origin() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30)
    edges = [("a", "b"), ("b", "a"), ("c", "a")]
    [change] = tracker.update([sig("a"), sig("b"), sig("c")], edges, 0)
    assert change.incident.origin == "a" and change.incident.services == {"a", "b", "c"}


def test_every_status_change_is_in_the_audit_trail_and_the_events(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "incidents.db")
    incident = Incident(id="INC-1", status="open", detected_at=100.0, signature="sig-a")
    log.save(incident, why="anomalous since db", by="scout")
    incident.status = "mitigated"
    log.save(incident)
    log.save(incident)  # no change: nothing recorded
    incident.status = "degraded"
    log.save(incident, why="the cause still shows, weaker", by="scout")
    stored = log.get("INC-1")
    assert stored is not None
    steps = [(a["from"], a["to"]) for a in stored.audit if a["step"] == "status"]
    assert steps == [(None, "open"), ("open", "mitigated"), ("mitigated", "degraded")]
    events = [(e.agent, e.message) for e in log.events_of("INC-1")]
    assert events == [
        ("scout", "status open: anomalous since db"),
        ("squad", "status open -> mitigated"),
        ("scout", "status mitigated -> degraded: the cause still shows, weaker"),
    ]


def test_the_same_signature_later_is_found_as_the_earlier_incident(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "incidents.db")
    log.save(Incident(id="INC-1", status="resolved", detected_at=100.0, signature="sig-a"))
    log.save(Incident(id="INC-2", status="resolved", detected_at=200.0, signature="sig-b"))
    later = Incident(id="INC-3", status="open", detected_at=300.0, signature="sig-a")
    log.save(later)
    earlier = log.earlier(later)
    assert earlier is not None and earlier.id == "INC-1"
    assert log.earlier(Incident(id="INC-4", status="open", detected_at=50.0, signature="sig-a")) is None
    assert log.earlier(Incident(id="INC-5", status="open", detected_at=400.0)) is None


def test_incidents_id_reads_as_text_and_json_only_when_asked(tmp_path: Path) -> None:
    import json
    import os
    import subprocess
    import sys

    from sre_space.paths import Paths

    log = IncidentLog(Paths(tmp_path).ensure().incidents_db)
    incident = Incident(
        id="INC-20260101-0002",
        status="open",
        detected_at=1_800_000_000.0,
        signature="sig-a",
        first_error_at=1_799_999_998.0,
        recurs="INC-20260101-0001",
        root_cause={
            "service": "catalog",
            "operation": "GET /items",
            "fault_class": "saturation",
            "confidence": 0.81,
            "evidence": {"exception": "QueuePool limit of size 5 overflow 0 reached\x1b[31m"},
        },
        remediation={"action": "patch_config", "service": "catalog", "outcome": "recovered"},
    )
    log.save(incident, why="anomalous since catalog", by="scout")
    incident.status = "mitigated"
    log.save(incident)
    env = {**os.environ, "SRE_SPACE_HOME": str(tmp_path)}
    cmd = [sys.executable, "-m", "sre_space", "incidents", incident.id]
    text = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60, check=True)
    out = text.stdout
    for section in ("timeline", "root cause", "evidence", "remediation", "audit trail"):
        assert f"\n{section}\n" in out
    assert "recurs: INC-20260101-0001" in out and "TTD 2.0 s" in out
    assert "status open -> mitigated" in out and "QueuePool limit" in out
    assert "\x1b" not in out  # text from telemetry is shown escaped
    doc = json.loads(
        subprocess.run([*cmd, "--json"], env=env, capture_output=True, text=True, timeout=60).stdout
    )
    assert doc["status"] == "mitigated" and doc["recurs"] == "INC-20260101-0001"


def test_fewer_calls_to_a_callee_of_the_cause_are_the_cause_not_a_new_fault() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tick(tracker, 0, "gateway", "orders")  # orders fails before it calls payments
    incident = tracker.active()[0]
    tracker.settled(incident, "watching", 5)
    quieter = [sig("payments", "traffic")]
    [grew] = tracker.update(quieter, SHOP, 20)  # 15 s after orders last showed
    assert grew.what == "grew" and grew.incident is incident
    assert tracker.active() == [incident] and "payments" in incident.services
    # Fewer calls to a service nobody known is failing: its own incident.
    assert [c.what for c in tracker.update([sig("db", "traffic")], SHOP, 21)] == ["opened"]


def test_a_different_kind_of_trouble_during_an_escalated_incident_is_its_own() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tracker.update([sig("payments", "error")], SHOP, 0)
    incident = tracker.active()[0]
    tracker.settled(incident, "watching", 5)  # escalated: a human has it
    assert tracker.update([sig("payments", "error")], SHOP, 6) == []  # the same trouble
    [change] = tracker.update([sig("payments", "traffic")], SHOP, 7)  # now it stopped answering
    assert change.what == "opened" and change.incident is not incident
    # After a fix, the same service showing anything is the same incident, degraded.
    tracker.settled(change.incident, "mitigated", 8)
    [again] = tracker.update([sig("payments", "latency")], SHOP, 9)
    assert again.what == "degraded" and again.incident is change.incident


def test_trouble_beside_an_open_incidents_symptoms_is_for_the_brain_to_decide() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [first] = tracker.update([sig("catalog"), sig("db"), sig("gateway")], SHOP, 0)
    assert first.what == "opened" and first.incident.origin == "db"
    # gateway fails (the catalog incident's symptom) and pricing gets fewer calls:
    # gateway may fail first and call less, or pricing may hang. Ambiguous.
    [second] = tracker.update([sig("gateway"), sig("pricing", "traffic")], SHOP, 1)
    assert second.what == "opened" and second.incident.origin == "pricing"
    assert tracker.ambiguous(second.incident, SHOP) == "fewer"
    # pricing failing beside it: a new cause, or the same one felt beside it.
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tracker.update([sig("catalog"), sig("db"), sig("gateway")], SHOP, 0)
    [own] = tracker.update([sig("gateway"), sig("pricing")], SHOP, 1)
    assert own.what == "opened" and tracker.ambiguous(own.incident, SHOP) == "beside"
    # A drop at pricing whose failing caller is no open incident's is its own.
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tracker.update([sig("db")], SHOP, 0)
    [alone] = tracker.update([sig("gateway"), sig("pricing", "traffic")], SHOP, 1)
    assert alone.what == "opened" and tracker.ambiguous(alone.incident, SHOP) == ""
    # payments slower on its own, right below an open incident's cause (orders):
    # the same cause felt beside it, or a new one. A service apart from it: its own.
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    tracker.update([sig("orders"), sig("gateway")], SHOP, 0)
    [below] = tracker.update([sig("payments", "latency")], SHOP, 1)
    assert below.what == "opened" and tracker.ambiguous(below.incident, SHOP) == "beside"
    [apart] = tracker.update([sig("db", "latency")], SHOP, 2)
    assert apart.what == "opened" and tracker.ambiguous(apart.incident, SHOP) == ""


def test_an_incident_that_went_quiet_while_the_squad_worked_is_watched_again() -> None:
    tracker = IncidentTracker(confirm_s=0, quiet_s=30, link_s=10)
    [(_, first)] = tick(tracker, 0, "catalog")
    incident = tracker.active()[0]
    assert tick(tracker, 31) == [("resolved", first)]  # the squad still at work: quiet
    tracker.settled(incident, "mitigated", 40)  # done: watched again, the quiet starts over
    assert tracker.active() == [incident]
    assert tick(tracker, 45, "catalog") == [("degraded", first)]
    assert tick(tracker, 76) == [("resolved", first)]


def test_an_adopted_incident_takes_the_detectors_anomalies_at_its_service() -> None:
    """An alert about catalog came first: Scout's catalog anomaly is that incident."""
    tracker = IncidentTracker(confirm_s=2, quiet_s=30, link_s=10)
    adopted = tracker.adopt("catalog", 0)
    assert tracker.active() == [adopted] and adopted.signals == []
    assert tick(tracker, 1, "gateway", "catalog") == [("grew", adopted.id)]  # no confirming
    assert tick(tracker, 3, "gateway", "catalog") == []
    assert adopted.services == {"gateway", "catalog"} and len(tracker.incidents) == 1
