"""Scout's static rules, with per-service overrides.

The defaults are DESIGN's: a span with ERROR status is a failed request, and a
request slower than 800 ms is a slow one. A service may override either: a
batch job whose requests take seconds gets its own latency limit, a service
whose 4xx are marked ERROR by its instrumentation may have the error rule
switched off.

    Rules(latency_ms=800, services={"reports": ServiceRule(latency_ms=5000)})
    Rules.from_mapping({"latency_ms": 800, "services": {"auth": {"errors": False}}})
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sre_space.config import LATENCY_MS


@dataclass(frozen=True)
class ServiceRule:
    """Overrides for one service; ``None`` keeps the default."""

    latency_ms: float | None = None
    errors: bool | None = None


@dataclass(frozen=True)
class Rules:
    latency_ms: float = LATENCY_MS
    errors: bool = True  # count ERROR status as a failed request
    services: Mapping[str, ServiceRule] = field(default_factory=dict)

    def latency_for(self, service: str) -> float:
        rule = self.services.get(service)
        return rule.latency_ms if rule and rule.latency_ms is not None else self.latency_ms

    def errors_for(self, service: str) -> bool:
        rule = self.services.get(service)
        return rule.errors if rule and rule.errors is not None else self.errors

    @classmethod
    def from_mapping(cls, doc: Mapping[str, Any]) -> Rules:
        """From a config document: ``latency_ms``, ``errors``, ``services: {name: {...}}``."""
        unknown = set(doc) - {"latency_ms", "errors", "services"}
        if unknown:
            raise ValueError(f"unknown rule setting(s): {', '.join(sorted(unknown))}")
        services: dict[str, ServiceRule] = {}
        for name, rule in (doc.get("services") or {}).items():
            if not isinstance(rule, Mapping) or set(rule) - {"latency_ms", "errors"}:
                raise ValueError(f"rule for service {name!r}: use latency_ms and errors")
            latency = rule.get("latency_ms")
            errors = rule.get("errors")
            services[str(name)] = ServiceRule(
                float(latency) if latency is not None else None,
                bool(errors) if errors is not None else None,
            )
        return cls(
            latency_ms=float(doc.get("latency_ms", LATENCY_MS)),
            errors=bool(doc.get("errors", True)),
            services=services,
        )
