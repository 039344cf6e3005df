"""sre-space's own words, each spelt once: fault classes, incident statuses,
actions, remediation outcomes and severities.

Like OpenTelemetry's semantic conventions module, every word is a constant
here and is imported, never retyped. The values are contracts: they are
written to the incident JSON, the SQLite state, memory entries and
notifications, and users' scripts read them (DESIGN, "Contracts"). Extend with
care: memory and the drills depend on the words. This module imports nothing
from the package, so every layer may import it.

Each group is a ``Literal`` type (for mypy), a tuple of all its words in their
order, named constants, and a dict of what each word means.
"""

from __future__ import annotations

from typing import Final, Literal, get_args

# --- fault classes: one vocabulary for the Brain, the runbook and memory ----------

FaultClass = Literal["saturation", "timeout", "unreachable", "error", "latency", "cpu", "memory"]
FAULT_CLASSES: Final[tuple[FaultClass, ...]] = get_args(FaultClass)
SATURATION: Final = "saturation"
TIMEOUT: Final = "timeout"
UNREACHABLE: Final = "unreachable"
ERROR: Final = "error"
LATENCY: Final = "latency"
CPU: Final = "cpu"
MEMORY: Final = "memory"

# In a person's words: shown in memory, reports and the screen, and embedded in
# memory entries (changing one changes what people's searches find).
FAULT_CLASS_MEANINGS: Final[dict[str, str]] = {
    SATURATION: "a pool or queue ran out: requests wait for a connection or a worker, "
    "then fail; the service is overloaded or its pool is too small",
    TIMEOUT: "a downstream stopped answering: callers wait and time out",
    UNREACHABLE: "a downstream cannot be reached: connections are refused or reset, or its "
    "name does not resolve; it is down, crashed or stopped",
    ERROR: "the service fails requests with its own exceptions or server errors, "
    "often after a release or a change",
    LATENCY: "the service is slow: requests take longer in its own work or on the way in",
    CPU: "the service is starved of CPU: every operation of it is slower",
    MEMORY: "the service runs out of memory: it grows until allocations fail or the "
    "process is killed",
}


def describe(fault_class: str) -> str:
    """The class in a person's words (the class itself for one outside the vocabulary)."""
    return FAULT_CLASS_MEANINGS.get(fault_class, fault_class)


# --- incident statuses -------------------------------------------------------------

IncidentStatus = Literal[
    "open", "diagnosing", "mitigating", "mitigated", "degraded", "resolved", "escalated"
]
STATUSES: Final[tuple[IncidentStatus, ...]] = get_args(IncidentStatus)
OPEN: Final = "open"
DIAGNOSING: Final = "diagnosing"
MITIGATING: Final = "mitigating"
MITIGATED: Final = "mitigated"
DEGRADED: Final = "degraded"
RESOLVED: Final = "resolved"
ESCALATED: Final = "escalated"
ACTIVE: Final[tuple[IncidentStatus, ...]] = (OPEN, DIAGNOSING, MITIGATING)  # the squad works on it
# The squad is done; Scout still watches. Each resolves after a quiet period.
WATCHED: Final[tuple[IncidentStatus, ...]] = (MITIGATED, DEGRADED, ESCALATED)

STATUS_MEANINGS: Final[dict[str, str]] = {
    OPEN: "detected; the squad has not started on it yet",
    DIAGNOSING: "the Brain is looking for the root cause",
    MITIGATING: "the Fixer is applying (or waiting to apply) a remediation",
    MITIGATED: "the fix holds: the SLO came back",
    DEGRADED: "the fix holds but the cause still shows, weaker (the fault is still there)",
    RESOLVED: "over: quiet for a while, or a person resolved it",
    ESCALATED: "handed to a person: no safe fix, or the fix did not help",
}

# --- actions the Fixer may take (the runbook's and memory's remediations) ----------

