"""People answer: ack, resolve, note. Each goes to the incident's audit trail.

Exit codes: 0 recorded; 2 usage (an unknown incident, resolving or
acknowledging one that is already resolved, an empty note); 3 the incident
log cannot be written (locked past its timeout, a read-only home).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Annotated

import typer

from sre_space import state
from sre_space.cli_common import JsonOpt, out, say
from sre_space.config import load
from sre_space.errors import Unavailable, UsageError
from sre_space.incidents import Incident, IncidentLog, person_from_env

IdArg = Annotated[str, typer.Argument(help="The incident (sre-space incidents lists them).")]
ByOpt = Annotated[
    str | None, typer.Option("--by", help="Who answers (default: $USER, else 'cli').")
]


def _answer(incident_id: str, act: Callable[[IncidentLog], Incident]) -> Incident:
    place = state.where(load())
    if not state.exists(place):
        raise UsageError(f"no incident {incident_id!r}")
    try:
        log = IncidentLog(place)
        try:
            return act(log)
        finally:
            log.close()
    except sqlite3.Error as exc:  # locked past the timeout, a read-only or broken file
        raise Unavailable(f"cannot write the incident log {place}: {exc}") from None


def _show(incident: Incident, line: str, json_out: bool) -> None:
    if json_out:
        out(incident.to_json())
    else:
        say(line)


def ack(incident_id: IdArg, by: ByOpt = None, json_out: JsonOpt = False) -> None:
    """Acknowledge an incident: you have it. Recorded in its audit trail."""
    who = by if by is not None else person_from_env()
    incident = _answer(incident_id, lambda log: log.acknowledge(incident_id, who))
    _show(incident, f"{incident.id} acknowledged by {who.strip()} ({incident.status})", json_out)


def resolve(
    incident_id: IdArg,
    note: Annotated[
        str | None, typer.Option("--note", help="Why it is over; kept in the incident.")
    ] = None,
    by: ByOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Resolve an incident yourself: status resolved, by you. Final: the mind keeps it resolved."""
    who = by if by is not None else person_from_env()
    incident = _answer(incident_id, lambda log: log.resolve(incident_id, who, note or ""))
    _show(incident, f"{incident.id} resolved by {incident.resolved_by}", json_out)


def note(
    incident_id: IdArg,
    text: Annotated[str, typer.Argument(help="The note (quote it).")],
    by: ByOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a note to an incident's audit trail."""
    who = by if by is not None else person_from_env()
    incident = _answer(incident_id, lambda log: log.note(incident_id, text, who))
    _show(incident, f"note added to {incident.id}", json_out)
