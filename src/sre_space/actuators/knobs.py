"""Abstract knobs: what the runbook turns, and how one system names each of them.

The runbook speaks of a service's *pool size*, its *release*, its *circuit to X*,
the *share of load it sheds*, its *memory limit*; never of one system's keys. A
target (actuators/targets.py) maps each knob to where that system keeps it: a
runtime configuration key, an environment variable, a ConfigMap key. A key may
hold ``{dependency}`` (a circuit per dependency).

``abstract`` reads a system's configuration in knob names; ``setting_change``
turns an abstract action into the settings it changes, in the system's names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sre_space.actuators.changes import ActionRefused
from sre_space.vocabulary import CLOSE_CIRCUIT, OPEN_CIRCUIT, PATCH_CONFIG, ROLLBACK, SHED_LOAD

# The knobs the runbook knows, with what each holds.
KNOBS = {
    "pool_size": "connections in the service's pool to its datastore",
    "pool_timeout_ms": "how long a request waits for a pooled connection",
    "release": "the release (version) the service runs",
    "circuit": "the service's circuit breaker to one dependency (open skips the call)",
    "shed_share": "the share of requests the service turns away at its door",
    "memory_limit_mb": "the memory the service may use before it is stopped",
}
CIRCUIT_OPEN, CIRCUIT_CLOSED = "open", "closed"
# Actions that change a setting (undone by putting the previous value back).
SETTING_ACTIONS = (PATCH_CONFIG, ROLLBACK, OPEN_CIRCUIT, CLOSE_CIRCUIT, SHED_LOAD)


def _circuit_parts(key: str) -> tuple[str, str]:
    prefix, _, suffix = key.partition("{dependency}")
    return prefix, suffix


def per_dependency(template: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The settings a ``...{dependency}...`` key template names, by dependency."""
    prefix, suffix = _circuit_parts(template)
    return {
        name[len(prefix) : len(name) - len(suffix)]: value
        for name, value in settings.items()
        if name.startswith(prefix)
        and name.endswith(suffix)
        and len(name) > len(prefix) + len(suffix)
    }


def abstract(concrete: Mapping[str, Any], keys: Mapping[str, str]) -> dict[str, Any]:
    """``concrete`` (a system's settings) in knob names; circuits as ``circuits: {dep: state}``."""
    found: dict[str, Any] = {}
    for knob, key in keys.items():
        if "{dependency}" in key:
            circuits = per_dependency(key, concrete)
            if circuits:
                found["circuits"] = circuits
        elif key in concrete:
            found[knob] = concrete[key]
    return found


def _key(keys: Mapping[str, str], knob: str, action: str, **names: str) -> str:
    if knob not in keys:
        raise ActionRefused(f"{action}: this target declares no {knob} knob")
    return keys[knob].format(**names) if names else keys[knob]


def setting_change(
    action: str, params: Mapping[str, Any], keys: Mapping[str, str]
) -> dict[str, Any]:
    """The settings an abstract action changes, in the system's own names.

    ``patch_config`` takes knobs (``{"pool_size": 100}``); ``open_circuit`` and
    ``close_circuit`` a ``dependency``; ``shed_load`` a ``share``; ``rollback``
    the release ``to`` go back to.
    """
    if action == "patch_config":
        # Memory written before knobs holds the system's own keys: read them as their knobs.
        reverse = {key: knob for knob, key in keys.items() if "{" not in key}
        params = {reverse.get(k, k): v for k, v in params.items()}
        unknown = [k for k in params if k not in KNOBS or k == "circuit"]
        if unknown:
            raise ActionRefused(
                f"patch_config: {', '.join(unknown)} is not a knob ({', '.join(KNOBS)})"
            )
        return {_key(keys, k, action): v for k, v in params.items()}
    if action in ("open_circuit", "close_circuit"):
        dependency = str(params.get("dependency") or "")
        if not dependency:
            raise ActionRefused(f"{action} needs the dependency whose circuit it is")
        state = CIRCUIT_OPEN if action == "open_circuit" else CIRCUIT_CLOSED
        return {_key(keys, "circuit", action, dependency=dependency): state}
    if action == "shed_load":
        share = float(params.get("share", 0.5))
        if not 0.0 <= share <= 1.0:
            raise ActionRefused(f"shed_load: share {share} is not between 0 and 1")
        return {_key(keys, "shed_share", action): share}
    if action == "rollback":
        release = str(params.get("to") or "")
        if not release:
            raise ActionRefused("rollback needs the release to go back to (to)")
        return {_key(keys, "release", action): release}
    raise ActionRefused(f"{action} changes no setting")


class KnobAdapter:
    """An actuator that speaks its system's keys (Docker, plan-only), spoken to in knobs.

    ``keys`` maps knobs to the keys its ``config`` reports and ``patch_config``
    takes; the settings actions become a ``patch_config`` of those keys.
    """

    def __init__(self, inner: Any, keys: Mapping[str, str]) -> None:
        self.inner = inner
        self.keys = dict(keys)
        self.kind = type(inner).__name__

    def config(self, service: str) -> dict[str, Any]:
        concrete = self.inner.config(service)
        found = abstract(concrete, self.keys)
        for extra in ("replicas", "_process"):
            if extra in concrete:
                found[extra] = concrete[extra]
        return found

    def _request(self, action: str, params: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
        if action in SETTING_ACTIONS:
            return "patch_config", setting_change(action, params, self.keys)
        if action == "scale_out":
            return "scale_out", {"by": int(params.get("by", 1))}
        return action, dict(params)

    def describe(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        what, body = self._request(action, params)
        return {"via": self.kind, "request": {"action": what, "service": service, "params": body}}

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        what, body = self._request(action, params)
        result: dict[str, Any] = self.inner.apply(what, service, body)
        return result

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        what = "patch_config" if action in SETTING_ACTIONS else action
        self.inner.undo(what, service, applied)
