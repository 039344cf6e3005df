"""Targets: how each service is run, and so how the Fixer acts on it.

Declared in ``$SRE_SPACE_HOME/targets.toml`` (one table per service name or
glob) or in a ``[targets]`` table of ``config.toml`` (``[targets.checkout]``)::

    [checkout]                      # a service name, or a glob: "pay*", "*"
    kind = "kubernetes"             # lab | compose | docker | kubernetes | systemd | exec | webhook
    namespace = "shop"
    workload = "deployment/checkout"
    knobs.pool_size = { env = "DB_POOL_SIZE" }
    knobs.circuit = { env = "CIRCUIT_{dependency}" }

The first table naming the service exactly wins, else the first glob that
matches it, in file order. Without a file, a running embedded lab is the
target of its own services (actuators/lab.py). A service with no target gets a
written proposal, never an action (squad/fixer.py).

``TargetActuator`` routes each call to the service's target's driver. The
declared ``Target`` and the ``Driver`` protocol live in actuators/driver.py,
which the drivers import instead of this module.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sre_space.actuators.driver import Driver, Target
from sre_space.actuators.knobs import KNOBS
from sre_space.config import Settings
from sre_space.errors import Unavailable, UsageError
from sre_space.vocabulary import ACTIONS

KINDS = ("lab", "compose", "docker", "kubernetes", "systemd", "exec", "webhook")
# Per kind: the options it takes (beyond kind, knobs, actions, undo, timeout_s) and which it needs.
OPTIONS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "lab": ((), ()),
    "compose": (("project", "file", "service"), ()),
    "docker": (("container", "label"), ()),
    "kubernetes": (("namespace", "workload", "container", "context", "version_label"), ()),
    "systemd": (("unit", "user"), ()),
    "exec": (("cwd",), ("actions",)),
    "webhook": (("url", "secret_env", "header"), ("url",)),
}
COMMON = ("kind", "knobs", "actions", "undo", "timeout_s", "config")
KNOB_FORMS = ("key", "env", "configmap")  # where a system keeps a knob's value
_NAME = re.compile(r"^[A-Za-z0-9*?\[\]][A-Za-z0-9_.*?\[\]!-]{0,62}$")


class TargetError(UsageError):
    """A bad targets declaration; the message names the file and line."""


class NoTarget(Unavailable):
    """No target is declared for this service: the Fixer proposes instead of acting."""


def _line_of(text: str, table: str, key: str | None = None, prefix: str = "") -> int:
    """The line of ``[table]`` (or of ``key`` inside it) in ``text``; 0 when not found."""
    names = {f"{prefix}{table}", f'{prefix}"{table}"', f"{prefix}'{table}'"}
    lines = text.splitlines()
    start = 0
    for n, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped.startswith("[") and stripped.strip("[]").strip() in names:
            start = n
            break
    if not start or key is None:
        return start
    for n in range(start, len(lines)):
        stripped = lines[n].strip()
        if stripped.startswith("["):
            break
        if re.match(rf"^{re.escape(key)}\s*[.=]", stripped):
            return n + 1
    return start


def _fail(path: Path, line: int, message: str) -> TargetError:
    where = f"{path}:{line}" if line else str(path)
    return TargetError(f"{where}: {message}")


def _argv_table(value: Any, what: str) -> dict[str, list[str]]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is a table of action = [argv...]")
    table: dict[str, list[str]] = {}
    for action, argv in value.items():
        if not (isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv)):
            raise ValueError(
                f"{what}.{action} must be a non-empty list of strings (argv, no shell)"
            )
        table[str(action)] = list(argv)
    return table


def _target(pattern: str, doc: Any) -> Target:
    """One declaration, checked; ValueError (key, message) says what is wrong."""
    if not isinstance(doc, Mapping):
        raise ValueError(f"[{pattern}] must be a table with a kind")
    if not _NAME.match(pattern):
        raise ValueError(f"{pattern!r} is not a service name or glob")
    kind = doc.get("kind")
    if kind not in KINDS:
        raise KeyError("kind", f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    allowed, needed = OPTIONS[kind]
    for key in doc:
        if key not in COMMON and key not in allowed:
            raise KeyError(
                key, f"{kind} targets take {', '.join(sorted((*allowed, *COMMON)))}; not {key!r}"
            )
    for key in needed:
        if key not in doc:
            raise KeyError("kind", f"{kind} targets need {key}")
    knobs: dict[str, dict[str, str]] = {}
    for knob, spec in dict(doc.get("knobs") or {}).items():
        if knob not in KNOBS:
            raise KeyError("knobs", f"unknown knob {knob!r}; knobs: {', '.join(KNOBS)}")
        if not isinstance(spec, Mapping) or not any(f in spec for f in KNOB_FORMS):
            raise KeyError("knobs", f'knob {knob} needs one of {", ".join(KNOB_FORMS)} = "..."')
        if knob == "circuit" and not any("{dependency}" in str(v) for v in spec.values()):
            raise KeyError("knobs", "the circuit knob's name holds {dependency}")
        knobs[knob] = {str(k): str(v) for k, v in spec.items()}
    try:
        actions = _argv_table(doc.get("actions") or {}, "actions")
        undo = _argv_table(doc.get("undo") or {}, "undo")
    except ValueError as exc:
        raise KeyError("actions", str(exc)) from None
    config = doc.get("config")
    if config is not None and not (
        isinstance(config, list) and config and all(isinstance(a, str) for a in config)
    ):
        raise KeyError("config", "config is the argv that prints the service's knobs as JSON")
    if kind == "webhook" and not re.match(r"^https?://", str(doc["url"])):
        raise KeyError("url", "a webhook url starts with http:// or https://")
    timeout = doc.get("timeout_s", 60.0)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise KeyError("timeout_s", "timeout_s is a positive number of seconds")
    options = {k: v for k, v in doc.items() if k not in COMMON or k == "config"}
    return Target(pattern, str(kind), options, knobs, actions, undo, float(timeout))


def parse(text: str, path: Path, *, nested: bool = False) -> list[Target]:
    """The targets ``text`` declares (``nested``: under ``[targets]``, as in config.toml)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        line = int(found.group(1)) if found else text.count("\n") + 1  # "at end of document"
        raise _fail(path, line, str(exc)) from None
    prefix = ""
    if nested:
        doc = doc.get("targets") or {}
        prefix = "targets."
        if not isinstance(doc, Mapping):
            raise _fail(path, _line_of(text, "targets"), "[targets] must be a table")
    targets = []
    for pattern, entry in doc.items():
        try:
            target = _target(str(pattern), entry)
        except KeyError as exc:
            key, message = exc.args
            raise _fail(path, _line_of(text, str(pattern), key, prefix), message) from None
        except ValueError as exc:
            raise _fail(path, _line_of(text, str(pattern), None, prefix), str(exc)) from None
        targets.append(
            Target(**{**target.__dict__, "line": _line_of(text, str(pattern), None, prefix)})
        )
    return targets


