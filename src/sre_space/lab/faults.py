"""The chaos catalogue: each fault a real, reversible mechanism in the lab."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_DURATION_S = 3600.0  # hard cap: no fault outlives an hour, whatever was asked


@dataclass(frozen=True)
class FaultSpec:
    name: str
    description: str
    default_target: str
    targets: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)


FAULTS: dict[str, FaultSpec] = {
    f.name: f
    for f in (
        FaultSpec(
            "db-timeout",
            "the database answers slowly; under load the checkout pool saturates and requests time out",
            "db",
            ("db",),
            {"latency_ms": 600},
        ),
    )
}
