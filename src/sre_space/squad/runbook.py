"""The runbook catalogue: the remediation for a diagnosis when memory has none.

Decisions read only the diagnosis (from telemetry: service, fault class, call
edge, evidence, the releases seen before and after the onset) and the service's
abstract knobs and process state as its target reports them (actuators/knobs.py:
``pool_size``, ``circuits``, ``release``...; ``_process``: how many of its
replicas run). They never look at what chaos was injected, nor at one system's
key names: the target maps knobs to keys.

| fault class | evidence                                        | action                           |
|-------------|-------------------------------------------------|----------------------------------|
| saturation  | the service has a pool-size knob                | patch_config pool_size (x5)      |
| saturation  | its caller holds the pool to it (a datastore)    | patch_config on the caller       |
| saturation  | no pool to resize                               | scale_out by 1                   |
| timeout     | it accepted the call and never answered         | restart (rolling)                |
| unreachable | some replica is not running                     | restart (rolling)                |
| unreachable | every replica runs, the caller has a circuit    | open_circuit on the caller       |
| error       | a release came in at the onset, a good one before | rollback to the good release   |
| error       | no release change                               | investigate (a person), escalate |
| latency     | callers wait before it starts (outside it)      | open_circuit on the caller       |
| latency     | in its own work                                 | restart (rolling)                |
| cpu         | one replica / several                           | restart / scale_out by 1         |
| memory      | its memory grew past what it may use            | restart (rolling)                |

A plan with ``escalate: True`` is a proposal only: the Fixer writes it down for
a person and does not act on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sre_space.vocabulary import FAULT_CLASSES, INVESTIGATE, PlanAction

POOL_GROWTH = 5
POOL_CAP = 500


def _plan(
    action: PlanAction, service: str, params: dict[str, Any], reason: str, *, escalate: bool = False
) -> dict[str, Any]:
    plan: dict[str, Any] = {"action": action, "service": service, "params": params}
    plan["reason"] = reason
    if escalate:
        plan["escalate"] = True
    return plan


def _replicas(config: dict[str, Any]) -> int:
    return int(config.get("_process", {}).get("replicas", 1) or 1)


def _restart(service: str, config: dict[str, Any], why: str) -> dict[str, Any]:
    # One replica at a time: the others keep serving while each comes back.
    return _plan("restart", service, {"batch": 1, "replicas": _replicas(config)}, why)


def _caller(diagnosis: dict[str, Any], kind: str) -> str:
    """Who calls the root cause: the call edge, else the span the evidence came from."""
    service = str(diagnosis.get("service", ""))
    edge = str(diagnosis.get("call_edge", ""))
    if " -> " in edge:
        caller, callee = edge.split(" -> ", 1)
        if callee == service and caller:
            return caller
    for signal in diagnosis.get("evidence", {}).get("signals", []):
        span_service = str(signal.get("span", {}).get("service", ""))
        if signal.get("kind") == kind and span_service and span_service != service:
            return span_service
    return ""


def _latency_outside(diagnosis: dict[str, Any]) -> bool:
    """The heaviest latency evidence is a caller's wait on the service, not its own work."""
    service = str(diagnosis.get("service", ""))
    for signal in diagnosis.get("evidence", {}).get("signals", []):
        if signal.get("kind") == "latency":
            return str(signal.get("span", {}).get("service", "")) != service
    return False


def _has_circuit(
    caller: str, service: str, config_of: Callable[[str], dict[str, Any]] | None
) -> bool:
    """Whether the caller has a circuit breaker for this dependency to open."""
    if not caller:
        return False
    return config_of is None or service in (config_of(caller).get("circuits") or {})


def _open_circuit(
    diagnosis: dict[str, Any],
    kind: str,
    config_of: Callable[[str], dict[str, Any]] | None,
    why: str,
) -> dict[str, Any]:
    service = str(diagnosis.get("service", ""))
    caller = _caller(diagnosis, kind)
    if _has_circuit(caller, service, config_of):
        return _plan(
            "open_circuit",
            caller,
            {"dependency": service},
            f"{why}; {caller} stops calling it and degrades until it answers again",
        )
    who = caller or "its callers"
    return _plan(
        "open_circuit",
        caller or service,
        {"dependency": service},
        f"{why}; {who} declares no circuit breaker to {service}: add one (a circuit knob "
        "on the caller's target) or route around it",
        escalate=True,
    )


