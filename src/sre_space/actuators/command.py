"""Targets acted on by running a program: exec, systemd, compose, docker.

Every action is an argv (never a shell): ``exec`` targets declare one per
action; ``systemd``, ``compose`` and ``docker`` come with the obvious ones
(``systemctl restart``, ``docker compose restart`` and ``up --scale``,
``docker restart``) and
take more the same way. An argv element may name the service and the action's
parameters, ``{service}``, ``{dependency}``, ``{to}``, ``{share}``, ``{by}``,
``{pool_size}``...; undo templates also get ``{previous_<name>}`` from the JSON
object the action printed under ``previous``. Values are checked to be plain
words before they reach an argv: they come from telemetry.

A target's ``config`` argv, when declared, prints the service's knobs as a JSON
object (``{"pool_size": 20, "_process": {"running": 2, "replicas": 2}}``); an
``actions.releases`` argv prints its release history, newest first, as a JSON
list (``[{"release": "1.5.0"}, {"release": "1.4.2", "bad": false}]``).
"""

from __future__ import annotations

import json
import re
import string
import subprocess
from typing import Any

from sre_space.actuators.changes import ActionRefused
from sre_space.actuators.driver import ActionFailed, Target

_WORD = re.compile(r"^[A-Za-z0-9_.:/@+=,-]{1,200}$")
MAX_OUTPUT = 4000


def _words(service: str, params: dict[str, Any], previous: dict[str, Any]) -> dict[str, str]:
    values: dict[str, Any] = {"service": service, **params}
    values.update({f"previous_{k}": v for k, v in previous.items()})
    words: dict[str, str] = {}
    for name, value in values.items():
        if isinstance(value, dict | list) or value is None:
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        if not _WORD.match(text):
            raise ActionRefused(f"{name}={text!r} is not a plain word; not passing it to a program")
        words[name] = text
    return words


def render(template: list[str], words: dict[str, str]) -> list[str]:
    """``template`` with ``{name}`` fields filled from ``words`` (ActionRefused on a missing one)."""
    argv = []
    for part in template:
        fields = [f for _, f, _, _ in string.Formatter().parse(part) if f is not None]
        missing = [f for f in fields if f not in words]
        if missing:
            raise ActionRefused(f"argv {template} names {{{missing[0]}}}, which this action lacks")
        argv.append(part.format_map(words))
    return argv


def builtin(target: Target, service: str) -> dict[str, list[str]]:
    """The argv templates a kind comes with."""
    opts = target.options
    if target.kind == "systemd":
        unit = str(opts.get("unit") or f"{service}.service")
        user = ["--user"] if opts.get("user") else []
        return {"restart": ["systemctl", *user, "restart", unit]}
    if target.kind == "compose":
        base = ["docker", "compose"]
        if opts.get("project"):
            base += ["-p", str(opts["project"])]
        if opts.get("file"):
            base += ["-f", str(opts["file"])]
        name = str(opts.get("service") or service)
        return {"restart": [*base, "restart", name]}
    if target.kind == "docker":
        if opts.get("label"):
            return {}  # the containers are listed first (see _restart_labelled)
        return {"restart": ["docker", "restart", str(opts.get("container") or service)]}
    return {}


