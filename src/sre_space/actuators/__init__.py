"""Actuators: how the Fixer acts on a system (the embedded lab, later Docker, plan-only)."""

from __future__ import annotations

from typing import Any, Protocol


class Actuator(Protocol):
    def config(self, service: str) -> dict[str, Any]:
        """The service's current runtime configuration."""
        ...

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        """Carry out one action; the answer holds what is needed to undo it (``previous``)."""
        ...

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        """Put back what ``apply`` changed."""
        ...
