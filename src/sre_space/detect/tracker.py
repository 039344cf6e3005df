"""From anomalous signals to incidents: grouping by cause, confirmation, lifecycle.

- **Grouping by cause**: an anomaly's *origin* is the deepest anomalous
  service it leads to (following the detector's call edges, caller to callee,
  through anomalous services only). Everything anomalous that leads to one
  origin is one incident: a failure that cascades up through five services is
  one incident with five services. A new origin is a new incident, even when
  the anomalous callers (a gateway every request passes through) are shared
  with an open one; a caller that leads to two origins is part of both.
- **The cause, once known**: the Brain's root cause (``attribute``) joins the
  origins an incident answers for, so the same cause showing again, from
  whichever side, is the same incident.
- **Symptoms**: a service already part of an incident is still that incident
  while its cause showed within ``link_s`` (signals flicker at a threshold);
  after that, an anomaly there with no deeper origin is a new one.
- **Confirmation**: an origin must stay anomalous for ``confirm_s`` before it
  opens; one bad second is not an incident.
- **Lifecycle**: an incident stays watched after the squad is done with it
  (``settled``): a mitigated incident whose cause shows again, no worse in
  kind (slow where it failed), is ``degraded`` (the fault still active, the
  fix holding), not a new incident; an escalated one keeps its cause while
  the same fault goes on, and after it went quiet (nobody closed it: its
  cause showing again is that incident ``again``). A different cause, or
  failures at a cause that was only slow, are an incident of their own (see
  ``_other_fault``). A degraded incident answers for what still shows of its
  fault while it shows: once its cause was quiet for ``link_s``, the fault
  ended, and trouble there again is a fault of its own, handed to the squad
  (``ended``; not while the squad's workaround hides the cause). An incident
  resolves after ``quiet_s`` without anomalies of its own, but not while the
  squad works on it (``busy``).
- **Waiting for the Brain**: an anomaly that may be an open incident whose
  root cause the Brain has not named yet (``awaits_brain``) is left to wait
  by whoever opens incidents; once named, an anomaly at that cause still
  waiting for confirmation is that incident's (``attribute``).

The tracker holds no clock and does no I/O: feed it the detector's anomalous
signals and edges with the time, act on the changes it returns.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field

from sre_space.detect.window import Signal

WATCHING = "watching"  # detected, or handed to a human: its cause is watched
MITIGATED = "mitigated"
DEGRADED = "degraded"
KEEP_S = 3600.0  # how long a resolved incident stays in the tracker's list
# Signal kinds by the kind of trouble they show: a service that failed with
# errors and later stops answering had two faults, not one that grew.
FAMILIES = {
    "error": "error",
    "slow": "latency",
    "latency": "latency",
    "traffic": "traffic",
    "structure": "traffic",
}


def families(signals: Iterable[Signal], service: str) -> set[str]:
    return {FAMILIES.get(s.kind, s.kind) for s in signals if s.service == service and s.kind}


@dataclass
class Tracked:
    """One incident as the tracker sees it."""

    id: int
    origin: str  # the deepest anomalous service when it was first seen
    services: set[str]
    signals: list[Signal]
    first_seen: float
    last_anomalous: float
    origins: set[str] = field(default_factory=set)  # every origin (and root cause) it answers for
    cause: str = ""  # the Brain's root cause, once known
    cause_seen: float = 0.0  # when one of its origins was last anomalous
    state: str = WATCHING
    settled_at: float | None = None  # when the squad was done with it
    families: set[str] = field(default_factory=set)  # how its origins misbehaved (see FAMILIES)
    opened_at: float | None = None  # None while it waits for confirmation
    resolved_at: float | None = None
    ref: str = ""  # the incident log's id, set by whoever opens it there
    busy: bool = False  # handed to the squad and not settled: it does not resolve meanwhile
    # The squad's workaround hides its cause (an open circuit, shed load): what a
    # trial that lifts it shows is the fault going on, however long it was quiet.
    masked: bool = False

    def __post_init__(self) -> None:
        self.origins.add(self.origin)
        self.cause_seen = self.cause_seen or self.first_seen

    @property
    def open(self) -> bool:
        return self.opened_at is not None and self.resolved_at is None

    @property
    def root(self) -> str:
        return self.cause or self.origin


@dataclass(frozen=True)
class Change:
    what: str  # opened | grew | degraded | again (an escalated incident's cause) | resolved
    incident: Tracked


def origins(signals: Iterable[Signal], edges: Iterable[tuple[str, str]]) -> dict[str, list[Signal]]:
    """Anomalous signals by origin: the deepest anomalous services each one leads to.

    A service with no anomalous callee is its own origin. A cycle of anomalous
    services with no way out is one group, named by its first service. Fewer
    requests flow downstream: where a caller and its callee both only receive
    fewer requests, the caller's drop explains the callee's, so the origin of
    a drop is the highest service that shows it (its clients sent less), not
    the deepest.
    """
    by_service: dict[str, list[Signal]] = {}
    for s in signals:
        by_service.setdefault(s.service, []).append(s)
    fewer = {svc for svc, sigs in by_service.items() if all(s.kind == "traffic" for s in sigs)}
    callees: dict[str, set[str]] = {svc: set() for svc in by_service}
    for caller, callee in edges:
        if caller in callees and callee in callees and caller != callee:
            if caller in fewer and callee in fewer:
                callees[callee].add(caller)
            else:
                callees[caller].add(callee)
    reach: dict[str, set[str]] = {}

    def deepest(svc: str, path: frozenset[str]) -> set[str]:
        if svc in reach:
            return reach[svc]
        if not callees[svc]:
            found = {svc}
        else:
            found = set()
            for callee in callees[svc] - path:
                found |= deepest(callee, path | {svc})
        if found or not path:
            reach[svc] = found  # a dead end inside a cycle is not cached: it depends on the path
        return found

    groups: dict[str, list[Signal]] = {}
    for svc in sorted(by_service):
        ends = deepest(svc, frozenset()) or {_cycle_name(svc, callees)}
        for end in ends:
            groups.setdefault(end, []).extend(by_service[svc])
    return dict(sorted(groups.items()))


def _cycle_name(start: str, callees: dict[str, set[str]]) -> str:
    """The first service (by name) of the anomalous services reachable from ``start``."""
    seen, todo = {start}, [start]
    while todo:
        for callee in callees[todo.pop()]:
            if callee not in seen:
                seen.add(callee)
                todo.append(callee)
    return min(seen)


# Why an opening may be another open incident's, in words (see IncidentTracker.ambiguous).
AMBIGUOUS = {
    "symptom": "is one of an open incident's symptoms",
    "fewer": "gets fewer calls from an open incident's failing services",
    "beside": "is in trouble beside an open incident",
}


@dataclass
class IncidentTracker:
    confirm_s: float = 2.0
    quiet_s: float = 30.0
    link_s: float = 10.0  # how long a cause's symptoms stay its own after it was last seen
    # How long an escalated incident that went quiet still takes its cause back (see _again)
    again_s: float = 60.0
    incidents: list[Tracked] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def active(self) -> list[Tracked]:
        """Open incidents (confirmed, not resolved), whatever the squad made of them."""
        return [i for i in self.incidents if i.open]

    def owner(
        self, service: str, exclude: Tracked | None = None, now: float | None = None
    ) -> Tracked | None:
        """The open incident that answers for ``service`` as a cause, if any (the oldest).

        With ``now``, not one whose fault ended (see ``ended``).
        """
        for incident in sorted(self.active(), key=lambda i: i.first_seen):
            if incident is exclude or service not in incident.origins:
                continue
            if now is None or not self.ended(incident, now):
                return incident
        return None

    def ended(self, incident: Tracked, now: float) -> bool:
        """Whether a degraded incident's fault is over: its cause quiet for ``link_s``.

        Degraded is the fault going on, weaker, with the fix holding: nobody
        acts on it again. Trouble at its cause after the fault stopped showing
        (a crash where a release's failures were) is another fault, and must
        reach the squad and people rather than vanish into it. A workaround
        of the squad's keeps the fault out of sight until a trial lifts it:
        that quiet is not the fault ending.
        """
        quiet = now - incident.cause_seen > self.link_s
        return incident.state == DEGRADED and not incident.masked and quiet

    def ambiguous(self, incident: Tracked, edges: Iterable[tuple[str, str]]) -> str:
        """Why a confirmed anomaly may be another open incident's ("" if not): the Brain decides.

        The reasons, a key of ``AMBIGUOUS``:

        - ``symptom``: its origin is among an open incident's symptoms (a shared caller).
        - ``fewer``: its origin only receives fewer calls, and the services
          failing with it are all an open incident's. The callers may fail
          first and call less (that incident's), or the origin may hang and
          fail them (its own).
        - ``beside``: the services in trouble with it are all an open
          incident's, or it calls or is called by that incident's cause: the
          origin may be a new cause, or the same cause felt beside it (a
          neighbour on a starved host, a callee of a caller that retries).
        """
        return next(iter(self._ambiguous(incident, edges)), ("", None))[0]

    def awaits_brain(self, incident: Tracked, edges: Iterable[tuple[str, str]]) -> Tracked | None:
        """The open incident an ambiguous anomaly may be, its cause not named yet (or None).

        The squad works on it: its Brain's answer (the cause) tells whether
        this anomaly is that cause seen from another side, so the opening
        waits for it rather than opening a duplicate (None: nothing to wait for).
        """
        for _, other in self._ambiguous(incident, edges):
            if other.busy and not other.cause:
                return other
        return None

    def _ambiguous(
        self, incident: Tracked, edges: Iterable[tuple[str, str]]
    ) -> list[tuple[str, Tracked]]:
        """Each open incident the anomaly may be, with why (see ``ambiguous``), oldest first."""
        own = [s for s in incident.signals if s.service == incident.origin]
        fewer = bool(own) and all(s.kind == "traffic" for s in own)
        rest = incident.services - {incident.origin}
        calls = set(edges)
        found: list[tuple[str, Tracked]] = []
        for other in self.active():
            if other is incident:
                continue
            if incident.origin in other.services and incident.origin not in other.origins:
                found.append(("symptom", other))
            # its cause counts even before its symptoms reach it (the Brain named it)
            elif rest and rest <= other.services | other.origins:
                found.append(("fewer" if fewer else "beside", other))
            elif any({(o, incident.origin), (incident.origin, o)} & calls for o in other.origins):
                found.append(("beside", other))
        return found

    def attribute(self, incident: Tracked, service: str, now: float) -> Tracked:
        """Record ``service`` as the incident's root cause; return the incident that owns it.

        When another open incident already answers for that cause, the new one
        was the same cause seen from another side: it is folded into the older
        (returned), and its services join it. An anomaly at that cause still
        waiting for confirmation is this incident's too: it never opens.
        """
        older = self.owner(service, exclude=incident, now=now) if service else None
        if older is None:
            if service:
                incident.cause = service
                incident.origins.add(service)
                for waiting in [i for i in self.incidents if i.opened_at is None]:
                    if waiting is not incident and waiting.origin == service:
                        incident.services |= waiting.services
                        last = waiting.last_anomalous
                        incident.last_anomalous = max(incident.last_anomalous, last)
                        incident.cause_seen = max(incident.cause_seen, last)
                        self.incidents.remove(waiting)
            return incident
        older.services |= incident.services
        older.origins |= incident.origins
        older.families |= incident.families
        older.last_anomalous = max(older.last_anomalous, now)
        older.cause_seen = max(older.cause_seen, now)
        older.signals = incident.signals
        if incident in self.incidents:
            self.incidents.remove(incident)
        return older

    def settled(self, incident: Tracked, state: str, now: float) -> None:
        """The squad is done with it: ``mitigated``, or ``watching`` (a human has it).

        The quiet period starts over: the time the squad took is not quiet (an
        incident that went quiet while the squad worked is watched again).
        """
        incident.state = state
        incident.settled_at = now
        incident.last_anomalous = now
        incident.resolved_at = None
        incident.busy = False

    def adopt(self, origin: str, now: float) -> Tracked:
        """An incident opened from outside the detectors (an alert about ``origin``).

        Confirmed at once, with no signals yet: the detectors' anomalies at
        ``origin`` join it, and it is watched and resolved like the others.
        """
        incident = Tracked(next(self._ids), origin, {origin}, [], now, now)
        incident.opened_at = now
        self.incidents.append(incident)
        return incident

    def forget(self, incident: Tracked) -> None:
        """Stop watching an incident altogether (its next signals open a new one)."""
        if incident in self.incidents:
            self.incidents.remove(incident)

    def _match(
        self,
        origin: str,
        sigs: list[Signal],
        live: list[Tracked],
        edges: set[tuple[str, str]],
        now: float,
    ) -> Tracked | None:
        by_age = sorted((i for i in live if not self.ended(i, now)), key=lambda i: i.first_seen)
        shows = families(sigs, origin)
        # The latest incident at this cause first: it is what the cause did last.
        for incident in reversed(by_age):
            if origin not in incident.origins:
                continue
            if incident.settled_at is not None and self._other_fault(incident, shows, now):
                continue
            return incident
        for incident in by_age:
            symptom = origin in incident.services and origin not in incident.origins
            if symptom and now - incident.cause_seen <= self.link_s:
                return incident  # its cause flickered below a threshold: still its cascade
        if shows == {"traffic"}:
            # Fewer calls to a callee of a known cause: the cause is not calling
            # it (it fails first, or it is down), not a fault of its own.
            for incident in by_age:
                if any((o, origin) in edges for o in incident.origins):
                    return incident
        own = [s for s in sigs if s.service == origin]
        if own and all(s.kind == "traffic" for s in own) and all(s.kind != "error" for s in sigs):
            # Fewer calls, none failing, from a caller that is part of an incident
            # or waits on one: it sends less because its clients wait on it. A
            # callee that vanished, or whose callers fail, is a fault of its own.
            # Its callees that only get fewer calls too are its own drop passed on.
            callers = {a for a, b in edges if b == origin}
            others = {s.service for s in sigs if s.kind != "traffic"} - {origin}
            for incident in by_age:
                touched = incident.services
                if origin in incident.origins or not others <= touched:
                    continue  # its own cause (judged above), or trouble it does not explain
                if callers & touched or any((a, b) in edges for a in callers for b in touched):
                    return incident
        return None

    def _again(self, origin: str, sigs: list[Signal], now: float) -> Tracked | None:
        """An escalated incident that went quiet, whose own cause shows again (None if none).

        A human has it and nobody closed it: the same kind of trouble at its
        cause is that incident again (watched again), not a new one. A
        different kind is another fault (see ``_other_fault``); a mitigated
        incident that went quiet is resolved, and its cause again a recurrence.
        Only for ``again_s`` after it went quiet: later, the same cause is a
        new incident (the same fault flickering, or a new one, cannot be told
        apart by its cause; the longer the quiet, the likelier a new one).
        """
        shows = families(sigs, origin)
        for incident in sorted(self.incidents, key=lambda i: i.first_seen, reverse=True):
            escalated = incident.settled_at is not None and incident.state == WATCHING
            if incident.resolved_at is None or not escalated or origin not in incident.origins:
                continue
            if now - incident.resolved_at > self.again_s:
                continue
            if not self._other_fault(incident, shows, now):
                return incident
        return None

    def _other_fault(self, incident: Tracked, shows: set[str], now: float) -> bool:
        """Whether trouble at a settled incident's cause is a different fault.

        The squad is done with it and Scout still watches.

        - A human has it (escalated): the same kind of trouble there is this
          incident, a different kind another fault, unless the cause never
          went quiet and went from slow to failing or back: one fault changing
          its face (a pool that made requests wait now makes them fail).
        - Its fix holds (mitigated): what still shows of the fault is weaker,
          and this incident, degraded: slow where it failed, or calls that a
          circuit or shed load took away. Failures where it was only slow, or
          quiet, are another fault (a bad release after a slowdown was fixed).
        """
        known = incident.families
        if incident.state != WATCHING:
            return "error" in shows and "error" not in known
        continuous = now - incident.cause_seen <= self.link_s
        if continuous and shows | known <= {"latency", "error"}:
            return False
        return bool(shows and known and not shows & known)

    def update(
        self, signals: Iterable[Signal], edges: Iterable[tuple[str, str]], now: float
    ) -> list[Change]:
        changes: list[Change] = []
        # Resolved incidents are kept a while (their ids), then let go.
        self.incidents = [
            i for i in self.incidents if i.resolved_at is None or now - i.resolved_at < KEEP_S
        ]
        live = [i for i in self.incidents if i.resolved_at is None]
        seen: dict[int, list[Signal]] = {}
        grown: set[int] = set()
        woke: set[int] = set()
        calls = set(edges)
        for origin, sigs in origins([s for s in signals if s.kind], calls).items():
            services = {s.service for s in sigs}
            incident = self._match(origin, sigs, live, calls, now)
            if incident is None:
                incident = self._again(origin, sigs, now)
                if incident is not None:
                    incident.resolved_at = None
                    live.append(incident)
                    woke.add(incident.id)
            if incident is None:
                incident = Tracked(next(self._ids), origin, services, sigs, now, now)
                incident.families = families(sigs, origin)
                self.incidents.append(incident)
                live.append(incident)
                seen[incident.id] = list(sigs)
                continue
            if services - incident.services:
                grown.add(incident.id)
            incident.services |= services
            incident.last_anomalous = now
            if origin in incident.origins:
                incident.cause_seen = now
                if incident.settled_at is None:
                    incident.families |= families(sigs, origin)
            if incident.id in seen:
                seen[incident.id].extend(s for s in sigs if s not in seen[incident.id])
            else:
                seen[incident.id] = list(sigs)
        for incident in list(live):
            current = seen.get(incident.id)
            if current is not None:
                incident.signals = current
                if incident.opened_at is None:
                    if now - incident.first_seen >= self.confirm_s:
                        incident.opened_at = now
                        changes.append(Change("opened", incident))
                elif incident.state == MITIGATED:
                    incident.state = DEGRADED
                    changes.append(Change("degraded", incident))
                elif incident.id in woke:
                    changes.append(Change("again", incident))
                elif incident.id in grown and incident.state == WATCHING:
                    changes.append(Change("grew", incident))
            elif incident.opened_at is None:
                self.incidents.remove(incident)  # it did not hold: not an incident
            elif incident.busy:
                pass  # the squad still works on it: its quiet is judged once it is done
            elif now - incident.last_anomalous >= self.quiet_s:
                incident.resolved_at = now
                changes.append(Change("resolved", incident))
        return changes
