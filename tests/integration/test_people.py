"""People answer: `ack`, `resolve`, `note` against a real home, and a mind that keeps their word.

The CLI runs as its own process, as a person's would, on the same SQLite
incident log the mind writes; the mind's copy of an incident is stale by the
time it saves it.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from sre_space.config import Settings
from sre_space.detect.tracker import Tracked
from sre_space.incidents import Incident, IncidentLog
from sre_space.paths import Paths

CLI = [sys.executable, "-m", "sre_space"]
INC = "INC-20260101-0001"


def sre(home: Path, *args: str, user: str | None = "alice") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SRE_SPACE_HOME": str(home)}
    env.pop("USER", None)
    if user is not None:
        env["USER"] = user
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=60)


def home_with_incident(home: Path, status: str = "mitigated") -> IncidentLog:
    log = IncidentLog(Paths(home).ensure().incidents_db)
    incident = Incident(
        id=INC,
        status="open",
        detected_at=time.time() - 30,
        first_error_at=time.time() - 32,
        root_cause={"service": "catalog", "operation": "GET /items", "fault_class": "timeout"},
    )
    log.save(incident, why="anomalous since catalog", by="scout")
    if status != "open":
        incident.status = status
        log.save(incident)
    return log


def test_ack_note_resolve_go_to_the_audit_trail_and_show_in_incidents(tmp_path: Path) -> None:
    log = home_with_incident(tmp_path)
    proc = sre(tmp_path, "ack", INC, "--by", "alice", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["acknowledged_by"] == "alice" and doc["acknowledged_at"] > 0
    assert doc["status"] == "mitigated"  # an ack changes no status

    hostile = "pool drained [bold]by hand[/bold] \x1b]0;pwned\x07\x1b[2J done"
    proc = sre(tmp_path, "note", INC, hostile)  # --by: $USER
    assert proc.returncode == 0 and proc.stdout.strip() == f"note added to {INC}", proc.stderr

    proc = sre(tmp_path, "resolve", INC, "--note", "rolled back by hand", "--by", "bob", "--json")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "resolved" and doc["resolved_by"] == "bob"
    assert doc["resolution_note"] == "rolled back by hand" and doc["resolved_at"] > 0
    assert doc["acknowledged_by"] == "alice"

    # incidents ID --json: the same document, every answer in the audit trail (who, when, what)
    proc = sre(tmp_path, "incidents", INC, "--json")
    stored = json.loads(proc.stdout)
    people = [a for a in stored["audit"] if a.get("by") in ("alice", "bob")]
    assert [(a["step"], a["by"]) for a in people] == [
        ("ack", "alice"),
        ("note", "alice"),
        ("status", "bob"),
    ]
    assert people[1]["text"] == hostile  # JSON is data: kept as typed
    assert people[2]["from"] == "mitigated" and people[2]["to"] == "resolved"
    assert people[2]["why"] == "rolled back by hand"
    assert all(isinstance(a["ts"], float) for a in people)
    # the contract's fields are all still there
    for key in ("id", "status", "recurs", "signature", "root_cause", "remediation",
                "detected_at", "mitigated_at", "ttd_s", "ttm_s"):
        assert key in stored

    # incidents ID: read as text, outside text escaped
    out = sre(tmp_path, "incidents", INC).stdout
    assert "acknowledged by alice" in out and "resolved by bob: rolled back by hand" in out
    assert "ack  by alice" in out and "note  by alice: pool drained [bold]by hand" in out
    assert "status  mitigated -> resolved  by bob: rolled back by hand" in out
    assert "\x1b" not in out and "\x07" not in out
    # and in the timeline (the events), as a person's
    events = [(e.agent, e.message) for e in log.events_of(INC)]
    assert ("human", "acknowledged by alice") in events
    assert ("human", "status mitigated -> resolved by bob: rolled back by hand") in events


def test_answers_that_cannot_be_taken_are_usage_errors(tmp_path: Path) -> None:
    proc = sre(tmp_path, "ack", INC)  # a new home: no log at all
    assert proc.returncode == 2 and proc.stderr == f"sre-space: no incident '{INC}'\n"
    home_with_incident(tmp_path)
    for args in (("ack", "INC-nope"), ("resolve", "INC-nope"), ("note", "INC-nope", "x")):
        proc = sre(tmp_path, *args)
        assert proc.returncode == 2 and proc.stderr == "sre-space: no incident 'INC-nope'\n"
    proc = sre(tmp_path, "note", INC, "   ")
    assert proc.returncode == 2 and "a note needs some text" in proc.stderr
    proc = sre(tmp_path, "ack", INC, "--by", " ")
    assert proc.returncode == 2 and "--by needs a name" in proc.stderr

    assert sre(tmp_path, "resolve", INC, user=None).returncode == 0
    doc = json.loads(sre(tmp_path, "incidents", INC, "--json").stdout)
    assert doc["resolved_by"] == "cli"  # no $USER, no --by
    # Resolving twice, or acknowledging what is over, is refused: exit 2, one line.
    for args in (("resolve", INC), ("ack", INC)):
        proc = sre(tmp_path, *args)
        assert proc.returncode == 2
        assert proc.stderr == f"sre-space: {INC} is already resolved (by cli)\n"
    # A note is still welcome after the end (a post-mortem's).
    assert sre(tmp_path, "note", INC, "post-mortem on Monday").returncode == 0
    after = json.loads(sre(tmp_path, "incidents", INC, "--json").stdout)
    assert after["status"] == "resolved" and after["audit"][-1]["text"] == "post-mortem on Monday"


def test_a_locked_incident_log_is_an_infrastructure_error(tmp_path: Path) -> None:
    """Another writer holds SQLite's write lock past the timeout: exit 3, one line."""
    home_with_incident(tmp_path)
    holder = sqlite3.connect(Paths(tmp_path).incidents_db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        proc = sre(tmp_path, "ack", INC)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("sre-space: cannot write the incident log")
    assert proc.stderr.count("\n") == 1
    assert sre(tmp_path, "ack", INC).returncode == 0  # free again


def test_an_audit_entry_changed_in_place_is_not_kept_twice(tmp_path: Path) -> None:
    log = home_with_incident(tmp_path)
    held = log.get(INC)
    assert held is not None
    held.audit.append({"ts": time.time(), "step": "applied", "result": {"ok": True}})
    log.save(held)
    held.audit[-1]["result"]["pid"] = 42  # the holder's copy, changed after it was saved
    log.save(held)
    stored = log.get(INC)
    assert stored is not None
    assert [a["step"] for a in stored.audit].count("applied") == 1
    assert stored.audit[-1]["result"] == {"ok": True, "pid": 42}


def test_a_running_mind_keeps_a_persons_resolve_and_stops_watching_it(tmp_path: Path) -> None:
    from sre_space.mind import Mind

    mind = Mind(Settings(home=tmp_path, otlp_http_port=0, otlp_grpc_port=-1))
    try:
        now = time.time()
        opened = Incident(
            id=INC, status="open", detected_at=now - 20, first_error_at=now - 22,
            root_cause={"service": "catalog", "fault_class": "timeout"},
        )
        mind.log.save(opened, why="anomalous since catalog", by="scout")
        tracked = Tracked(1, "catalog", {"catalog"}, [], now - 21, now - 20)
        tracked.opened_at, tracked.ref = now - 20, INC
        mind.tracker.incidents.append(tracked)

        # The squad holds its copy through a minute of verification ...
        held = mind.log.get(INC)
        assert held is not None
        held.status = "mitigating"
        held.remediation = {"action": "restart", "service": "catalog", "outcome": "pending"}
        mind.log.save(held)
        # ... while people answer from another process.
        assert sre(tmp_path, "ack", INC, "--by", "alice").returncode == 0
        assert sre(tmp_path, "note", INC, "restarting it myself", "--by", "alice").returncode == 0
        proc = sre(tmp_path, "resolve", INC, "--note", "restarted by hand", "--by", "bob")
        assert proc.returncode == 0, proc.stderr

        # The squad's stale copy is saved: the person's resolve and answers stay.
        held.status = "mitigated"
        held.mitigated_at = time.time()
        held.remediation["outcome"] = "recovered"
        held.audit.append({"ts": time.time(), "step": "verified", "recovered": True})
        mind.log.save(held)
        assert held.status == "resolved" and held.resolved_by == "bob"  # the holder sees it
        stored = mind.log.get(INC)
        assert stored is not None and stored.status == "resolved"
        assert stored.resolved_by == "bob" and stored.resolution_note == "restarted by hand"
        assert stored.acknowledged_by == "alice" and stored.mitigated_at is not None
        steps = [a["step"] for a in stored.audit]
        assert steps.count("ack") == 1 and steps.count("note") == 1 and "verified" in steps
        assert [a["ts"] for a in stored.audit] == sorted(a["ts"] for a in stored.audit)
        statuses = [(a["from"], a["to"]) for a in stored.audit if a["step"] == "status"]
        assert statuses == [(None, "open"), ("open", "mitigating"), ("mitigating", "resolved")]
        assert not any("-> mitigated" in e.message for e in mind.log.events_of(INC))

        # Scout lets go of it once the squad is done: its cause would open a new incident.
        mind.tracker.settled(tracked, "mitigated", time.time())
        mind.scout_tick(time.time())
        assert tracked not in mind.tracker.incidents
        assert "resolved by a person: no longer watched" in [
            e.message for e in mind.log.events_of(INC)
        ]

        # The mind's metrics saw it: TTD and TTM observed, the outcome counted, the status now.
        body, _ = mind.metrics.exposition()
        samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples
        }
        assert samples[("sre_space_ttd_seconds_count", ())] == 1
        assert samples[("sre_space_ttm_seconds_count", ())] == 1
        assert samples[("sre_space_actions_total", (("action", "restart"), ("outcome", "recovered")))] == 1
        key = ("sre_space_incidents", (("fault_class", "timeout"), ("status", "resolved")))
        assert samples[key] == 1
    finally:
        mind.log.close()


