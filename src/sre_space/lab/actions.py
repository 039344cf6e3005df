"""The Fixer's actions as the lab supervisor carries them out (:class:`LabActions`).

``act`` takes one action of the control API's ``POST /actions``
(``ACTIONS``: the vocabulary's, and ``scale_in``, the undo of ``scale_out``)
and carries it out on every replica of a service: a config patch (kept, so a
restarted replica gets it back), a deploy or rollback (a restart at another
release, replica by replica), a restart, a scale. :class:`LabActions` is a
mixin of :class:`~sre_space.lab.supervisor.Supervisor`: the processes, their
restarts and scaling stay there, and are what the abstract methods below name.
Moved out of :mod:`sre_space.lab.supervisor`, which re-exports ``ACTIONS`` and
``RELEASE_KEYS``.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from typing import Any

from sre_space.lab import runtime
from sre_space.lab.children import Child
from sre_space.lab.service import DEFAULTS
from sre_space.vocabulary import ACTIONS as VOCABULARY_ACTIONS
from sre_space.vocabulary import ENV_PREFIX, SCALE_IN

RELEASE_KEYS = ("release", "previous_release")  # changed by a deploy (a restart), not a patch


# What the control API carries out: the Fixer's actions and the undo of scale_out.
ACTIONS = (*VOCABULARY_ACTIONS, SCALE_IN)


class LabActions(ABC):
    """The Fixer's actions on the lab's services (a mixin of ``Supervisor``)."""

    # The supervisor's, set in its __init__.
    token: str
    lock: threading.RLock
    instances: dict[str, list[Child]]
    overrides: dict[str, dict[str, Any]]

    @abstractmethod
    def check_service(self, service: str) -> None: ...

    @abstractmethod
    def config_of(self, service: str) -> dict[str, Any]: ...

    @abstractmethod
    def restart_child(self, child: Child) -> int: ...

    @abstractmethod
    def restart(self, service: str, params: dict[str, Any] | None = None) -> dict[str, Any]: ...

    @abstractmethod
    def scale(self, service: str, count: int) -> dict[str, Any]: ...

    def _patch_child(self, child: Child, params: dict[str, Any]) -> dict[str, Any]:
        code, doc = runtime.call(child.port, "POST", "/_admin/config", params, token=self.token)
        if code != 200:
            raise ValueError(str(doc.get("error", f"{child.name} refused the change")))
        return dict(doc)

    def deploy(self, child: Child, change: dict[str, str]) -> None:
        """Start the process again at another release: its resource says which, for life."""
        with self.lock:
            self.overrides.setdefault(child.name, {}).update(change)
            for key, value in change.items():
                child.env[f"{ENV_PREFIX}{key.upper()}"] = value
            if child.alive():
                self.restart_child(child)

    def _deploy_service(self, service: str, params: dict[str, Any]) -> dict[str, Any]:
        """A release change, replica by replica (rolling), then any other keys as a patch."""
        before = self.config_of(service)
        unknown = set(params) - set(DEFAULTS[service])
        if unknown:
            raise ValueError(f"unknown config key(s) for {service}: {', '.join(sorted(unknown))}")
        change = {
            "release": str(params["release"]),
            "previous_release": str(params.get("previous_release", before.get("release", ""))),
        }
        for child in list(self.instances[service]):
            self.deploy(child, change)
        rest = {k: v for k, v in params.items() if k not in RELEASE_KEYS}
        if rest:
            self.patch(service, rest)
        return {
            "previous": {k: before[k] for k in params if k in before},
            "current": self.config_of(service),
        }

    def patch(self, service: str, params: dict[str, Any]) -> dict[str, Any]:
        """The same change on every replica; kept, so a restarted replica gets it back."""
        self.check_service(service)
        if "release" in params:
            return self._deploy_service(service, params)
        result: dict[str, Any] = {}
        for child in self.instances[service]:
            try:
                doc = self._patch_child(child, params)
            except OSError:
                if not result and child is self.instances[service][-1]:
                    raise
                doc = {}  # a replica that is down gets the change when it starts
            if child.port:
                self.overrides.setdefault(child.name, {}).update(params)
            if doc and not result:
                result = {"previous": doc.get("previous", {}), "current": doc.get("current", {})}
        return result or {"previous": {}, "current": {}}

    def act(self, doc: dict[str, Any]) -> dict[str, Any]:
        action, service = doc.get("action"), str(doc.get("service", ""))
        params = dict(doc.get("params") or {})
        self.check_service(service)
        if action == "patch_config":
            return {"ok": True, **self.patch(service, params)}
        if action == "restart":
            return self.restart(service, params)
        if action == "rollback":
            config = self.config_of(service)
            previous = str(config.get("previous_release") or "")
            if not previous:
                raise ValueError(f"{service} has no previous release to roll back to")
            change = {"release": previous, "previous_release": str(config["release"])}
            return {"ok": True, **self.patch(service, change)}
        if action == "open_circuit":
            key = f"circuit_{params.get('dependency', '')}"
            if key not in DEFAULTS.get(service, {}):
                raise ValueError(f"{service} has no circuit breaker {key!r}")
            return {"ok": True, **self.patch(service, {key: "open"})}
        if action == "shed_load":
            share = float(params.get("share", 0.5))
            return {"ok": True, **self.patch(service, {"shed_share": share})}
        if action == "scale_out":
            return self.scale(service, int(params.get("count", 1)))
        if action == "scale_in":
            return self.scale(service, -int(params.get("count", 1)))
        raise ValueError(f"unknown action {action!r}; actions: {', '.join(ACTIONS)}")
