"""What the squad's agents share: the context each is handed, the memory they
search, the SLO measure, and the bounds of the Brain's second looks.

Every step is written to the incident log as an event (``SquadContext.say``),
which is how `run`, `watch` and the drill journal see the squad work.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from sre_space.actuators import Actuator
from sre_space.clock import SYSTEM, Clock
from sre_space.config import Settings
from sre_space.detect.window import percentile
from sre_space.incidents import Incident, IncidentLog
from sre_space.squad.policy import Policy
from sre_space.squad.state import SquadState
from sre_space.telemetry.model import Span
from sre_space.telemetry.store import TraceStore

RELOOK_S = 4.0  # how long the Brain waits before a second look at an incident
MAX_LOOKS = 2  # second looks before the Fixer escalates for want of a remediation
# Below the policy's min_confidence the Fixer looks again; after MAX_LOOKS, under
# `auto`, it writes the proposal and escalates (never acts on a guess).
# The plan's fields, as the incident's remediation keeps them (the Fixer, resume).
PLAN_KEYS = ("action", "service", "params", "source", "memory_ref", "reason")


class Memory(Protocol):
    def search(
        self, query: str, *, k: int = 3, service: str | None = None, signature: str | None = None
    ) -> list[Any]: ...

    def archive(self, entry: Any) -> Any: ...

    def failed_remediations(self, signature: str) -> list[dict[str, Any]]: ...


@dataclass
class SquadContext:
    settings: Settings
    store: TraceStore
    log: IncidentLog
    memory: Memory
    actuator: Actuator
    policy: Policy
    clock: Clock = SYSTEM  # the Brain's second look waits on it (replay: recorded time)

    def incident(self, state: SquadState) -> Incident:
        incident = self.log.get(state["incident_id"])
        if incident is None:
            raise KeyError(state["incident_id"])
        return incident

    def say(self, agent: str, state: SquadState, message: str, **data: Any) -> None:
        self.log.emit(agent, message, incident_id=state.get("incident_id"), data=data)


def slo(spans: list[Span], threshold_ms: float) -> dict[str, Any]:
    durations = [s.duration_ms for s in spans]
    errors = sum(s.error for s in spans)
    return {
        "requests": len(spans),
        "error_rate": round(errors / len(spans), 4) if spans else 0.0,
        "p95_ms": round(percentile(durations, 0.95), 1),
        "slow_rate": round(sum(d > threshold_ms for d in durations) / len(spans), 4)
        if spans
        else 0.0,
    }
