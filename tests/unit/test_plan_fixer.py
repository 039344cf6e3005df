"""GitOps: with `actuator = "plan-compose"` the Fixer writes its change as a proposal.

The real plan actuator judges against the shipped compose file and writes a real
override file; the real incident log records the outcome; the real (empty)
memory answers that nothing failed before.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.memory.store import MemoryStore
from sre_space.mind import Mind
from sre_space.squad import fixer
from sre_space.squad.context import SquadContext
from sre_space.squad.policy import Policy
from sre_space.telemetry.store import TraceStore


def test_a_plan_actuator_turns_the_fix_into_a_proposal(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, actuator="plan-compose")
    actuator = Mind(settings)._actuator()
    # The plan actuator speaks the stack's keys; the Fixer speaks knobs through an adapter.
    assert type(actuator.inner).__name__ == "PlanActuator"
    log = IncidentLog(tmp_path / "incidents.db")
    incident = Incident(id=log.new_id(), status="open", detected_at=0.0)
    log.save(incident)
    memory = MemoryStore(settings)
    ctx = SquadContext(settings, TraceStore(), log, memory, actuator, Policy())
    diagnosis = {
        "service": "checkout",
        "operation": "POST /checkout",
        "fault_class": "saturation",
        "exception": "DatabaseTimeout: database connection timeout: pool exhausted",
        "signature": "checkout|POST /checkout|saturation|DatabaseTimeout",
        "confidence": 0.9,
    }
    try:
        out = fixer.fixer(ctx, {"incident_id": incident.id, "diagnosis": diagnosis, "recall": []})
    finally:
        memory.close()
    assert out["plan"] == {}  # nothing was applied, so nothing to verify
    saved = log.get(incident.id)
    assert saved is not None and saved.remediation["outcome"] == "proposed"
    [proposal] = list((tmp_path / "plans").glob("*.override.yml"))
    doc = yaml.safe_load(proposal.read_text())
    env = doc["services"]["checkout"]["environment"]
    assert env["SRE_SPACE_CFG_DB_POOL_SIZE"] == "100"  # the runbook's 20 -> 100, written down
