"""Jules's hardening proposals for systemic failures.

Systemic: the same signature recurring, a fix that failed, or several services
hit at once. Each proposal is a list of concrete changes with the reasoning
that produced them, as a diff against the service's knobs (actuators/knobs.py:
``pool_size``, ``pool_timeout_ms``, ``memory_limit_mb``) where its target reports
them, else against nothing known. Proposals are advice for a person; the squad
never applies them.
"""

from __future__ import annotations

import math
from typing import Any

from sre_space.vocabulary import DRY_RUN, RECOVERED, UNCLEAR

HEADROOM = 1.5  # capacity over the observed need, for bursts
DEFAULT_MEMORY_LIMIT_MB = 256  # where a service has none yet


def systemic_reasons(state: dict[str, Any], outcome: str) -> list[str]:
    reasons = []
    signature = state.get("diagnosis", {}).get("signature")
    recurrences = [h["id"] for h in state.get("recall", []) if h.get("signature") == signature]
    if recurrences:
        reasons.append(f"the same failure happened before ({', '.join(recurrences)})")
    if outcome not in (RECOVERED, UNCLEAR, DRY_RUN):  # unclear: it held, credit unknown
        reasons.append(f"the remediation did not hold (outcome: {outcome})")
    services = {s["service"] for s in state.get("signals", [])}
    if len(services) > 1:
        reasons.append(f"{len(services)} services were hit at once ({', '.join(sorted(services))})")
    return reasons


def pool_size(arrival_per_s: float, latency_s: float) -> int:
    """Little's law: connections in use L = arrival rate x time each holds one."""
    return max(1, math.ceil(arrival_per_s * latency_s * HEADROOM))


def _memory_changes(service: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """A hard memory limit: the platform stops one replica cleanly before requests fail."""
    current = config.get("memory_limit_mb")
    limit = int(current) if current else DEFAULT_MEMORY_LIMIT_MB
    return [{"service": service, "key": "memory_limit_mb", "from": current, "to": limit}]


def propose(
    state: dict[str, Any], config: dict[str, Any], outcome: str, window_s: float
) -> dict[str, Any] | None:
    reasons = systemic_reasons(state, outcome)
    if not reasons:
        return None
    diagnosis = state["diagnosis"]
    service = diagnosis["service"]
    verification = state.get("verification") or {}
    before = verification.get("before") or {}
    after = verification.get("after") or {}
    changes: list[dict[str, Any]] = []
    reasoning: list[str] = []
    arrival = before.get("requests", 0) / window_s if window_s else 0.0
    latency_s = max(before.get("p95_ms", 0.0), after.get("p95_ms", 0.0)) / 1000
    if "pool_size" in config and arrival and latency_s:
        need = pool_size(arrival, latency_s)
        changes.append(
            {"service": service, "key": "pool_size", "from": config["pool_size"], "to": need}
        )
        reasoning.append(
            f"Little's law: {arrival:.1f} req/s x {latency_s:.2f} s held per request = "
            f"{arrival * latency_s:.1f} connections in use; x{HEADROOM} headroom -> {need}"
        )
    if "pool_timeout_ms" in config and latency_s:
        # Fail fast rather than queue past the point the caller gives up anyway.
        timeout_ms = int(min(1000, max(100, latency_s * 1000 / 2)))
        changes.append(
            {
                "service": service,
                "key": "pool_timeout_ms",
                "from": config["pool_timeout_ms"],
                "to": timeout_ms,
            }
        )
        reasoning.append(
            f"pool wait bounded to half the p95 ({timeout_ms} ms) so overload sheds instead of piling up"
        )
    if diagnosis.get("fault_class") == "memory":
        changes.extend(_memory_changes(service, config))
        reasoning.append(
            f"{service} ran out of memory: a hard memory limit on its container or unit "
            "(Kubernetes resources.limits.memory, Compose mem_limit, systemd MemoryMax) "
            "makes the platform restart one replica cleanly instead of letting requests fail"
        )
    error_rate = float(before.get("error_rate", 0.0))
    if error_rate:
        threshold = round(min(0.5, max(0.05, error_rate / 2)), 2)
        changes.append(
            {
                "service": service,
                "key": "breaker_error_threshold",
                "from": None,
                "to": threshold,
            }
        )
        reasoning.append(
            f"a circuit breaker opening at {threshold:.0%} errors over 10 s would have shed load at "
            f"{error_rate:.0%} instead of letting every caller wait"
        )
        changes.append({"service": service, "key": "retry_budget", "from": None, "to": 0.1})
        reasoning.append("retries capped at 10% of requests so a slow dependency is not hit harder")
    diff = "\n".join(f"{c['service']}.{c['key']}: {c['from']} -> {c['to']}" for c in changes)
    return {
        "title": f"harden {service} against {diagnosis['fault_class']}",
        "why": reasons,
        "changes": changes,
        "reasoning": reasoning,
        "diff": diff,
        "status": "open",
    }