def test_an_incident_the_squad_fails_on_is_escalated_to_people(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug of ours in the squad (here a graph that raises) must not leave it diagnosing."""
    import sre_space.squad.graph
    from sre_space.mind import Mind

    def broken(*_: object, **__: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(sre_space.squad.graph, "run_incident", broken)
    mind = Mind(Settings(home=tmp_path, otlp_http_port=0, otlp_grpc_port=-1))
    try:
        now = time.time()
        opened = Incident(id=INC, status="open", detected_at=now - 2, first_error_at=now - 3)
        mind.log.save(opened, why="anomalous since catalog", by="scout")
        opened.status = "diagnosing"
        mind.log.save(opened)
        tracked = Tracked(1, "catalog", {"catalog"}, [], now - 3, now - 2)
        tracked.opened_at, tracked.ref, tracked.busy = now - 2, INC, True
        mind.tracker.incidents.append(tracked)

        with pytest.raises(ZeroDivisionError):
            mind._investigate(tracked, INC, now - 2)
        stored = mind.log.get(INC)
        assert stored is not None and stored.status == "escalated"
        assert "the squad failed on it (ZeroDivisionError)" in stored.audit[-1]["why"]
        mind.scout_tick(time.time())  # Scout settles it: watched, as any escalated incident
        assert not tracked.busy and tracked.state == "watching"
    finally:
        mind.log.close()
