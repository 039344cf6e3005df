"""The Fixer's hands on the embedded lab: its loopback control API."""

from __future__ import annotations

from typing import Any

from sre_space.config import Settings
from sre_space.lab.control import LabClient


class LabActuator:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def _client(self) -> LabClient:
        # Looked up on every call: the lab may have been restarted since.
        return LabClient.from_settings(self._settings)

    def config(self, service: str) -> dict[str, Any]:
        services = self._client().status().get("services", {})
        entry = services.get(service, {})
        return dict(entry.get("config", {})) if isinstance(entry, dict) else {}

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        return self._client().act(action, service, params)

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        if action == "patch_config" and applied.get("previous"):
            self._client().act("patch_config", service, dict(applied["previous"]))
