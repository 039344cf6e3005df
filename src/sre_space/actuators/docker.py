"""The Fixer's hands on a Compose project: restart, scale, recreate with new settings.

What may happen is decided by actuators/changes.py from the containers'
observed state; this module only observes and carries out:

- observe: the project's containers for one service (Compose's labels), their
  ``sre-space.actions`` label, their environment, how many there are;
- restart: ``batch`` containers at a time (one by default), through the Docker
  API (SDK or CLI); a batch is back before the next one goes, the rest serve;
- scale and recreate: through `docker compose up` on one service, with the
  change recorded in an override file first, so the next `sre-space up`
  keeps it (desired state) and `undo` puts back exactly what was there.

The Docker client and the compose runner are injected: the real ones come from
``DockerActuator.from_settings``; the tests pass recorded fakes.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
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
from sre_space.errors import Unavailable
from sre_space.infra.compose import PROJECT, compose_dir, compose_env, load, override_path
from sre_space.infra.docker_engine import PROJECT_LABEL, SERVICE_LABEL, Compose, docker_client
from sre_space.paths import Paths
from sre_space.vocabulary import ENV_PREFIX

ONEOFF_LABEL = "com.docker.compose.oneoff"
NUMBER_LABEL = "com.docker.compose.container-number"
OVERRIDE_HEADER = (
    "# Written by sre-space's Docker actuator: what the Fixer changed (replicas,\n"
    "# settings), kept so the next `sre-space up` keeps it. Edit with care.\n"
)


class ContainerLike(Protocol):
    @property
    def id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def labels(self) -> dict[str, str]: ...
    @property
    def attrs(self) -> dict[str, Any]: ...
    def restart(self, timeout: int = ...) -> None: ...


class ContainersLike(Protocol):
    def list(self, all: bool = ..., filters: Mapping[str, Any] | None = ...) -> list[Any]: ...


class DockerClientLike(Protocol):
    @property
    def containers(self) -> ContainersLike: ...


class ComposeLike(Protocol):
    @property
    def override(self) -> Path | None: ...
    def run(self, *args: str, timeout_s: float | None = ...) -> str: ...


def _env_of(container: ContainerLike) -> dict[str, str]:
    pairs = (container.attrs.get("Config") or {}).get("Env") or []
    env = {}
    for pair in pairs:
        name, sep, value = str(pair).partition("=")
        if sep:
            env[name] = value
    return env


def _lab_token(settings: Settings) -> str | None:
    """The token `sre-space up` wrote for the Compose stack; None when there is none."""
    try:
        return Paths(settings.home).control_token.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _otlp_token(settings: Settings) -> str | None:
    """The Collector's token for the mind, so a service the Fixer recreates keeps sending it."""
    try:
        return Paths(settings.home).otlp_token.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _number(container: ContainerLike) -> int:
    try:
        return int(container.labels.get(NUMBER_LABEL, "0"))
    except ValueError:
        return 0