class CommandDriver:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.kind = target.kind

    def _templates(self, service: str) -> dict[str, list[str]]:
        return {**builtin(self.target, service), **self.target.actions}

    def _argv(self, action: str, service: str, params: dict[str, Any]) -> list[str]:
        templates = self._templates(service)
        if action not in templates:
            known = ", ".join(sorted(templates)) or "none"
            raise ActionRefused(
                f"the {self.kind} target for {service} declares no {action} (it does: {known}); "
                f"add actions.{action} = [argv...] to it"
            )
        return render(templates[action], _words(service, params, {}))

    def _run(self, argv: list[str]) -> str:
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=self.target.timeout_s,
                cwd=self.target.options.get("cwd"),
                stdin=subprocess.DEVNULL,
                check=False,
            )
        except FileNotFoundError:
            raise ActionFailed(f"{argv[0]}: no such program") from None
        except subprocess.TimeoutExpired:
            raise ActionFailed(
                f"{argv[0]} did not finish in {self.target.timeout_s:.0f} s"
            ) from None
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip().splitlines()
            raise ActionFailed(
                f"{argv[0]} exited {done.returncode}" + (f": {said[-1][:200]}" if said else "")
            )
        return done.stdout[:MAX_OUTPUT]

    def config(self, service: str) -> dict[str, Any]:
        template = self.target.options.get("config") or []
        if not template:
            return {}
        out = self._run(render(list(template), _words(service, {}, {})))
        try:
            doc = json.loads(out)
        except ValueError:
            raise ActionFailed(f"{template[0]} printed no JSON object of knobs") from None
        return dict(doc) if isinstance(doc, dict) else {}

    def releases(self, service: str) -> list[dict[str, Any]]:
        template = self.target.actions.get("releases")
        if not template:
            return []
        out = self._run(render(template, _words(service, {}, {})))
        try:
            doc = json.loads(out)
        except ValueError:
            raise ActionFailed(f"{template[0]} printed no JSON list of releases") from None
        return [dict(r) for r in doc if isinstance(r, dict)] if isinstance(doc, list) else []

    def describe(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            argv = self._argv(action, service, params)
        except ActionRefused as exc:
            return {"via": f"{self.kind} target", "missing": str(exc)}
        return {"via": f"{self.kind} target", "argv": argv}

    def _compose_base(self) -> list[str]:
        restart = builtin(self.target, "")["restart"]
        return restart[: restart.index("restart")]

    def _compose_scale(self, service: str, by: int) -> dict[str, Any]:
        """`docker compose up --scale`: how many run now, from `docker compose ps -q`."""
        base, name = self._compose_base(), str(self.target.options.get("service") or service)
        current = len(self._run([*base, "ps", "-q", name]).split())
        wanted = current + by
        if wanted < 1:
            raise ActionRefused(f"{name} keeps at least one container (asked for {wanted})")
        argv = [
            *base,
            "up",
            "-d",
            "--no-deps",
            "--no-recreate",
            "--scale",
            f"{name}={wanted}",
            name,
        ]
        self._run(argv)
        return {"ok": True, "argv": argv, "replicas": wanted, "previous": {"replicas": current}}

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        if self.kind == "docker" and self.target.options.get("label") and action == "restart":
            return self._restart_labelled()
        if self.kind == "compose" and action == "scale_out" and action not in self.target.actions:
            return self._compose_scale(service, int(params.get("by", 1)))
        argv = self._argv(action, service, params)
        out = self._run(argv)
        result: dict[str, Any] = {}
        try:
            parsed = json.loads(out) if out.strip() else {}
            result = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            pass
        return {
            "ok": True,
            "argv": argv,
            "params": params,
            "output": out.strip()[-500:],
            "previous": result.get("previous") or {},
        }

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        if self.kind == "compose" and action == "scale_out" and action not in self.target.undo:
            previous = int((applied.get("previous") or {}).get("replicas") or 0)
            if previous:
                now = int(applied.get("replicas") or previous)
                self._compose_scale(service, previous - now)
            return
        template = self.target.undo.get(action)
        if template is None:
            if action == "restart":
                return  # nothing of a restart to put back
            raise ActionRefused(f"the {self.kind} target for {service} declares no undo.{action}")
        words = _words(
            service, dict(applied.get("params") or {}), dict(applied.get("previous") or {})
        )
        self._run(render(template, words))

    def _restart_labelled(self) -> dict[str, Any]:
        label = str(self.target.options["label"])
        ids = self._run(["docker", "ps", "-q", "--filter", f"label={label}"]).split()
        if not ids:
            raise ActionFailed(f"no running container carries the label {label}")
        for one in ids:  # one at a time: the others keep serving
            self._run(["docker", "restart", one])
        return {"ok": True, "restarted": ids, "previous": {}}
