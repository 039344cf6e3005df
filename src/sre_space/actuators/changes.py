"""What a container actuator may do, decided before anything is touched.

The Docker actuator (actuators/docker.py) carries a ``Change`` out; the
plan-only actuator (actuators/plan.py) writes it down for a person or a GitOps
pipeline. Both decide with ``decide`` below, from the service's observed state
alone, so the rules hold the same whether an engine runs or not:

- an action the Fixer names maps to one of three operations:
  ``restart``; ``scale`` (``scale_out``, ``scale``); ``recreate`` with a changed
  environment (``patch_config``, ``recreate``). Anything else is refused;
- a restart is rolling: ``batch`` containers at a time (default 1) while the
  rest keep serving, so a batch never takes in every container of a service
  that has more than one; ``replicas`` (what the runbook saw running) is
  informational and only checked to be a whole number;
- a service is acted on only when it is known (its containers or its compose
  definition carry the ``sre-space.actions`` label) and that label lists the
  operation: infrastructure (Kafka, the Collector...) carries no label;
- scaling stays within ``1..max_replicas`` and never removes more than
  ``max_scale_down_share`` of the running replicas at once;
- configuration changes only keys the service already declares, as
  ``SRE_SPACE_CFG_<KEY>`` environment variables, with plain scalar values.

Undo restores the observed state from before the change (``revert``); that
includes scaling back down past the share rule, since it returns to a replica
count the service was just running with.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from sre_space.errors import UsageError
from sre_space.vocabulary import ENV_PREFIX

ACTIONS_LABEL = "sre-space.actions"
OPERATIONS = ("restart", "scale", "recreate")
ALIASES = {
    "restart": "restart",
    "scale": "scale",
    "scale_out": "scale",
    "recreate": "recreate",
    "patch_config": "recreate",
}
_SERVICE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_KEY = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
MAX_VALUE_CHARS = 256


class ActionRefused(UsageError):
    """The actuator will not carry this action out; the message says why."""


@dataclass(frozen=True)
class Limits:
    max_replicas: int = 10
    max_scale_down_share: float = 0.5


@dataclass(frozen=True)
class ServiceState:
    """A service as observed: replicas, environment, what its label allows, its containers."""

    name: str
    replicas: int
    env: Mapping[str, str] = field(default_factory=dict)
    actions: frozenset[str] = frozenset()
    containers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Change:
    op: str
    service: str
    replicas: int | None = None
    previous_replicas: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    previous_env: Mapping[str, str] = field(default_factory=dict)
    containers: tuple[str, ...] = ()
    summary: str = ""
    batch: int = 1  # restart: how many containers at a time

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "service": self.service,
            "batch": self.batch,
            "replicas": self.replicas,
            "previous_replicas": self.previous_replicas,
            "env": dict(self.env),
            "previous_env": dict(self.previous_env),
            "containers": list(self.containers),
            "summary": self.summary,
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Change:
        op = str(doc.get("op", ""))
        if op not in OPERATIONS:
            raise ActionRefused(f"cannot undo: unknown operation {op!r} in the applied record")
        return cls(
            op=op,
            service=str(doc.get("service", "")),
            replicas=_opt_int(doc.get("replicas")),
            previous_replicas=_opt_int(doc.get("previous_replicas")),
            env={str(k): str(v) for k, v in (doc.get("env") or {}).items()},
            previous_env={str(k): str(v) for k, v in (doc.get("previous_env") or {}).items()},
            containers=tuple(str(c) for c in doc.get("containers") or ()),
            summary=str(doc.get("summary", "")),
            batch=_opt_int(doc.get("batch")) or 1,
        )


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


def check_name(service: str) -> str:
    """``service`` when it is a plausible service name, else ActionRefused (before any lookup)."""
    if not isinstance(service, str) or not _SERVICE.match(service):
        raise ActionRefused(f"{service!r} is not a service name")
    return service


def parse_actions(label: str | None) -> frozenset[str]:
    """The operations a ``sre-space.actions`` label allows ("restart,recreate" -> both)."""
    if not label:
        return frozenset()
    return frozenset(part.strip() for part in label.split(",") if part.strip() in OPERATIONS)


def env_name(key: str, prefix: str = ENV_PREFIX) -> str:
    return f"{prefix}{key.upper()}"


def _scalar(text: str) -> Any:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def config_from_env(env: Mapping[str, str], prefix: str = ENV_PREFIX) -> dict[str, Any]:
    """The runtime settings a service declares as ``<prefix><KEY>`` variables, keyed ``key``."""
    return {
        name[len(prefix) :].lower(): _scalar(value)
        for name, value in sorted(env.items())
        if name.startswith(prefix) and len(name) > len(prefix)
    }


def _env_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, int | float | str):
        text = str(value)
    else:
        raise ActionRefused(f"{key}: only plain values (text, numbers, true/false) can be set")
    if len(text) > MAX_VALUE_CHARS or any(ord(ch) < 32 for ch in text):
        raise ActionRefused(f"{key}: values are one line of at most {MAX_VALUE_CHARS} characters")
    return text


def _int_param(params: Mapping[str, Any], key: str, op: str = "scale") -> int:
    value = params[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ActionRefused(f"{op}: {key} must be a whole number, not {value!r}")
    return value


def decide(
    action: str,
    service: str,
    params: Mapping[str, Any],
    state: ServiceState | None,
    limits: Limits = Limits(),
    prefix: str = ENV_PREFIX,
) -> Change:
    """The one change ``action`` on ``service`` means, or ActionRefused with the reason."""
    op = ALIASES.get(action)
    if op is None:
        raise ActionRefused(
            f"action {action!r} is not something a container actuator does; "
            f"it does: {', '.join(sorted(ALIASES))}"
        )
    check_name(service)
    if state is None:
        raise ActionRefused(
            f"unknown service {service!r}: no container or definition carries that name"
        )
    if not state.actions:
        raise ActionRefused(f"{service} is not managed by sre-space (no {ACTIONS_LABEL} label)")
    if op not in state.actions:
        raise ActionRefused(
            f"{service} allows only {', '.join(sorted(state.actions))} ({ACTIONS_LABEL}), not {op}"
        )
    if op == "restart":
        return _restart(service, params, state)
    if op == "scale":
        return _scale(action, service, params, state, limits)
    return _recreate(action, service, params, state, prefix)


def _restart(service: str, params: Mapping[str, Any], state: ServiceState) -> Change:
    unknown = set(params) - {"batch", "replicas"}
    if unknown:
        raise ActionRefused(f"restart takes batch or replicas, not {', '.join(sorted(unknown))}")
    batch = _int_param(params, "batch", "restart") if "batch" in params else 1
    if batch < 1:
        raise ActionRefused(f"restart: batch must be at least 1, not {batch}")
    if "replicas" in params:  # what the caller saw: informational, the containers decide
        _int_param(params, "replicas", "restart")
    if not state.containers:
        raise ActionRefused(f"{service} has no container to restart")
    n = len(state.containers)
    if n > 1 and batch >= n:
        raise ActionRefused(
            f"restart {service}: a batch of {batch} would take all {n} containers down at "
            f"once; at most {n - 1} so the rest keep serving"
        )
    batch = min(batch, n)
    pace = "one at a time" if batch == 1 else f"{batch} at a time"
    return Change(
        op="restart",
        service=service,
        containers=state.containers,
        batch=batch,
        summary=f"restart {service} ({n} container{'s' if n != 1 else ''}, {pace})",
    )


def _scale(
    action: str, service: str, params: Mapping[str, Any], state: ServiceState, limits: Limits
) -> Change:
    unknown = set(params) - {"replicas", "by"}
    if unknown:
        raise ActionRefused(f"{action} takes replicas or by, not {', '.join(sorted(unknown))}")
    if "replicas" in params and "by" in params:
        raise ActionRefused(f"{action}: give replicas or by, not both")
    current = state.replicas
    if "replicas" in params:
        target = _int_param(params, "replicas")
    else:
        step = _int_param(params, "by") if "by" in params else 1
        target = current + step
    if action == "scale_out" and target <= current:
        raise ActionRefused(f"scale_out {service}: {target} replicas is not more than {current}")
    if target == current:
        raise ActionRefused(f"{service} already runs {current} replica(s)")
    if target < 1:
        raise ActionRefused(f"{service} keeps at least 1 replica (asked for {target})")
    if target > limits.max_replicas:
        raise ActionRefused(
            f"{service}: {target} replicas is over the limit of {limits.max_replicas}"
        )
    if target < current:
        removed = current - target
        allowed = int(current * limits.max_scale_down_share)
        if removed > allowed:
            raise ActionRefused(
                f"{service}: scaling {current} -> {target} removes {removed} replica(s); at most "
                f"{allowed} ({limits.max_scale_down_share:.0%} of {current}) may go at once"
            )
    return Change(
        op="scale",
        service=service,
        replicas=target,
        previous_replicas=current,
        summary=f"scale {service} {current} -> {target} replicas",
    )


def _recreate(
    action: str, service: str, params: Mapping[str, Any], state: ServiceState, prefix: str
) -> Change:
    if action == "patch_config" and not params:
        raise ActionRefused("patch_config needs at least one setting to change")
    declared = config_from_env(state.env, prefix)
    if "replicas" in params:
        raise ActionRefused("replicas is not a setting: use scale_out")
    bad = sorted(k for k in params if not _KEY.match(str(k)) or str(k) not in declared)
    if bad:
        known = ", ".join(sorted(declared)) or "none"
        raise ActionRefused(
            f"unknown setting(s) for {service}: {', '.join(map(str, bad))}; it declares: {known}"
        )
    env = {env_name(k, prefix): _env_value(k, v) for k, v in sorted(params.items())}
    previous = {name: str(state.env[name]) for name in env}
    if params and env == previous:
        raise ActionRefused(f"{service} already runs with {dict(params)}")
    described = ", ".join(f"{k}={v}" for k, v in sorted(params.items())) or "unchanged settings"
    return Change(
        op="recreate",
        service=service,
        env=env,
        previous_env=previous,
        summary=f"recreate {service} with {described}",
    )


def revert(change: Change) -> Change | None:
    """The change that puts back what ``change`` altered; None when nothing can be put back."""
    if change.op == "scale" and change.previous_replicas is not None:
        return replace(
            change,
            replicas=change.previous_replicas,
            previous_replicas=change.replicas,
            summary=f"undo: scale {change.service} {change.replicas} -> {change.previous_replicas} replicas",
        )
    if change.op == "recreate" and change.env:
        return replace(
            change,
            env=dict(change.previous_env),
            previous_env=dict(change.env),
            summary=f"undo: recreate {change.service} with its previous settings",
        )
    return None
