"""The squad as a LangGraph StateGraph, checkpointed in SQLite per incident.

scout -> brain -> fixer -> verify -> jules
                    \\_____________/   (no action: straight to jules)
"""

from __future__ import annotations

import sqlite3
import time
from functools import partial
from typing import Any

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from sre_space.incidents import Incident
from sre_space.memory.store import KnowledgeEntry
from sre_space.squad import brain, fixer, jules, scout, verify
from sre_space.squad.context import SquadContext
from sre_space.squad.state import SquadState
from sre_space.vocabulary import FAILED


def knowledge_entry(incident: Incident, state: SquadState) -> KnowledgeEntry:
    diagnosis = state["diagnosis"]
    rem = incident.remediation
    verification = state.get("verification", {})
    outcome = str(rem.get("outcome", FAILED))
    params = rem.get("params", {})
    summary = (
        f"{diagnosis['service']} {diagnosis['operation']} {diagnosis['fault_class']}: "
        f"{diagnosis.get('exception') or 'anomaly'}. Fixed by {rem['action']} on "
        f"{rem['service']} {params} -> {outcome}."
    )
    return KnowledgeEntry(
        id=incident.id,
        signature=str(diagnosis["signature"]),
        service=str(diagnosis["service"]),
        operation=str(diagnosis["operation"]),
        fault_class=str(diagnosis["fault_class"]),
        exception=str(diagnosis.get("exception", "")),
        summary=summary,
        remediation={"action": rem["action"], "service": rem["service"], "params": params},
        outcome=outcome,
        evidence={
            "before": verification.get("before"),
            "after": verification.get("after"),
            "exemplar_trace_ids": diagnosis.get("evidence", {}).get("exemplar_trace_ids", []),
            "source": rem.get("source"),
            "memory_ref": rem.get("memory_ref"),
        },
        ttm_s=incident.ttm_s,
        created_at=time.time(),
        status_codes=[int(c) for c in diagnosis.get("status_codes", [])],
        call_edge=str(diagnosis.get("call_edge", "")),
        diagnosis=(
            f"root cause {diagnosis['service']} {diagnosis['operation']} "
            f"({diagnosis['fault_class']})"
        ),
        confidence=diagnosis.get("confidence"),
    )


def _after_fixer(state: SquadState) -> str:
    if state.get("relook"):
        return "brain"
    return "verify" if state.get("applied") else "jules"


def build(ctx: SquadContext, checkpoints: sqlite3.Connection | BaseCheckpointSaver[Any]) -> Any:
    """The squad's graph, checkpointed on ``checkpoints`` (the caller owns and closes it):
    a SQLite connection, or a saver (state/checkpoints.py: PostgreSQL's, shared by minds)."""
    graph = StateGraph(SquadState)
    graph.add_node("scout", partial(scout.scout, ctx))
    graph.add_node("brain", partial(brain.brain, ctx))
    graph.add_node("fixer", partial(fixer.fixer, ctx))
    graph.add_node("verify", partial(verify.verify, ctx))
    graph.add_node("jules", partial(jules.jules, ctx, entry_factory=knowledge_entry))
    graph.add_edge(START, "scout")
    graph.add_edge("scout", "brain")
    graph.add_edge("brain", "fixer")
    graph.add_conditional_edges(
        "fixer", _after_fixer, {"brain": "brain", "verify": "verify", "jules": "jules"}
    )
    graph.add_edge("verify", "jules")
    graph.add_edge("jules", END)
    saver = (
        checkpoints if isinstance(checkpoints, BaseCheckpointSaver) else SqliteSaver(checkpoints)
    )
    return graph.compile(checkpointer=saver)


def run_incident(app: Any, state: SquadState) -> SquadState:
    config = {"configurable": {"thread_id": state["incident_id"]}}
    result: SquadState = app.invoke(state, config)
    return result
