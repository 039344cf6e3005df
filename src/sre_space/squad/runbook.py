"""The runbook catalogue: the remediation for a diagnosis when memory has none.

Decisions read only the diagnosis (from telemetry: service, fault class,
exception text, call edge, evidence) and the service's current runtime
configuration and process state as its platform reports them (``_process``:
how many of its replicas run); they never look at what chaos was injected.

| diagnosis                                              | action                     |
|--------------------------------------------------------|----------------------------|
| saturation, pool/connection message, a pool to resize  | patch_config (pool size)   |
| errors, out of memory                                  | restart (rolling)          |
| errors, a release with a previous one to go back to    | rollback                   |
| never answered, some replica not running               | restart (rolling)          |
| never answered, connected but no answer (timed out)    | restart (rolling)          |
| never answered, refused though every replica runs      | open_circuit on the caller |
| latency lost on the way to it (callers wait, it works) | open_circuit on the caller |
| latency in its own work                                | restart (rolling)          |
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

POOL_KEY = "db_pool_size"
POOL_GROWTH = 5
POOL_CAP = 500

_MEMORY = re.compile(r"memoryerror|out of memory", re.I)
_REFUSED = re.compile(r"refused|reset by peer|no connection", re.I)
_NO_ANSWER = re.compile(r"timed? ?out|no answer|remote end closed", re.I)


def _plan(action: str, service: str, params: dict[str, Any], reason: str) -> dict[str, Any]:
    return {"action": action, "service": service, "params": params, "reason": reason}


def _restart(service: str, config: dict[str, Any], why: str) -> dict[str, Any]:
    replicas = int(config.get("_process", {}).get("replicas", 1) or 1)
    # One replica at a time: the others keep serving while each comes back.
    return _plan("restart", service, {"batch": 1, "replicas": replicas}, why)


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


def _circuit(
    caller: str, service: str, config_of: Callable[[str], dict[str, Any]] | None
) -> bool:
    """Whether the caller has a circuit breaker for this dependency to open."""
    if not caller:
        return False
    return config_of is None or f"circuit_{service}" in config_of(caller)


def plan_for(
    diagnosis: dict[str, Any],
    config: dict[str, Any],
    config_of: Callable[[str], dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """One action (``action``, ``service``, ``params``, ``reason``) or ``None`` to escalate.

    ``config_of`` reads another service's runtime configuration (a caller's
    circuit breakers); without it a caller is assumed to have one.
    """
    service = str(diagnosis.get("service", ""))
    fault = diagnosis.get("fault_class")
    raw_message = str(diagnosis.get("exception", ""))
    message = raw_message.lower()
    process = config.get("_process", {})
    running, replicas = int(process.get("running", 1)), int(process.get("replicas", 1))
    if (
        fault == "saturation"
        and POOL_KEY in config
        and ("pool" in message or "connection" in message)
    ):
        current = int(config[POOL_KEY])
        target = min(POOL_CAP, max(current * POOL_GROWTH, current + 1))
        return _plan(
            "patch_config",
            service,
            {POOL_KEY: target},
            f"connection pool exhausted at {current}; raise it to {target}",
        )
    if fault == "error" and _MEMORY.search(message):
        return _restart(service, config, f"{service} is out of memory; restart frees it")
    if fault == "error":
        release, previous = config.get("release"), config.get("previous_release")
        if release and previous and previous != release:
            return _plan(
                "rollback",
                service,
                {"to": previous},
                f"{service} fails since release {release} ({raw_message or 'errors'}); "
                f"roll back to {previous}",
            )
        return None
    if fault == "crash":
        if running < replicas:
            return _restart(
                service, config, f"{service}: {running} of {replicas} process(es) running"
            )
        if _REFUSED.search(message):
            caller = _caller(diagnosis, "error")
            if _circuit(caller, service, config_of):
                return _plan(
                    "open_circuit",
                    caller,
                    {"dependency": service},
                    f"{service} refuses connections though its processes run: not ours to "
                    f"restart; {caller} stops calling it and degrades",
                )
            return None
        if _NO_ANSWER.search(message) or not message:
            return _restart(service, config, f"{service} accepts but does not answer; restart it")
        return None
    if fault == "latency":
        if _latency_outside(diagnosis):
            caller = _caller(diagnosis, "latency")
            if _circuit(caller, service, config_of):
                return _plan(
                    "open_circuit",
                    caller,
                    {"dependency": service},
                    f"{caller} waits on {service} before it starts working; "
                    f"{caller} stops waiting on it and degrades",
                )
            return None
        return _restart(service, config, f"{service} is slow in its own work; restart it")
    return None