Action = Literal["restart", "scale_out", "patch_config", "rollback", "open_circuit", "shed_load"]
ACTIONS: Final[tuple[Action, ...]] = get_args(Action)
RESTART: Final = "restart"
SCALE_OUT: Final = "scale_out"
PATCH_CONFIG: Final = "patch_config"
ROLLBACK: Final = "rollback"
OPEN_CIRCUIT: Final = "open_circuit"
SHED_LOAD: Final = "shed_load"
# Moves that put an action back; carried out by undo, never planned.
CLOSE_CIRCUIT: Final = "close_circuit"  # undoes open_circuit
SCALE_IN: Final = "scale_in"  # undoes scale_out
# The plan when the runbook has no change to make: a person looks (at a change
# elsewhere, a dependency, the data). Never carried out, never in ACTIONS.
INVESTIGATE: Final = "investigate"
PlanAction = Literal[Action, "investigate"]  # what a runbook plan may name

# Memory embeds the first six in its entries' text (memory.model): changing one
# changes what people's searches find.
ACTION_MEANINGS: Final[dict[str, str]] = {
    RESTART: "restart the process",
    SCALE_OUT: "scale out, more replicas and capacity",
    PATCH_CONFIG: "change the configuration",
    ROLLBACK: "roll back the release to the previous version",
    OPEN_CIRCUIT: "open the circuit breaker, stop calling the failing dependency",
    SHED_LOAD: "shed load, reject excess requests",
    CLOSE_CIRCUIT: "close the circuit breaker again (the undo of open_circuit)",
    SCALE_IN: "remove the replicas a scale out added (its undo)",
    INVESTIGATE: "a person looks; nothing is carried out",
}

# --- remediation outcomes (``remediation.outcome``) --------------------------------

Outcome = Literal[
    "pending",
    "awaiting_approval",
    "recovered",
    "unclear",
    "undone",
    "failed",
    "refused",
    "denied",
    "proposed",
    "dry-run",
]
OUTCOMES: Final[tuple[Outcome, ...]] = get_args(Outcome)
PENDING: Final = "pending"
AWAITING_APPROVAL: Final = "awaiting_approval"
RECOVERED: Final = "recovered"
UNCLEAR: Final = "unclear"
UNDONE: Final = "undone"
FAILED: Final = "failed"
REFUSED: Final = "refused"
DENIED: Final = "denied"
PROPOSED: Final = "proposed"
DRY_RUN: Final = "dry-run"

OUTCOME_MEANINGS: Final[dict[str, str]] = {
    PENDING: "the Fixer is working on it",
    AWAITING_APPROVAL: "policy waits for a person to approve or deny the change",
    RECOVERED: "the change was made and the SLO came back (verified)",
    UNCLEAR: "the SLO came back, but something else may explain it: not credited to the "
    "change, never learnt by memory",
    UNDONE: "the change did not help and was put back",
    FAILED: "the system refused the change, or its undo failed",
    REFUSED: "policy did not allow the change",
    DENIED: "a person said no",
    PROPOSED: "written down for a person; nothing was done",
    DRY_RUN: "what would have been done, under the dry-run mode",
}

# --- severities (notifications) ----------------------------------------------------

Severity = Literal["critical", "error", "warning", "info"]
SEVERITIES: Final[tuple[Severity, ...]] = get_args(Severity)
CRITICAL: Final = "critical"
SEVERITY_ERROR: Final = "error"  # the same word as the fault class ERROR, another meaning
WARNING: Final = "warning"
INFO: Final = "info"

SEVERITY_MEANINGS: Final[dict[str, str]] = {
    CRITICAL: "a service cannot be reached (unreachable)",
    SEVERITY_ERROR: "requests fail or time out (error, timeout, saturation, memory), or the "
    "incident has no diagnosis yet",
    WARNING: "requests are slower (latency, cpu)",
    INFO: "a test message (sre-space notify test)",
}

# --- settings a change writes -------------------------------------------------------

# A service's setting in its environment (SRE_SPACE_CFG_POOL_SIZE): written by
# the compose/docker/plan actuators, read by the lab's services at start.
ENV_PREFIX: Final = "SRE_SPACE_CFG_"