def targets_file(home: Path) -> Path:
    return home / "targets.toml"


def declared(home: Path) -> tuple[list[Target], Path | None]:
    """The user's targets and the file they came from (None: none declared)."""
    path = targets_file(home)
    if path.exists():
        return parse(path.read_text(encoding="utf-8"), path), path
    config = home / "config.toml"
    if config.exists():
        text = config.read_text(encoding="utf-8")
        try:
            has_table = "targets" in tomllib.loads(text)
        except tomllib.TOMLDecodeError:
            has_table = False  # the settings loader reports a broken config file
        if has_table:
            return parse(text, config, nested=True), config
    return [], None


class TargetTable:
    def __init__(self, targets: list[Target], source: Path | None = None) -> None:
        self.targets = targets
        self.source = source

    def find(self, service: str) -> Target | None:
        exact = [t for t in self.targets if t.pattern == service]
        if exact:
            return exact[0]
        return next((t for t in self.targets if t.matches(service)), None)


def driver_for(target: Target, settings: Settings) -> Driver:
    if target.kind == "lab":
        from sre_space.actuators.lab import LAB_KEYS, LabActuator

        return LabActuator(settings, {**LAB_KEYS, **target.key_map("key")})
    if target.kind == "webhook":
        from sre_space.actuators.webhook import WebhookDriver

        return WebhookDriver(target)
    if target.kind == "kubernetes":
        from sre_space.actuators.kubernetes import KubernetesDriver

        driver: Driver = KubernetesDriver(target)
        return driver
    from sre_space.actuators.command import CommandDriver

    return CommandDriver(target)


def _lab_running(settings: Settings) -> bool:
    from sre_space.lab.launcher import read_lab_state

    return read_lab_state(settings) is not None


