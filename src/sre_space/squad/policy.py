"""The safety policy the Fixer acts under.

Modes: ``auto`` acts, ``approve`` pauses the graph until a human answers,
``dry-run`` only writes what it would do. Guards hold in every mode: allowed
actions and services, at most N actions per incident, a cooldown per service.
Under ``auto`` the Fixer never acts on a diagnosis below ``min_confidence``
(the Brain's confidence): it writes the proposal and escalates instead.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sre_space.config import MIN_ACT_CONFIDENCE
from sre_space.vocabulary import ACTIONS

MODES = ("auto", "approve", "dry-run")


@dataclass
class Policy:
    mode: str = "auto"
    allowed_actions: tuple[str, ...] = ACTIONS
    allowed_services: tuple[str, ...] | None = None  # None: every service
    max_actions_per_incident: int = 2
    cooldown_s: float = 60.0
    # Never take more than this share of a service's replicas out at once (a
    # single-process service may still be restarted: there is no other way).
    max_replica_share: float = 0.5
    # Below this confidence in the diagnosis nothing is done under ``auto``, from
    # the runbook or from memory alike: a guess is a proposal for a person.
    min_confidence: float = MIN_ACT_CONFIDENCE
    _last_action: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown policy {self.mode!r}; use one of {', '.join(MODES)}")

    def refuse(
        self, plan: dict[str, Any], actions_taken: int, now: float | None = None
    ) -> str | None:
        """Why this plan may not run, or None when it may."""
        now = time.time() if now is None else now
        action, service = plan.get("action"), str(plan.get("service", ""))
        if action not in self.allowed_actions:
            return f"action {action!r} is not allowed by policy"
        if self.allowed_services is not None and service not in self.allowed_services:
            return f"service {service!r} is not allowed by policy"
        if actions_taken >= self.max_actions_per_incident:
            return f"already {actions_taken} action(s) on this incident (limit {self.max_actions_per_incident})"
        params = plan.get("params") or {}
        replicas = int(params.get("replicas", 1) or 1)
        if action == "restart" and replicas > 1 and "replica" not in params:
            batch = int(params.get("batch", replicas) or replicas)
            if batch / replicas > self.max_replica_share:
                return (
                    f"restarting {batch} of {service}'s {replicas} replicas at once is more "
                    f"than {self.max_replica_share:.0%}"
                )
        last = self._last_action.get(service)
        if last is not None and now - last < self.cooldown_s:
            return (
                f"{service} was acted on {now - last:.0f} s ago (cooldown {self.cooldown_s:.0f} s)"
            )
        return None

    def record(self, service: str, now: float | None = None) -> None:
        self._last_action[service] = time.time() if now is None else now


def policy_from(settings: Any) -> Policy:
    """The policy a mind acts under, from its settings (flag, environment or config file)."""
    from sre_space.errors import UsageError

    if settings.policy not in MODES:
        raise UsageError(f"unknown policy {settings.policy!r}; use one of {', '.join(MODES)}")
    unknown = set(settings.policy_allowed_actions or ()) - set(ACTIONS)
    if unknown:
        raise UsageError(
            f"unknown action(s) in policy_allowed_actions: {', '.join(sorted(unknown))}; "
            f"known: {', '.join(ACTIONS)}"
        )
    return Policy(
        mode=settings.policy,
        allowed_actions=tuple(settings.policy_allowed_actions or ACTIONS),
        allowed_services=(
            tuple(settings.policy_allowed_services)
            if settings.policy_allowed_services is not None
            else None
        ),
        max_actions_per_incident=settings.policy_max_actions,
        cooldown_s=settings.policy_cooldown_s,
        max_replica_share=settings.policy_max_replica_share,
        min_confidence=settings.policy_min_confidence,
    )
