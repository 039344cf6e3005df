"""The plan-only actuator: decide as the Docker actuator would, then write it down instead.

For GitOps, where the only way to change production is a reviewed commit, the
Fixer's action becomes a file in ``out_dir``:

- ``style="compose"``: a Compose override (``docker compose -f docker-compose.yml
  -f <file> up -d <service>`` applies it);
- ``style="kubectl"``: a ``kubectl patch`` command line (strategic merge) for the
  workload of the same name, in a small shell script to review and run.

The same rules as the Docker actuator hold (actuators/changes.py), against the
service's declared state: by default its definition in docker-compose.yml plus
the Docker actuator's override, i.e. what the repository says should run.
``undo`` writes the inverse plan beside the first, never deletes a proposal
someone may already have merged.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from sre_space.actuators.changes import (
    ACTIONS_LABEL,
    ActionRefused,
    Change,
    Limits,
    ServiceState,
    check_name,
    config_from_env,
    decide,
    parse_actions,
    revert,
)
from sre_space.config import Settings
from sre_space.errors import UsageError
from sre_space.infra.compose import compose_file, load, override_path
from sre_space.vocabulary import ENV_PREFIX

STYLES = ("compose", "kubectl")
PAST = {"restart": "restarted", "recreate": "recreated"}
RESTARTED_AT = "kubectl.kubernetes.io/restartedAt"  # what `kubectl rollout restart` sets
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


class Inventory(Protocol):
    def state(self, service: str) -> ServiceState | None: ...


def _mapping(value: Any) -> dict[str, str]:
    """Compose's list-or-mapping form (``["K=V"]`` or ``{K: V}``) as a mapping of strings."""
    if isinstance(value, Mapping):
        return {str(k): "" if v is None else str(v) for k, v in value.items()}
    found = {}
    for item in value or []:
        name, _, text = str(item).partition("=")
        found[name] = text
    return found


