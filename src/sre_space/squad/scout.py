"""The Scout: opens the incident with what the detector saw."""

from __future__ import annotations

from sre_space.squad.context import SquadContext
from sre_space.squad.state import SquadState


def scout(ctx: SquadContext, state: SquadState) -> SquadState:
    incident = ctx.incident(state)
    worst = max(state.get("signals", []), key=lambda s: s["errors"] + s["slow"], default=None)
    if worst:
        ctx.say(
            "scout",
            state,
            f"incident opened: {len(state['signals'])} anomalous operation(s); worst "
            f"{worst['service']} {worst['operation']}: {worst['error_rate']:.0%} errors, "
            f"p95 {worst['p95_ms']:.0f} ms over {worst['count']} requests"
            + (f"; {worst['reason']}" if worst.get("reason") else ""),
            signals=state["signals"],
        )
    incident.status = "diagnosing"
    ctx.log.save(incident)
    return {}
