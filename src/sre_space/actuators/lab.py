"""The Fixer's hands on the embedded lab: its loopback control API.

The lab target: it maps the runbook's abstract knobs (actuators/knobs.py) to
the lab's own configuration keys. It is the built-in target for every service
of a running lab when the user declares none (actuators/targets.py).
"""

from __future__ import annotations

from typing import Any

from sre_space.actuators.knobs import SETTING_ACTIONS, abstract, setting_change
from sre_space.config import Settings
from sre_space.lab.control import LabClient

# Where the lab's services keep each knob (their runtime config, lab/service.py).
LAB_KEYS = {
    "pool_size": "db_pool_size",
    "pool_timeout_ms": "db_pool_timeout_ms",
    "release": "release",
    "circuit": "circuit_{dependency}",
    "shed_share": "shed_share",
    "memory_limit_mb": "memory_limit_mb",
}


class LabActuator:
    kind = "lab"

    def __init__(self, settings: Settings, keys: dict[str, str] | None = None) -> None:
        self._settings = settings
        self.keys = dict(LAB_KEYS if keys is None else keys)

    def _client(self) -> LabClient:
        # Looked up on every call: the lab may have been restarted since.
        return LabClient.from_settings(self._settings)

    def services(self) -> list[str]:
        return sorted(self._client().status().get("services", {}))

    def config(self, service: str) -> dict[str, Any]:
        """Its knobs, and under ``_process`` what the platform says of its processes."""
        services = self._client().status().get("services", {})
        entry = services.get(service, {})
        if not isinstance(entry, dict):
            return {}
        config = abstract(dict(entry.get("config", {})), self.keys)
        replicas = entry.get("replicas") or []
        config["_process"] = {
            "running": int(entry.get("running", len(replicas))),
            "replicas": len(replicas) or 1,
        }
        return config

    def _request(self, action: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        """The control API request an abstract action is."""
        if action in SETTING_ACTIONS:
            return "patch_config", setting_change(action, params, self.keys)
        if action == "scale_out":
            return "scale_out", {"count": int(params.get("by", params.get("count", 1)))}
        return action, dict(params)

    def describe(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        what, body = self._request(action, params)
        return {
            "via": "the lab's control API",
            "request": {"action": what, "service": service, "params": body},
        }

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        what, body = self._request(action, params)
        return self._client().act(what, service, body)

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        """Put back what the action changed; a restart has nothing to put back."""
        if action in SETTING_ACTIONS and applied.get("previous"):
            self._client().act("patch_config", service, dict(applied["previous"]))
        elif action == "scale_out" and applied.get("added"):
            count = {"count": len(applied["added"])}
            self._client().act("scale_in", service, count)
