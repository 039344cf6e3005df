"""The supervisor's chaos controller: which fault is on which process, and for how long.

The state here is the only record of a fault; the squad never reads it.
"""

from __future__ import annotations

import contextlib
import threading
import time
import urllib.parse
from typing import Any, Protocol

from sre_space.lab import runtime
from sre_space.lab.balancer import Balancer
from sre_space.lab.children import Child
from sre_space.lab.faults import BLAST, FAULT_PATH, FAULTS, FaultSpec, clamp_duration


class Host(Protocol):
    """What the controller needs of the supervisor (which imports this module, not back)."""

    token: str
    lock: threading.RLock
    instances: dict[str, list[Child]]
    balancers: dict[str, Balancer]

    def config_of(self, service: str) -> dict[str, Any]: ...

    def deploy(self, child: Child, change: dict[str, str]) -> None: ...

    def restart_child(self, child: Child) -> int: ...

    def write_state(self) -> None: ...


BAD_RELEASE = "v2"


class Chaos:
    def __init__(self, sup: Host) -> None:
        self.sup = sup
        self.faults: dict[str, dict[str, Any]] = {}

    # --- one process ----------------------------------------------------------------

    def _post(self, child: Child, fault: str, params: dict[str, Any]) -> None:
        doc = {"fault": fault, "params": params}
        code, body = runtime.call(child.port, "POST", FAULT_PATH, doc, token=self.sup.token)
        if code != 200:
            raise ValueError(str(body.get("error", f"{child.name} refused fault {fault}")))

    def _delete(self, child: Child, fault: str) -> None:
        if not child.alive():
            return  # its fault died with it
        query = urllib.parse.urlencode({"fault": fault})
        with contextlib.suppress(OSError):
            runtime.call(child.port, "DELETE", f"{FAULT_PATH}?{query}", token=self.sup.token)

    def _apply(self, spec: FaultSpec, child: Child, params: dict[str, Any], deploy: bool) -> None:
        if spec.name == "crash":
            child.held = True  # first: the monitor must not bring it back
            child.kill()
            child.healthy = False
            child.close_listener()
            return
        if spec.name == "http-errors":
            if deploy:  # the deploy itself; a restart keeps the release (see Supervisor.deploy)
                config = self.sup.config_of(child.service)
                current = str(config.get("release", "v1"))
                if current != BAD_RELEASE:
                    self.sup.deploy(child, {"release": BAD_RELEASE, "previous_release": current})
            params = {**params, "release": BAD_RELEASE}  # v2's code has the defect
        self._post(child, spec.name, params)

    def _clear(self, spec: FaultSpec, child: Child) -> None:
        if spec.name == "crash":
            if child.held:
                self.sup.restart_child(child)
            return
        self._delete(child, spec.name)
        if spec.name == "http-errors" and child.alive():
            # Undeploy v2 if it is still what runs (a rollback may have done so already).
            with contextlib.suppress(OSError, ValueError):
                code, config = runtime.call(
                    child.port, "GET", "/_admin/config", token=self.sup.token, timeout=2
                )
                if code == 200 and config.get("release") == BAD_RELEASE:
                    previous = str(config.get("previous_release") or "v1")
                    self.sup.deploy(child, {"release": previous, "previous_release": BAD_RELEASE})

    def _targets(self, spec: FaultSpec, target: str, replicas: str) -> list[Child]:
        group = self.sup.instances[target]
        return group[:1] if replicas == "one" else list(group)

    # --- the controller -------------------------------------------------------------------

    def inject(self, doc: dict[str, Any]) -> dict[str, Any]:
        name = str(doc.get("fault", ""))
        spec = FAULTS.get(name)
        if spec is None:
            raise ValueError(f"unknown fault {name!r}; known faults: {', '.join(FAULTS)}")
        target = str(doc.get("target") or spec.default_target)
        if target not in spec.targets:
            raise ValueError(
                f"fault {name} cannot target {target!r}; targets: {', '.join(spec.targets)}"
            )
        replicas = str(doc.get("replicas") or spec.replicas)
        if replicas not in BLAST:
            raise ValueError(f"replicas must be one of {', '.join(BLAST)}, not {replicas!r}")
        params = spec.resolve_params(doc.get("params"))
        duration = clamp_duration(doc.get("duration_s"))
        now = time.time()
        with self.sup.lock:
            if name in self.faults:
                self.revert(name)  # a fault is on once; injecting again replaces it
            if spec.name == "dependency-down":
                self.sup.balancers[target].down()
                children: list[Child] = []
            else:
                children = self._targets(spec, target, replicas)
                for child in children:
                    self._apply(spec, child, params, deploy=True)
            self.faults[name] = {
                "fault": name,
                "target": target,
                "replicas": replicas,
                "instances": [c.name for c in children],
                "params": params,
                "started_at": now,
                "expires_at": now + duration,
            }
            self.sup.write_state()
            return dict(self.faults[name])

    def revert(self, fault: str | None) -> list[str]:
        with self.sup.lock:
            names = [fault] if fault else list(self.faults)
            done = []
            for name in names:
                active = self.faults.get(name)
                if not active:
                    continue
                spec = FAULTS[name]
                if name == "dependency-down":
                    self.sup.balancers[active["target"]].up()
                for child in self.sup.instances[active["target"]]:
                    if child.name in active["instances"]:
                        self._clear(spec, child)
                del self.faults[name]  # only once the targets have really let go
                done.append(name)
            return done

    def restarted(self, child: Child) -> None:
        """A process came back: faults of its environment apply to it again."""
        with self.sup.lock:
            for name, active in self.faults.items():
                spec = FAULTS[name]
                if spec.layer != "process" or not spec.survives_restart:
                    continue
                if active["target"] != child.service:
                    continue
                if child.name not in active["instances"]:
                    if active["replicas"] != "all":
                        continue
                    active["instances"].append(child.name)  # a new replica of a broken fleet
                with contextlib.suppress(OSError, ValueError):
                    self._apply(spec, child, active["params"], deploy=False)

    def expire(self) -> None:
        now = time.time()
        for fault, active in list(self.faults.items()):
            if now >= active["expires_at"]:
                with contextlib.suppress(OSError, ValueError, RuntimeError):
                    self.revert(fault)

    def status(self) -> list[dict[str, Any]]:
        with self.sup.lock:
            return [dict(v) for v in self.faults.values()]
