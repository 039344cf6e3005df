"""The Fixer outside the lab: proposals where it cannot act, its own bugs said apart,
rollback targets from span evidence, and the half-open probe that lifts a workaround.

Real parts: the incident log, the trace store, an empty memory, exec targets
whose actions are real programs; spans are built with the project's model.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sre_space.actuators.targets import TargetActuator
from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.memory.store import MemoryStore
from sre_space.squad import fixer, releases, runbook
from sre_space.squad.context import SquadContext
from sre_space.squad.halfopen import HalfOpen, open_workarounds
from sre_space.squad.policy import Policy
from sre_space.telemetry.model import Span, SpanKind
from sre_space.telemetry.store import TraceStore

import helpers
from helpers import wait_until

DIAGNOSIS = {**helpers.DIAGNOSIS, "call_edge": "shop -> catalog"}


def _span(service: str, start_s: float, *, error: bool = False, version: str = "") -> Span:
    start = int(start_s * 1e9)
    return Span(
        trace_id=f"{int(start_s * 1000):032x}",
        span_id=f"{int(start_s * 1000) & 0xFFFFFFFF:016x}",
        parent_id=None,
        service=service,
        name="GET /items/{id}",
        start_ns=start,
        end_ns=start + 20_000_000,
        kind=SpanKind.SERVER,
        error=error,
        resource={"service.name": service, **({"service.version": version} if version else {})},
    )


class Squad:
    def __init__(self, home: Path, actuator: Any, policy: Policy | None = None) -> None:
        self.settings = Settings(home=home)
        self.log = IncidentLog(home / "incidents.db")
        self.memory = MemoryStore(self.settings)
        self.store = TraceStore()
        self.ctx = SquadContext(
            self.settings, self.store, self.log, self.memory, actuator, policy or Policy()
        )

    def incident(self) -> Incident:
        incident = Incident(id=self.log.new_id(), status="open", detected_at=time.time())
        self.log.save(incident)
        return incident


@pytest.fixture
def squad(tmp_path: Path) -> Iterator[Squad]:
    made = Squad(tmp_path, TargetActuator(Settings(home=tmp_path)))
    yield made
    made.memory.close()


def _state(incident: Incident, diagnosis: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "incident_id": incident.id,
        "diagnosis": diagnosis,
        "recall": [],
        "window_start_ns": time.time_ns(),
        **extra,
    }


def test_no_target_is_no_excuse_a_proposal_is_written(squad: Squad) -> None:
    incident = squad.incident()
    out = fixer.fixer(squad.ctx, _state(incident, DIAGNOSIS))  # type: ignore[arg-type]
    assert out == {"plan": {}}
    saved = squad.log.get(incident.id)
    assert saved is not None and saved.remediation["outcome"] == "proposed"
    proposal = saved.remediation["proposal"]
    assert (proposal["action"], proposal["service"]) == ("restart", "catalog")
    assert "never answers" in proposal["reason"] and "no target declared" in proposal["reason"]
    assert proposal["evidence"]["exception"] == "ReadTimeout: timed out"
    assert proposal["how"]["commands"]["kubernetes"] == "kubectl rollout restart deployment/catalog"
    written = json.loads(Path(proposal["file"]).read_text())
    assert written["incident"] == incident.id and written["how"] == proposal["how"]
    said = [e.message for e in squad.log.events(0) if e.agent == "fixer"]
    assert said and said[-1].startswith("proposal: restart catalog")
    assert not any("no lab is running" in m for m in said)


def test_under_dry_run_the_proposal_says_how(tmp_path: Path) -> None:
    script = tmp_path / "noop.py"
    script.write_text("print('{}')\n")
    (tmp_path / "targets.toml").write_text(
        f'[catalog]\nkind = "exec"\nactions.restart = ["{sys.executable}", "{script}", "{{service}}"]\n'
    )
    made = Squad(tmp_path, TargetActuator(Settings(home=tmp_path)), Policy(mode="dry-run"))
    try:
        incident = made.incident()
        fixer.fixer(made.ctx, _state(incident, DIAGNOSIS))  # type: ignore[arg-type]
        saved = made.log.get(incident.id)
        assert saved is not None and saved.remediation["outcome"] == "dry-run"
        assert saved.remediation["proposal"]["how"]["argv"] == [
            sys.executable,
            str(script),
            "catalog",
        ]
    finally:
        made.memory.close()


def test_a_runbook_bug_escalates_with_its_own_message_and_traceback(
    squad: Squad, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: Any) -> dict[str, Any]:
        return {}["action"]  # a bug: KeyError

    monkeypatch.setattr(runbook, "plan_for", broken)
    incident = squad.incident()
    out = fixer.fixer(squad.ctx, _state(incident, DIAGNOSIS))  # type: ignore[arg-type]
    assert out == {"plan": {}}
    said = [e.message for e in squad.log.events(0) if e.agent == "fixer"][-1]
    assert said.startswith("the runbook failed on this diagnosis (KeyError: 'action')")
    assert "configuration" not in said
    logged = (squad.settings.home / "logs" / "squad-errors.log").read_text()
    assert "Traceback (most recent call last)" in logged and "in broken" in logged


def test_the_release_to_roll_back_to_comes_from_the_spans() -> None:
    onset = 1000.0
    spans = [_span("pay", onset - 10 + i * 0.1, version="1.4.2") for i in range(50)]
    spans += [_span("pay", onset + i * 0.1, error=i % 2 == 0, version="1.5.0") for i in range(40)]
    found = releases.evidence(spans, "pay", int(onset * 1e9))
    assert (found["bad"], found["good"]) == ("1.5.0", "1.4.2")
    # Detection lags the deploy: an onset placed after it still finds the same pair.
    late = releases.evidence(spans, "pay", int((onset + 3) * 1e9))
    assert (late["bad"], late["good"]) == ("1.5.0", "1.4.2")
    assert late["before"]["1.5.0"][1] > 0  # failing spans of the new release before that onset
    # A release that itself failed before is never the one to go back to.
    bad_before = [_span("pay", onset - 5 + i * 0.1, error=True, version="1.4.2") for i in range(5)]
    assert releases.evidence(spans + bad_before, "pay", int(onset * 1e9))["good"] is None
    # The platform's history may name it; one it marks bad is skipped.
    after_only = [s for s in spans if s.start_ns >= int(onset * 1e9)]
    history = [{"release": "1.5.0"}, {"release": "1.4.9", "bad": True}, {"release": "1.4.2"}]
    assert (
        releases.evidence(after_only, "pay", int(onset * 1e9), history=history)["good"] == "1.4.2"
    )
    assert releases.evidence(after_only, "pay", int(onset * 1e9))["bad"] is None  # no "before"
    # Errors with no change of release: nothing to roll back.
    steady = spans[:50] + [
        _span("pay", onset + i * 0.1, error=True, version="1.4.2") for i in range(20)
    ]
    assert releases.evidence(steady, "pay", int(onset * 1e9))["bad"] is None


def test_an_exec_hook_gives_the_platforms_release_history(tmp_path: Path) -> None:
    script = tmp_path / "history.py"
    script.write_text('import json; print(json.dumps([{"release": "2.0"}, {"release": "1.9"}]))\n')
    (tmp_path / "targets.toml").write_text(
        f'[pay]\nkind = "exec"\nactions.releases = ["{sys.executable}", "{script}"]\n'
    )
    actuator = TargetActuator(Settings(home=tmp_path))
    history = actuator.releases("pay")
    assert history == [{"release": "2.0"}, {"release": "1.9"}]
    onset = 1000.0
    failing = [_span("pay", onset + i * 0.1, error=True, version="2.0") for i in range(20)]
    found = releases.evidence(failing, "pay", int(onset * 1e9), history=history)
    assert (found["bad"], found["good"]) == ("2.0", "1.9")


def test_the_fixer_rolls_back_to_what_the_spans_say(tmp_path: Path) -> None:
    script = tmp_path / "noop.py"
    script.write_text("print('{}')\n")
    (tmp_path / "targets.toml").write_text(
        f'[pay]\nkind = "exec"\nactions.rollback = ["{sys.executable}", "{script}", "{{to}}"]\n'
    )
    made = Squad(tmp_path, TargetActuator(Settings(home=tmp_path)))
    try:
        now = time.time()
        made.store.add([_span("pay", now - 20 + i * 0.1, version="1.4.2") for i in range(50)])
        made.store.add(
            [_span("pay", now - 5 + i * 0.1, error=True, version="1.5.0") for i in range(40)]
        )
        incident = made.incident()
        diagnosis = {**DIAGNOSIS, "service": "pay", "fault_class": "error", "exception": "KeyError"}
        state = _state(incident, diagnosis, window_start_ns=int((now - 6) * 1e9))
        out = fixer.fixer(made.ctx, state)  # type: ignore[arg-type]
        assert out["plan"]["action"] == "rollback"
        assert out["plan"]["params"] == {"to": "1.4.2", "from": "1.5.0"}
        assert out["applied"]["argv"][-1] == "1.4.2"
    finally:
        made.memory.close()


# --- half-open -----------------------------------------------------------------------------

CIRCUIT = """\
import json, os, sys
state = os.environ["CIRCUIT_STATE"]
with open(state, "a") as out:
    out.write(sys.argv[1] + "\\n")
