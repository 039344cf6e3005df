"""The runbook catalogue: the remediation for a diagnosis when memory has none.

Decisions read only the diagnosis (from telemetry) and the service's current
runtime configuration; they never look at what chaos was injected.
"""

from __future__ import annotations

from typing import Any

POOL_KEY = "db_pool_size"
POOL_GROWTH = 5
POOL_CAP = 500


def plan_for(diagnosis: dict[str, Any], config: dict[str, Any]) -> dict[str, Any] | None:
    """One action (``action``, ``service``, ``params``, ``reason``) or ``None`` to escalate."""
    service = str(diagnosis.get("service", ""))
    fault = diagnosis.get("fault_class")
    message = str(diagnosis.get("exception", "")).lower()
    if (
        fault == "saturation"
        and POOL_KEY in config
        and ("pool" in message or "connection" in message)
    ):
        current = int(config[POOL_KEY])
        target = min(POOL_CAP, max(current * POOL_GROWTH, current + 1))
        return {
            "action": "patch_config",
            "service": service,
            "params": {POOL_KEY: target},
            "reason": f"connection pool exhausted at {current}; raise it to {target}",
        }
    if fault == "crash":
        return {
            "action": "restart",
            "service": service,
            "params": {},
            "reason": f"{service} is not answering; restart it",
        }
    return None
