"""The incident log's records: :class:`Incident`, :class:`Event`, and how a save keeps people's answers.

An :class:`Incident` is stored as its JSON document (``to_json`` /
``from_json``); an :class:`Event` is one line of the squad's timeline.
:func:`keep_people` merges into an incident about to be saved what people
wrote meanwhile (``PEOPLE_FIELDS``, audit entries, a resolve). Moved out of
:mod:`sre_space.incidents` (the log itself), which re-exports these names.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sre_space.safe_text import printable
from sre_space.vocabulary import RESOLVED, IncidentStatus

# What people set (ack, resolve): a save of a copy read before them never unsets it.
PEOPLE_FIELDS = ("acknowledged_by", "acknowledged_at", "resolved_by", "resolution_note")


@dataclass
class Incident:
    id: str
    status: IncidentStatus  # a vocabulary word: mypy checks every status written or compared
    detected_at: float
    signature: str = ""
    root_cause: dict[str, Any] = field(default_factory=dict)
    remediation: dict[str, Any] = field(default_factory=dict)
    memory_hits: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    hardening: list[dict[str, Any]] = field(default_factory=list)
    mitigated_at: float | None = None
    resolved_at: float | None = None
    first_error_at: float | None = None
    recurs: str | None = None  # an earlier incident of the same signature
    residual: list[dict[str, Any]] = field(default_factory=list)  # what still shows, degraded
    acknowledged_by: str | None = None  # the first person who acknowledged it
    acknowledged_at: float | None = None
    resolved_by: str | None = None  # the person who resolved it (None: Scout, after a quiet spell)
    resolution_note: str | None = None  # what they said when they resolved it
    source: str = "scout"  # what opened it: scout (the traces) or alert (alerts.py)

    @property
    def ttd_s(self) -> float | None:
        if self.first_error_at is None:
            return None
        return round(max(0.0, self.detected_at - self.first_error_at), 2)

    @property
    def ttm_s(self) -> float | None:
        if self.mitigated_at is None:
            return None
        return round(self.mitigated_at - self.detected_at, 2)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ttd_s"] = self.ttd_s
        doc["ttm_s"] = self.ttm_s
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Incident:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class Event:
    seq: int
    incident_id: str | None
    ts: float
    agent: str
    kind: str
    message: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        when = datetime.fromtimestamp(self.ts, UTC).strftime("%H:%M:%S")
        prefix = f"[{self.incident_id}] " if self.incident_id else ""
        return f"{when} {self.agent:<6} {prefix}{printable(self.message)}"


def keep_people(incident: Incident, stored: Incident) -> None:
    """Merge into ``incident`` (about to be saved) what is in ``stored`` and not in it.

    The mind holds an incident for a while (the squad's verification takes up
    to a minute) while people answer from other processes. The audit trail
    only grows, so entries stored meanwhile are kept (in time order); people's
    fields are never unset by a save; and a person's resolve is final: a
    stale copy's status does not replace it.
    """
    for name in PEOPLE_FIELDS:
        if getattr(incident, name) is None and getattr(stored, name) is not None:
            setattr(incident, name, getattr(stored, name))
    if stored.status == RESOLVED and stored.resolved_by and incident.status != RESOLVED:
        incident.status = RESOLVED
        incident.resolved_at = stored.resolved_at
    have = {_key(a) for a in incident.audit}
    missing = [a for a in stored.audit if _key(a) not in have]
    if missing:
        incident.audit = sorted([*incident.audit, *missing], key=lambda a: float(a.get("ts") or 0))


def _key(entry: dict[str, Any]) -> str:
    """An audit entry's identity: its time and step (an entry changed in place is still it)."""
    return f"{entry.get('ts')!r}|{entry.get('step')}"