def _rollback(diagnosis: dict[str, Any], service: str) -> dict[str, Any]:
    releases = diagnosis.get("releases") or {}
    bad, good = releases.get("bad"), releases.get("good")
    if bad and good and bad != good:
        return _plan(
            "rollback",
            service,
            {"to": str(good), "from": str(bad)},
            f"{service} fails since release {bad} came in "
            f"({diagnosis.get('exception') or 'errors'}); roll back to {good}, "
            "which served without errors before the onset",
        )
    return _plan(
        INVESTIGATE,
        service,
        {},
        f"{service} answers with errors ({diagnosis.get('exception') or 'see evidence'}) and "
        "no release change shows in its spans or its platform's history: a person decides "
        "(a change elsewhere, a dependency, data)",
        escalate=True,
    )


def plan_for(
    diagnosis: dict[str, Any],
    config: dict[str, Any],
    config_of: Callable[[str], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """One plan (``action``, ``service``, ``params``, ``reason``; ``escalate`` if proposal only).

    ``config`` holds the service's knobs (``{}`` when its platform cannot be
    read); ``config_of`` reads another service's (a caller's circuit breakers);
    without it a caller is assumed to have one.
    """
    service = str(diagnosis.get("service", ""))
    fault = str(diagnosis.get("fault_class", ""))
    process = config.get("_process", {})
    running, replicas = int(process.get("running", 1)), int(process.get("replicas", 1))
    if fault == "saturation":
        if "pool_size" in config:
            current = int(config["pool_size"])
            target = min(POOL_CAP, max(current * POOL_GROWTH, current + 1))
            return _plan(
                "patch_config",
                service,
                {"pool_size": target},
                f"{service}'s pool is exhausted at {current}; raise it to {target}",
            )
        caller = _caller(diagnosis, "latency") or _caller(diagnosis, "error")
        pool = (config_of(caller) if config_of and caller else {}).get("pool_size")
        if pool is not None:  # the pool in front of a datastore is its client's
            target = min(POOL_CAP, max(int(pool) * POOL_GROWTH, int(pool) + 1))
            return _plan(
                "patch_config",
                caller,
                {"pool_size": target},
                f"{caller}'s pool to {service} is exhausted at {pool}; raise it to {target}",
            )
        return _plan(
            "scale_out", service, {"by": 1}, f"{service} is saturated; add a replica to share it"
        )
    if fault == "timeout":
        return _restart(service, config, f"{service} accepts calls and never answers; restart it")
    if fault == "unreachable":
        if running < replicas:
            return _restart(
                service, config, f"{service}: {running} of {replicas} process(es) running"
            )
        return _open_circuit(
            diagnosis, "error", config_of, f"{service} cannot be reached though its processes run"
        )
    if fault == "error":
        return _rollback(diagnosis, service)
    if fault == "latency":
        if _latency_outside(diagnosis):
            caller = _caller(diagnosis, "latency") or "its callers"
            return _open_circuit(
                diagnosis, "latency", config_of, f"{caller} waits on {service} before it works"
            )
        return _restart(service, config, f"{service} is slow in its own work; restart it")
    if fault == "cpu":
        if replicas > 1:
            return _plan(
                "scale_out", service, {"by": 1}, f"{service} is short of CPU; add a replica"
            )
        return _restart(service, config, f"{service} burns its CPU; a restart stops what spins")
    if fault == "memory":
        return _restart(service, config, f"{service} is out of memory; a restart frees it")
    return _plan(
        "restart",
        service,
        {},
        f"no runbook entry for fault class {fault!r} (known: {', '.join(FAULT_CLASSES)})",
        escalate=True,
    )
