"""The state one incident's graph run carries from node to node."""

from __future__ import annotations

from typing import Any, TypedDict


class SquadState(TypedDict, total=False):
    incident_id: str
    window_start_ns: int
    signals: list[dict[str, Any]]
    origins: list[str]  # Scout's deepest anomalous services of this incident
    elsewhere: list[str]  # causes other open incidents answer for (concurrent faults)
    diagnosis: dict[str, Any]
    recall: list[dict[str, Any]]
    plan: dict[str, Any]
    applied: dict[str, Any]
    verification: dict[str, Any]
    outcome: str
    relook: bool  # the Fixer asks the Brain to look again
    looks: int
