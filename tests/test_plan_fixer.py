"""GitOps: with `actuator = "plan-compose"` the Fixer writes its change as a proposal.

The real plan actuator judges against the shipped compose file and writes a real
override file; the real incident log records the outcome. Memory is a small
stand-in (the Fixer only asks it which fixes failed before): the real store is
covered by the memory tests and is not what this test is about.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.mind import Mind
from sre_space.squad import agents
from sre_space.squad.policy import Policy
from sre_space.telemetry.store import TraceStore


class NoFailures:
    def search(self, query: str, **_: Any) -> list[Any]:
        return []

    def archive(self, entry: Any) -> Any:
        return entry

    def failed_remediations(self, signature: str) -> list[dict[str, Any]]:
        return []


def test_a_plan_actuator_turns_the_fix_into_a_proposal(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, actuator="plan-compose")
    actuator = Mind(settings)._actuator()
    assert type(actuator).__name__ == "PlanActuator"
    log = IncidentLog(tmp_path / "incidents.db")
    incident = Incident(id=log.new_id(), status="open", detected_at=0.0)
    log.save(incident)
    ctx = agents.SquadContext(settings, TraceStore(), log, NoFailures(), actuator, Policy())
    diagnosis = {
        "service": "checkout",
        "operation": "POST /checkout",
        "fault_class": "saturation",
        "exception": "DatabaseTimeout: database connection timeout: pool exhausted",
        "signature": "checkout|POST /checkout|saturation|DatabaseTimeout",
        "confidence": 0.9,
    }
    out = agents.fixer(ctx, {"incident_id": incident.id, "diagnosis": diagnosis, "recall": []})
    assert out["plan"] == {}  # nothing was applied, so nothing to verify
    saved = log.get(incident.id)
    assert saved is not None and saved.remediation["outcome"] == "proposed"
    [proposal] = list((tmp_path / "plans").glob("*.override.yml"))
    doc = yaml.safe_load(proposal.read_text())
    env = doc["services"]["checkout"]["environment"]
    assert env["SRE_SPACE_CFG_DB_POOL_SIZE"] == "100"  # the runbook's 20 -> 100, written down