class TargetActuator:
    """The Fixer's hands: each service's own target, or a proposal where it has none."""

    kind = "targets"

    def __init__(
        self,
        settings: Settings,
        table: TargetTable | None = None,
        lab_running: Callable[[Settings], bool] = _lab_running,
    ) -> None:
        self.settings = settings
        self.table = table if table is not None else TargetTable(*declared(settings.home))
        self._lab_running = lab_running
        self._drivers: dict[str, Driver] = {}

    def target(self, service: str) -> Target | None:
        found = self.table.find(service)
        if found is None and self.table.source is None and self._lab_running(self.settings):
            found = Target("*", "lab")  # the built-in declaration for the embedded lab
        return found

    def driver(self, service: str) -> Driver:
        target = self.target(service)
        if target is None:
            where = self.table.source or targets_file(self.settings.home)
            raise NoTarget(f"no target declared for {service} (in {where})")
        key = f"{target.pattern}@{target.line}"
        if key not in self._drivers:
            self._drivers[key] = driver_for(target, self.settings)
        return self._drivers[key]

    def config(self, service: str) -> dict[str, Any]:
        return self.driver(service).config(service)

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.driver(service).apply(action, service, params)

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        self.driver(service).undo(action, service, applied)

    def releases(self, service: str) -> list[dict[str, Any]]:
        """The platform's release history, newest first, where the target keeps one."""
        history = getattr(self.driver(service), "releases", None)
        return list(history(service)) if history is not None else []

    def describe(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            driver = self.driver(service)
        except NoTarget:
            return generic_proposal(action, service, params)
        return driver.describe(action, service, params)


def generic_proposal(action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
    """What the action would be on the common platforms, for a service with no target."""
    commands: dict[str, str] = {}
    if action == "restart":
        commands = {
            "kubernetes": f"kubectl rollout restart deployment/{service}",
            "compose": f"docker compose restart {service}",
            "systemd": f"systemctl restart {service}",
        }
    elif action == "scale_out":
        by = int(params.get("by", 1))
        commands = {
            "kubernetes": f"kubectl scale deployment/{service} --replicas=<current + {by}>",
            "compose": f"docker compose up -d --no-deps --scale {service}=<current + {by}> {service}",
        }
    elif action == "rollback":
        to = params.get("to")
        commands = {
            "kubernetes": f"kubectl rollout undo deployment/{service}"
            + (f"  # to the revision running {to}" if to else ""),
            "compose": f"set {service}'s image tag to {to or '<the last good release>'}; "
            f"docker compose up -d --no-deps {service}",
        }
    else:
        knob = {"open_circuit": "circuit", "close_circuit": "circuit", "shed_load": "shed_share"}
        names = [knob.get(action, "")] if action in knob else list(params)
        commands = {
            "any": f"set {service}'s {' and '.join(n for n in names if n)} "
            f"as {params} where its platform keeps it"
        }
    hint = (
        f"declare a target for {service} in targets.toml (kind = kubernetes, compose, docker, "
        "systemd, exec or webhook) and the Fixer can carry it out itself"
    )
    return {"via": "no target declared", "commands": commands, "hint": hint}


ACTION_KNOB = {
    "patch_config": "pool_size",
    "open_circuit": "circuit",
    "shed_load": "shed_share",
}


def capabilities(target: Target | None, service: str) -> dict[str, str]:
    """Action -> how this target carries it out ({} : proposals only)."""
    if target is None:
        return {}
    if target.kind == "lab":
        return {a: "the lab's control API" for a in ACTIONS}
    if target.kind == "webhook":
        return {a: f"POST {target.options['url']}" for a in ACTIONS}
    if target.kind == "kubernetes":
        workload = target.options.get("workload") or f"deployment/{service}"
        found = {
            "restart": f"rollout restart of {workload}",
            "scale_out": f"scale {workload}",
            "rollback": f"{workload}'s rollout history",
        }
        for action, knob in ACTION_KNOB.items():
            spec = target.knobs.get(knob)
            if spec:
                where = (
                    f"env {spec['env']}" if "env" in spec else f"ConfigMap {spec.get('configmap')}"
                )
                found[action] = f"{where} on {workload}"
        return found
    from sre_space.actuators.command import builtin

    templates = {**builtin(target, service), **target.actions}
    # ``releases`` is a hook (the platform's release history), not an action.
    found = {
        ("release history" if a == "releases" else a): " ".join(argv)
        for a, argv in sorted(templates.items())
    }
    if target.kind == "compose" and "scale_out" not in found:
        found["scale_out"] = f"{found['restart'].rpartition(' restart ')[0]} up --scale"
    return found
