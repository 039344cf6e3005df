"""The chaos catalogue: each fault a real, reversible mechanism in one lab process.

How a fault is applied: the supervisor POSTs ``{"fault": name, "params": {...}}``
to the target process's token-protected ``/_admin/fault`` endpoint, and DELETEs
``/_admin/fault?fault=name`` to revert it. The target implements the mechanism
(``mechanism`` below says what it is). Adding a fault means one ``FaultSpec``
here and its handler in the target process (see ``db.MECHANISMS``).

Faults are never part of a service's runtime config or ``/status``: only the
control API's chaos endpoints show them, so the squad must find them from spans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_DURATION_S = 3600.0  # hard cap: no fault outlives an hour, whatever was asked
FAULT_PATH = "/_admin/fault"


@dataclass(frozen=True)
class FaultSpec:
    name: str
    description: str
    default_target: str
    targets: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    # What a drill of this fault expects of the squad (not what the squad is told).
    expect: dict[str, Any] = field(default_factory=dict)
    # How the target process makes it real (for `chaos list` and the reader).
    mechanism: str = ""

    def resolve_params(self, given: dict[str, Any] | None) -> dict[str, Any]:
        """Defaults overlaid with what was asked; unknown or non-numeric values are refused."""
        given = dict(given or {})
        unknown = set(given) - set(self.defaults)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) for {self.name}: {', '.join(sorted(unknown))}; "
                f"known: {', '.join(self.defaults) or 'none'}"
            )
        params = dict(self.defaults)
        for key, value in given.items():
            try:
                params[key] = type(self.defaults[key])(value)
            except (TypeError, ValueError):
                raise ValueError(f"parameter {key} of {self.name} must be a number") from None
            if params[key] < 0:
                raise ValueError(f"parameter {key} of {self.name} must not be negative")
        return params


FAULTS: dict[str, FaultSpec] = {
    f.name: f
    for f in (
        FaultSpec(
            "db-timeout",
            "the database answers slowly; under load the checkout pool saturates and requests time out",
            "db",
            ("db",),
            {"latency_ms": 600},
            {"root_cause": "checkout", "action": "patch_config", "status": "mitigated"},
            mechanism="every SQL query in the db process waits latency_ms before it runs",
        ),
    )
}


def clamp_duration(duration_s: float | None) -> float:
    """A fault lasts what was asked, but never past the hard cap (and never 'forever')."""
    if duration_s is None or duration_s <= 0:
        return MAX_DURATION_S
    return min(float(duration_s), MAX_DURATION_S)
