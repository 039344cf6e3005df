"""From anomalous signals to incidents: grouping, confirmation, quiet-period resolution.

- **Grouping**: anomalous services that call one another (the detector's call
  edges) are one incident: a failure that cascades up through five services
  is one incident with five services, not five incidents. Two failures in
  parts of the system that do not call each other are two incidents.
- **Confirmation**: a group must stay anomalous for ``confirm_s`` before it
  opens; one bad second is not an incident.
- **No flapping**: an open incident absorbs whatever joins its services; it
  does not close when its signals dip for a moment.
- **Resolution**: only after ``quiet_s`` without any anomaly on its services.

The tracker holds no clock and does no I/O: feed it the detector's anomalous
signals and edges with the time, act on the changes it returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from sre_space.detect.window import Signal


@dataclass
class Tracked:
    """One incident as the tracker sees it."""

    id: int
    services: set[str]
    signals: list[Signal]
    first_seen: float
    last_anomalous: float
    opened_at: float | None = None  # None while it waits for confirmation
    resolved_at: float | None = None

    @property
    def open(self) -> bool:
        return self.opened_at is not None and self.resolved_at is None


@dataclass(frozen=True)
class Change:
    what: str  # opened | grew | resolved
    incident: Tracked


def group(signals: Iterable[Signal], edges: Iterable[tuple[str, str]]) -> list[list[Signal]]:
    """Anomalous signals in connected groups: services joined by a call either way."""
    by_service: dict[str, list[Signal]] = {}
    for s in signals:
        by_service.setdefault(s.service, []).append(s)
    parent = {svc: svc for svc in by_service}

    def root(svc: str) -> str:
        while parent[svc] != svc:
            parent[svc] = parent[parent[svc]]
            svc = parent[svc]
        return svc

    for caller, callee in edges:
        if caller in parent and callee in parent:
            parent[root(caller)] = root(callee)
    groups: dict[str, list[Signal]] = {}
    for svc, sigs in by_service.items():
        groups.setdefault(root(svc), []).extend(sigs)
    return sorted(groups.values(), key=lambda g: min(s.service for s in g))


@dataclass
class IncidentTracker:
    confirm_s: float = 2.0
    quiet_s: float = 30.0
    incidents: list[Tracked] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def forget(self, incident: Tracked) -> None:
        """Drop an incident that was dealt with: its next signals open a new one."""
        if incident in self.incidents:
            self.incidents.remove(incident)

    def active(self) -> list[Tracked]:
        """Open incidents (confirmed, not resolved)."""
        return [i for i in self.incidents if i.open]

    def update(
        self, signals: Iterable[Signal], edges: Iterable[tuple[str, str]], now: float
    ) -> list[Change]:
        changes: list[Change] = []
        live = [i for i in self.incidents if i.resolved_at is None]
        seen: set[int] = set()
        for sigs in group([s for s in signals if s.kind], edges):
            services = {s.service for s in sigs}
            matches = [i for i in live if i.services & services]
            if not matches:
                incident = Tracked(next(self._ids), services, sigs, now, now)
                self.incidents.append(incident)
                live.append(incident)
                seen.add(incident.id)
                continue
            # The oldest incident absorbs the group (and any other it now joins).
            matches.sort(key=lambda i: i.first_seen)
            incident, others = matches[0], matches[1:]
            joined = services.union(*(o.services for o in others))
            grown = joined - incident.services
            for other in others:
                incident.signals.extend(other.signals)
                self.incidents.remove(other)
                live.remove(other)
            incident.services |= grown
            incident.signals = sigs
            incident.last_anomalous = now
            seen.add(incident.id)
            if grown and incident.open:
                changes.append(Change("grew", incident))
        for incident in list(live):
            if incident.id in seen:
                if incident.opened_at is None and now - incident.first_seen >= self.confirm_s:
                    incident.opened_at = now
                    changes.append(Change("opened", incident))
            elif incident.opened_at is None:
                self.incidents.remove(incident)  # it did not hold: not an incident
            elif now - incident.last_anomalous >= self.quiet_s:
                incident.resolved_at = now
                changes.append(Change("resolved", incident))
        return changes
