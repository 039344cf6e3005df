"""Memory import is not trust: the Fixer does not apply an imported fix on its own.

Real parts: the incident log, an empty memory, the targets router with no
target declared (so nothing is carried out; the plan the Fixer chose is what is
checked). The recalled hit is what the Scribe's memory search returns.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sre_space.actuators.targets import TargetActuator
from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.memory.model import KnowledgeEntry
from sre_space.memory.store import MemoryStore
from sre_space.squad import fixer
from sre_space.squad.context import SquadContext
from sre_space.squad.policy import Policy
from sre_space.telemetry.store import TraceStore

from helpers import DIAGNOSIS, SIGNATURE

REMEMBERED = {"action": "scale_out", "service": "catalog", "params": {"replicas": 3}}


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[SquadContext]:
    settings = Settings(home=tmp_path)
    memory = MemoryStore(settings)
    yield SquadContext(
        settings,
        TraceStore(),
        IncidentLog(tmp_path / "incidents.db"),
        memory,
        TargetActuator(settings),
        Policy(mode="dry-run"),
    )
    memory.close()


def _hit(memory: MemoryStore, *, imported: bool, trusted: bool) -> dict[str, Any]:
    """The search hit for an entry with this provenance, as the Fixer receives it."""
    entry = KnowledgeEntry(
        id="INC-ELSEWHERE",
        signature=SIGNATURE,
        service="catalog",
        operation="GET /items/{id}",
        fault_class="timeout",
        exception="ReadTimeout: timed out",
        summary="catalog timed out under load; more replicas fixed it",
        remediation=REMEMBERED,
        outcome="recovered",
        imported=imported,
        trusted=trusted,
    )
    memory.restore([entry])
    hits = memory.search("catalog timed out", k=1, signature=SIGNATURE)
    assert hits and hits[0].imported is imported and hits[0].trusted is trusted
    return hits[0].to_json()


def _fix(ctx: SquadContext, hit: dict[str, Any]) -> dict[str, Any]:
    incident = Incident(id=ctx.log.new_id(), status="open", detected_at=time.time())
    ctx.log.save(incident)
    state = {"incident_id": incident.id, "diagnosis": DIAGNOSIS, "recall": [hit]}
    fixer.fixer(ctx, state)  # type: ignore[arg-type]
    saved = ctx.log.get(incident.id)
    assert saved is not None
    return saved.remediation


@pytest.mark.parametrize(("imported", "trusted"), [(False, True), (True, True)])
def test_a_local_or_trusted_fix_is_planned_from_memory(
    ctx: SquadContext, imported: bool, trusted: bool
) -> None:
    plan = _fix(ctx, _hit(ctx.memory, imported=imported, trusted=trusted))  # type: ignore[arg-type]
    assert (plan["source"], plan["action"], plan["memory_ref"]) == (
        "memory",
        "scale_out",
        "INC-ELSEWHERE",
    )


def test_an_imported_fix_not_verified_here_is_not_applied(ctx: SquadContext) -> None:
    plan = _fix(ctx, _hit(ctx.memory, imported=True, trusted=False))  # type: ignore[arg-type]
    assert plan["source"] == "runbook" and plan.get("memory_ref") is None
    said = [e.message for e in ctx.log.events(0) if e.agent == "fixer"]
    assert any("INC-ELSEWHERE was imported" in m and "not applying it" in m for m in said), said
