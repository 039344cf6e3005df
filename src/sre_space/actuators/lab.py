"""The Fixer's hands on the embedded lab: its loopback control API."""

from __future__ import annotations

from typing import Any

from sre_space.config import Settings
from sre_space.lab.control import LabClient

# Actions that are a config change underneath: undone by patching the previous values.
CONFIG_ACTIONS = ("patch_config", "rollback", "open_circuit", "shed_load")


class LabActuator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _client(self) -> LabClient:
        # Looked up on every call: the lab may have been restarted since.
        return LabClient.from_settings(self._settings)

    def config(self, service: str) -> dict[str, Any]:
        """Its runtime config, and under ``_process`` what the platform says of its processes."""
        services = self._client().status().get("services", {})
        entry = services.get(service, {})
        if not isinstance(entry, dict):
            return {}
        config = dict(entry.get("config", {}))
        replicas = entry.get("replicas") or []
        config["_process"] = {
            "running": int(entry.get("running", len(replicas))),
            "replicas": len(replicas) or 1,
        }
        return config

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._client().act(action, service, params)

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        """Put back what the action changed; a restart has nothing to put back."""
        if action in CONFIG_ACTIONS and applied.get("previous"):
            self._client().act("patch_config", service, dict(applied["previous"]))
        elif action == "scale_out" and applied.get("added"):
            self._client().act("scale_in", service, {"count": len(applied["added"])})
