"""Jules: archives a verified outcome to memory, and proposes hardening."""

from __future__ import annotations

from typing import Any

from sre_space.squad import hardening
from sre_space.squad.context import SquadContext
from sre_space.squad.state import SquadState
from sre_space.vocabulary import UNCLEAR


def jules(ctx: SquadContext, state: SquadState, entry_factory: Any) -> SquadState:
    incident = ctx.incident(state)
    diagnosis = state.get("diagnosis") or {}
    if not diagnosis or not state.get("applied"):
        # Nothing was applied (no diagnosis, no safe action, or dry-run): a human takes over.
        incident.status = "escalated"
        ctx.log.save(incident)
        ctx.say("jules", state, f"nothing to archive; incident is {incident.status}")
        return {}
    if incident.remediation.get("outcome") == UNCLEAR:
        # Memory keeps verified outcomes: an unclear one would teach a fix that may
        # have done nothing (or, as a failure, forbid one that may have worked).
        ctx.say(
            "jules",
            state,
            f"not archived: the recovery is not credited to {incident.remediation['action']} "
            f"{incident.remediation.get('service')} (outcome unclear); nothing learnt",
        )
    else:
        entry = entry_factory(incident, state)
        ctx.memory.archive(entry)
        ctx.say(
            "jules",
            state,
            f"archived {incident.id} to memory: {incident.remediation['action']} -> "
            f"{incident.remediation['outcome']}",
        )
    window_s = state["applied"]["ts"] + 1.0 - state["window_start_ns"] / 1e9
    try:
        config = ctx.actuator.config(diagnosis["service"])
    except Exception:  # advice is optional; an unreachable lab must not lose the archive
        config = {}
    proposal = hardening.propose(dict(state), config, incident.remediation["outcome"], window_s)
    if proposal:
        incident.hardening.append(proposal)
        ctx.log.save(incident)
        ctx.say(
            "jules",
            state,
            f"hardening proposal: {proposal['title']} ({'; '.join(proposal['why'])}): "
            + ", ".join(f"{c['key']} -> {c['to']}" for c in proposal["changes"]),
            proposal=proposal,
        )
    return {}