class ComposeFileInventory:
    """Services as docker-compose.yml (and the actuator's override) declare them."""

    def __init__(
        self,
        path: Path,
        override: Path | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.path = path
        self.override = override
        self._environ = os.environ if environ is None else environ

    def _resolve(self, text: str) -> str:
        """``${NAME}`` and ``${NAME:-default}`` as Compose would resolve them."""

        def one(match: re.Match[str]) -> str:
            return self._environ.get(match.group(1)) or (match.group(2) or "")

        return _INTERPOLATION.sub(one, text)

    def state(self, service: str) -> ServiceState | None:
        entry = (load(self.path).get("services") or {}).get(service)
        if not isinstance(entry, Mapping):
            return None
        extra: Mapping[str, Any] = {}
        if self.override is not None:
            found = (load(self.override).get("services") or {}).get(service)
            extra = found if isinstance(found, Mapping) else {}
        env = {**_mapping(entry.get("environment")), **_mapping(extra.get("environment"))}
        replicas = (
            extra.get("scale")
            or entry.get("scale")
            or (entry.get("deploy") or {}).get("replicas")
            or 1
        )
        labels = _mapping(entry.get("labels"))
        return ServiceState(
            name=service,
            replicas=int(replicas),
            env={k: self._resolve(v) for k, v in env.items()},
            actions=parse_actions(labels.get(ACTIONS_LABEL)),
            containers=(service,),  # a definition, not containers: enough to plan a restart
        )


def _stamp(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


def compose_override(change: Change, now: float) -> dict[str, Any]:
    """The override that, applied with `docker compose up`, makes ``change``."""
    entry: dict[str, Any] = {}
    if change.op == "scale":
        entry["scale"] = change.replicas
    elif change.op == "recreate" and change.env:
        entry["environment"] = dict(change.env)
    else:  # a changed label makes `compose up` replace the container: a restart
        entry["labels"] = {f"sre-space.{PAST[change.op]}-at": _stamp(now)}
    return {"services": {change.service: entry}}


def kubectl_patch(change: Change, now: float, *, namespace: str, kind: str) -> list[str]:
    """The ``kubectl patch`` argument list that makes ``change`` on the workload of that name."""
    patch: dict[str, Any]
    if change.op == "scale":
        patch = {"spec": {"replicas": change.replicas}}
    elif change.op == "recreate" and change.env:
        env = [{"name": name, "value": value} for name, value in sorted(change.env.items())]
        patch = {
            "spec": {"template": {"spec": {"containers": [{"name": change.service, "env": env}]}}}
        }
    else:
        patch = {"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: _stamp(now)}}}}}
    return [
        "kubectl", "--namespace", namespace, "patch", f"{kind}/{change.service}",
        "--type", "strategic", "--patch", json.dumps(patch, sort_keys=True, separators=(",", ":")),
    ]  # fmt: skip


class PlanActuator:
    def __init__(
        self,
        out_dir: Path,
        inventory: Inventory,
        *,
        style: str = "compose",
        namespace: str = "default",
        kind: str = "deployment",
        limits: Limits | None = None,
        prefix: str = ENV_PREFIX,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if style not in STYLES:
            raise UsageError(f"unknown plan style {style!r}; use one of {', '.join(STYLES)}")
        if style == "kubectl" and not (_K8S_NAME.match(namespace) and _K8S_NAME.match(kind)):
            raise UsageError(f"{namespace!r}/{kind!r}: not a Kubernetes namespace and kind")
        self.out_dir = out_dir
        self.inventory = inventory
        self.style = style
        self.namespace = namespace
        self.kind = kind
        self.limits = limits or Limits()
        self.prefix = prefix
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, *, out_dir: Path | None = None, **options: Any
    ) -> PlanActuator:
        """Plans into ``$SRE_SPACE_HOME/plans``, judged against the shipped compose file."""
        inventory = ComposeFileInventory(compose_file(), override_path(settings.home))
        return cls(out_dir or settings.home / "plans", inventory, **options)

    def config(self, service: str) -> dict[str, Any]:
        try:
            state = self.inventory.state(check_name(service))
        except ActionRefused:
            return {}
        if state is None:
            return {}
        return {**config_from_env(state.env, self.prefix), "replicas": state.replicas}

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        check_name(service)
        change = decide(
            action, service, params, self.inventory.state(service), self.limits, self.prefix
        )
        if self.style == "kubectl" and not _K8S_NAME.match(service):
            raise ActionRefused(f"{service!r} is not a Kubernetes workload name")
        written = self._write(change, undo=False)
        previous = (
            {"replicas": change.previous_replicas}
            if change.op == "scale"
            else config_from_env(change.previous_env, self.prefix)
        )
        return {
            "ok": True,
            "planned": True,
            "applied": False,
            "op": change.op,
            "summary": change.summary,
            "previous": previous,
            "change": change.to_json(),
            **written,
        }

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        record = applied.get("change")
        if not record:
            return
        change = Change.from_json(record)
        if change.service != service:
            raise ActionRefused(f"the plan is for {change.service}, not {service}")
        back = revert(change)
        if back is not None:
            self._write(back, undo=True)

    def _write(self, change: Change, *, undo: bool) -> dict[str, Any]:
        import yaml

        now = self._clock()
        day = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
        suffix = ".override.yml" if self.style == "compose" else ".sh"
        stem = f"{day}-{change.service}-{change.op}{'-undo' if undo else ''}"
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / f"{stem}{suffix}"
        n = 1
        while path.exists():
            n += 1
            path = self.out_dir / f"{stem}-{n}{suffix}"
        head = f"# sre-space plan, not applied: {change.summary}\n"
        if self.style == "compose":
            body = (
                head
                + "# Review, then apply with:\n"
                + f"#   docker compose -f docker-compose.yml -f {path.name} "
                + f"up -d --no-deps {change.service}\n"
                + yaml.safe_dump(compose_override(change, now), sort_keys=True)
            )
            path.write_text(body, encoding="utf-8")
            return {"file": str(path)}
        argv = kubectl_patch(change, now, namespace=self.namespace, kind=self.kind)
        command = shlex.join(argv)
        path.write_text(f"#!/bin/sh\n{head}# Review, then run:\n{command}\n", encoding="utf-8")
        return {"file": str(path), "command": command}