print(json.dumps({"previous": {}}))
"""


def _workaround_incident(made: Squad) -> Incident:
    incident = made.incident()
    step = {"action": "open_circuit", "service": "shop", "params": {"dependency": "catalog"}}
    incident.status = "mitigated"
    incident.audit = [
        {"ts": time.time(), "step": "applied", **step, "result": {"previous": {}}},
        {"ts": time.time(), "step": "verified", "recovered": True},
    ]
    made.log.save(incident)
    return incident


@pytest.fixture
def circuit_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    script = tmp_path / "circuit.py"
    script.write_text(CIRCUIT)
    monkeypatch.setenv("CIRCUIT_STATE", str(tmp_path / "circuit.log"))
    (tmp_path / "targets.toml").write_text(
        "[shop]\n"
        'kind = "exec"\n'
        f'actions.open_circuit = ["{sys.executable}", "{script}", "open-{{dependency}}"]\n'
        f'undo.open_circuit = ["{sys.executable}", "{script}", "close-{{dependency}}"]\n'
    )
    return tmp_path


def _feed(made: Squad, log: Path, *, error: bool) -> threading.Thread:
    """Once the circuit is closed, the dependency's answers arrive (as spans would)."""

    def run() -> None:
        wait_until(lambda: log.exists() and "close-catalog" in log.read_text(), 30)
        for _ in range(40):
            made.store.add([_span("catalog", time.time(), error=error)])
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_half_open_lifts_the_circuit_once_the_dependency_answers(circuit_home: Path) -> None:
    made = Squad(circuit_home, TargetActuator(Settings(home=circuit_home)))
    try:
        incident = _workaround_incident(made)
        assert [s[1]["action"] for s in open_workarounds(incident)] == ["open_circuit"]
        prober = HalfOpen(made.ctx, trial_s=1.0)
        prober.tick(now=time.time())  # first seen: the probe waits a while
        assert not (circuit_home / "circuit.log").exists()
        feeder = _feed(made, circuit_home / "circuit.log", error=False)
        prober.tick(now=time.time() + 60)
        feeder.join()
        saved = made.log.get(incident.id)
        assert saved is not None
        assert [a["step"] for a in saved.audit][-2:] == ["half-open", "lifted"]
        assert open_workarounds(saved) == []
        assert (circuit_home / "circuit.log").read_text().split() == ["close-catalog"]
    finally:
        made.memory.close()