class DockerActuator:
    def __init__(
        self,
        client: DockerClientLike,
        compose: ComposeLike,
        *,
        project: str = PROJECT,
        limits: Limits | None = None,
        allowed: Collection[str] | None = None,
        prefix: str = ENV_PREFIX,
        restart_timeout_s: int = 10,
    ) -> None:
        self._client = client
        self._compose = compose
        self.project = project
        self.limits = limits or Limits()
        self.allowed = None if allowed is None else frozenset(allowed)
        self.prefix = prefix
        self.restart_timeout_s = restart_timeout_s

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        project_dir: Path | None = None,
        project: str = PROJECT,
        env: Mapping[str, str] | None = None,
        **options: Any,
    ) -> DockerActuator:
        """The real thing: the Docker SDK (or CLI) and `docker compose` on the project's files.

        The lab token `sre-space up` gave the stack (kept in the home, 0600) goes
        into every compose run: a recreated or added container gets the same one,
        not an empty token that would shut its admin endpoints.
        """
        directory = project_dir or compose_dir()
        if env is not None:
            run_env = dict(env)
        else:
            run_env = compose_env(
                directory, lab_token=_lab_token(settings), otlp_token=_otlp_token(settings)
            )
        compose = Compose(
            directory, project=project, env=run_env, override=override_path(settings.home)
        )
        return cls(docker_client(run_env), compose, project=project, **options)

    # --- observing ------------------------------------------------------------------

    def _containers(self, service: str) -> list[ContainerLike]:
        filters = {"label": [f"{PROJECT_LABEL}={self.project}", f"{SERVICE_LABEL}={service}"]}
        found = self._client.containers.list(all=True, filters=filters)
        return sorted(
            (c for c in found if c.labels.get(ONEOFF_LABEL, "False") != "True"), key=_number
        )

    def state(self, service: str) -> ServiceState | None:
        """The service as its containers show it; None when the project has no such service."""
        return self._state_of(service, self._containers(service))

    def _state_of(self, service: str, containers: list[ContainerLike]) -> ServiceState | None:
        if not containers:
            return None
        running = [c for c in containers if c.status == "running"] or containers
        actions = parse_actions(containers[0].labels.get(ACTIONS_LABEL))
        return ServiceState(
            name=service,
            replicas=len(containers),
            env=_env_of(running[0]),
            actions=actions,
            containers=tuple(c.id for c in containers),
        )

    def config(self, service: str) -> dict[str, Any]:
        """Its settings, and under ``_process`` how many of its containers run of how many.

        Every container Compose made for the service counts as an expected
        replica, a stopped or crashed one too; only those whose status is
        ``running`` run. The runbook reads this to tell a crash (fewer running)
        from a dependency that refuses while every replica runs.
        """
        try:
            containers = self._containers(check_name(service))
        except ActionRefused:
            return {}
        state = self._state_of(service, containers)
        if state is None:
            return {}
        running = sum(1 for c in containers if c.status == "running")
        return {
            **config_from_env(state.env, self.prefix),
            "replicas": state.replicas,
            "_process": {"running": running, "replicas": state.replicas},
        }

    # --- acting ---------------------------------------------------------------------

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        check_name(service)  # before the name goes anywhere, even into a label filter
        if self.allowed is not None and service not in self.allowed:
            raise ActionRefused(f"{service} is not among the services this actuator may act on")
        change = decide(action, service, params, self.state(service), self.limits, self.prefix)
        self._carry_out(change)
        return {
            "ok": True,
            "op": change.op,
            "summary": change.summary,
            "previous": self._config_view(change, previous=True),
            "current": self._config_view(change, previous=False),
            "change": change.to_json(),
        }

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        record = applied.get("change")
        if not record:
            return
        change = Change.from_json(record)
        if change.service != service:
            raise ActionRefused(
                f"the applied record is for {change.service}, not {service}; not undoing"
            )
        back = revert(change)
        if back is not None:
            self._carry_out(back)

    def _config_view(self, change: Change, *, previous: bool) -> dict[str, Any]:
        if change.op == "scale":
            return {"replicas": change.previous_replicas if previous else change.replicas}
        env = change.previous_env if previous else change.env
        return config_from_env(env, self.prefix)

    def _carry_out(self, change: Change) -> None:
        if change.op == "restart":
            wanted = set(change.containers)
            chosen = [c for c in self._containers(change.service) if c.id in wanted]
            batch = max(1, change.batch)
            for i in range(0, len(chosen), batch):  # a batch at a time: the others keep serving
                self._restart_batch(chosen[i : i + batch])
        elif change.op == "scale":
            assert change.replicas is not None
            self._record(change.service, scale=change.replicas)
            self._compose.run(
                "up", "-d", "--no-deps", "--no-recreate", "--no-build",
                "--scale", f"{change.service}={change.replicas}", change.service,
            )  # fmt: skip
        elif change.op == "recreate":
            if change.env:
                self._record(change.service, env=change.env)
            self._compose.run(
                "up", "-d", "--no-deps", "--force-recreate", "--no-build", change.service
            )
        else:  # pragma: no cover - decide() never yields another op
            raise ActionRefused(f"unknown operation {change.op!r}")

    def _restart_batch(self, batch: list[ContainerLike]) -> None:
        """Restart these containers together; return once every one is back (or failed)."""
        if len(batch) == 1:
            batch[0].restart(timeout=self.restart_timeout_s)
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="restart") as pool:
            futures = [pool.submit(c.restart, timeout=self.restart_timeout_s) for c in batch]
        for future in futures:
            future.result()  # the first failure stops the rollout before the next batch

    def _record(
        self, service: str, *, env: Mapping[str, str] | None = None, scale: int | None = None
    ) -> None:
        """Write the change into the override file (atomically) before compose reads it."""
        import yaml

        path = self._compose.override
        if path is None:
            raise Unavailable("the Docker actuator needs an override file to record changes in")
        doc = load(path)
        services = doc.setdefault("services", {})
        entry = services.setdefault(service, {})
        if env:
            entry.setdefault("environment", {}).update(dict(env))
        if scale is not None:
            entry["scale"] = scale
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(OVERRIDE_HEADER + yaml.safe_dump(doc, sort_keys=True), encoding="utf-8")
        os.replace(tmp, path)
