"""After a crash: finish what a mind left between applying a change and judging it.

A mind killed while the Fixer's change was being verified leaves the incident
``mitigating`` with an ``applied`` step in its audit trail, and the squad's
LangGraph checkpoint (SQLite, one thread per incident) before ``verify``, or
before ``fixer`` when it died between the change and the checkpoint. The next
mind runs ``verify`` again from there: fresh telemetry says the change worked
(``verified``, recovered) or it is undone (``undone``) and the incident
escalated. The audit trail records the restart (``resumed``) before that.

Without an ``applied`` step nobody can tell whether the change happened (the
mind died inside the call): the incident is escalated, and the trail says so.
"""

from __future__ import annotations

import time
from typing import Any

from sre_space.incidents import IncidentLog
from sre_space.squad.context import PLAN_KEYS
from sre_space.vocabulary import AWAITING_APPROVAL

INTERRUPTED = "mitigating"  # the status an incident has between the Fixer's change and its verdict


def resume_interrupted(graph: Any, log: IncidentLog) -> list[str]:
    """Verify again (or undo) every change a previous mind left unjudged; the incidents' ids."""
    resumed: list[str] = []
    for incident in log.list(limit=50, status=INTERRUPTED):
        if incident.remediation.get("outcome") == AWAITING_APPROVAL:
            continue  # paused for a human, not interrupted: the mind resumes it when answered
        config = {"configurable": {"thread_id": incident.id}}
        values = dict(graph.get_state(config).values or {})
        applied = next((a for a in reversed(incident.audit) if a.get("step") == "applied"), None)
        if applied is None or not values.get("diagnosis"):
            incident.status = "escalated"
            incident.audit.append(
                {
                    "ts": time.time(),
                    "step": "interrupted",
                    "reason": "the mind stopped while applying the change; whether it "
                    "happened is unknown",
                }
            )
            log.save(incident, why="the mind stopped mid-change: a human checks", by="mind")
            continue
        incident.audit.append(
            {
                "ts": time.time(),
                "step": "resumed",
                "reason": "the mind stopped while verifying the change; verifying it again",
            }
        )
        log.save(incident, why="the mind restarted during verification", by="mind")
        log.emit("mind", "restarted during verification: verifying again", incident_id=incident.id)
        plan = {k: applied.get(k) for k in PLAN_KEYS}
        result = dict(applied.get("result") or {})
        result.setdefault("ts", applied.get("ts", time.time()))
        # As if the Fixer had just finished: the graph goes on to verify, then Jules.
        graph.update_state(
            config, {"plan": plan, "applied": result, "relook": False}, as_node="fixer"
        )
        graph.invoke(None, config)
        resumed.append(incident.id)
    return resumed