def test_half_open_puts_the_circuit_back_while_the_dependency_fails(circuit_home: Path) -> None:
    made = Squad(circuit_home, TargetActuator(Settings(home=circuit_home)))
    try:
        incident = _workaround_incident(made)
        prober = HalfOpen(made.ctx, trial_s=1.0)
        prober.scan(time.time() - 60)
        feeder = _feed(made, circuit_home / "circuit.log", error=True)
        prober.tick(now=time.time() + 60)
        feeder.join()
        saved = made.log.get(incident.id)
        assert saved is not None
        assert [a["step"] for a in saved.audit][-2:] == ["half-open", "reapplied"]
        assert len(open_workarounds(saved)) == 1  # still in place, probed again later
        calls = (circuit_home / "circuit.log").read_text().split()
        assert calls == ["close-catalog", "open-catalog"]
        assert json.dumps(saved.audit[-1]["after"])  # what the trial saw is on record
    finally:
        made.memory.close()


def test_a_busy_lab_is_not_reported_as_no_lab() -> None:
    """A control API that accepts and does not answer in time: say so, not 'no lab is running'."""
    import socket

    from sre_space.errors import Unavailable
    from sre_space.lab.control import LabClient

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)  # the kernel accepts; nobody ever answers
        client = LabClient(listener.getsockname()[1], "token")
        with pytest.raises(Unavailable) as caught:
            client.act("restart", "catalog", {}, timeout=0.5)
    assert "did not answer POST /actions within" in str(caught.value)
    assert "no lab is running" not in str(caught.value)
