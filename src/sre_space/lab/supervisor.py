"""The lab supervisor: ``python -m sre_space.lab.supervisor --home HOME``.

Starts every service and the load generator as child processes on free
loopback ports, restarts a child that dies, holds the chaos state, and serves
the token-protected control API. SIGTERM or POST /shutdown stops everything.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from typing import IO, Any

from sre_space.config import Settings
from sre_space.lab import runtime
from sre_space.lab.faults import FAULTS, MAX_DURATION_S
from sre_space.localapi import write_secret
from sre_space.paths import Paths

SERVICES = ("db", "payments", "inventory", "checkout", "frontend")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Child:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], log: IO[bytes]) -> None:
        self.name, self.argv, self.env, self.log = name, argv, env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv, env=self.env, stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Supervisor:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.paths = Paths(settings.home).ensure()
        self.token = secrets.token_urlsafe(24)
        self.ports = {name: _free_port() for name in SERVICES}
        self.control_port = _free_port()
        self.started_at = time.time()
        self.stopping = threading.Event()
        self.lock = threading.RLock()
        self.faults: dict[str, dict[str, Any]] = {}
        env = {
            **os.environ,
            runtime.TOKEN_ENV: self.token,
            runtime.PORTS_ENV: json.dumps(self.ports),
            runtime.OTLP_ENV: settings.otlp_endpoint,
            runtime.DIR_ENV: str(self.paths.lab_dir),
        }
        self.children: dict[str, Child] = {}
        for name in (*SERVICES, "loadgen"):
            module = "sre_space.lab.loadgen" if name == "loadgen" else "sre_space.lab.service"
            argv = [sys.executable, "-m", module] + ([] if name == "loadgen" else [name])
            log = open(self.paths.logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the child
            self.children[name] = Child(name, argv, env, log)

    # --- children ---------------------------------------------------------------

    def healthy(self, name: str) -> bool:
        try:
            code, _ = runtime.call(self.ports[name], "GET", "/healthz", timeout=1.0)
        except OSError:
            return False
        return code == 200

    def start_all(self) -> None:
        for name in SERVICES:
            self.children[name].start()
        deadline = time.monotonic() + 60
        for name in SERVICES:
            while not self.healthy(name):
                if time.monotonic() > deadline or not self.children[name].alive():
                    raise RuntimeError(f"{name} did not become healthy")
                time.sleep(0.1)
        self.children["loadgen"].start()

    def restart(self, name: str) -> None:
        with self.lock:
            child = self.children[name]
            child.stop()
            child.start()
            child.restarts += 1
        deadline = time.monotonic() + 30
        while name != "loadgen" and not self.healthy(name) and time.monotonic() < deadline:
            time.sleep(0.1)
        self._reapply_faults(name)

    def _reapply_faults(self, name: str) -> None:
        for fault, active in list(self.faults.items()):
            if active["target"] == name:
                self._apply_fault(fault, active["target"], active["params"])

    def monitor(self) -> None:
        while not self.stopping.wait(0.5):
            now = time.time()
            for fault, active in list(self.faults.items()):
                if active["expires_at"] is not None and now >= active["expires_at"]:
                    self.revert(fault)
            for name, child in self.children.items():
                if not child.alive() and not self.stopping.is_set():
                    time.sleep(min(5.0, 0.5 * (child.restarts + 1)))  # simple backoff
                    if not self.stopping.is_set():
                        self.restart(name)
            self.write_state()

    def shutdown(self) -> None:
        self.stopping.set()
        for name in ("loadgen", *reversed(SERVICES)):
            self.children[name].stop()
        with contextlib.suppress(FileNotFoundError):
            self.paths.lab_state.unlink()

    # --- state ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        services = {}
        for name in SERVICES:
            child = self.children[name]
            services[name] = {
                "pid": child.pid,
                "port": self.ports[name],
                "healthy": child.alive(),
                "restarts": child.restarts,
            }
        return {
            "mode": "embedded",
            "supervisor_pid": os.getpid(),
            "control_port": self.control_port,
            "started_at": self.started_at,
            "otlp_endpoint": self.settings.otlp_endpoint,
            "services": services,
            "loadgen": {
                "pid": self.children["loadgen"].pid,
                "rate": float(os.environ.get("SRE_SPACE_LAB_RATE", "50")),
            },
        }

    def write_state(self) -> None:
        if self.stopping.is_set():
            return
        tmp = self.paths.lab_state.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.describe()))
        os.replace(tmp, self.paths.lab_state)

    def status(self) -> dict[str, Any]:
        doc = self.describe()
        for name, svc in doc["services"].items():
            try:
                code, config = runtime.call(
                    self.ports[name], "GET", "/_admin/config", token=self.token, timeout=2
                )
                svc["config"] = config if code == 200 else {}
                svc["healthy"] = svc["healthy"] and code == 200
            except OSError:
                svc["healthy"], svc["config"] = False, {}
        doc["faults"] = self.chaos_status()
        return doc

    # --- chaos ------------------------------------------------------------------------

    def _apply_fault(self, fault: str, target: str, params: dict[str, Any]) -> None:
        if fault == "db-timeout":
            self.patch(target, {"latency_ms": params["latency_ms"]})

    def _clear_fault(self, fault: str, target: str) -> None:
        if fault == "db-timeout":
            self.patch(target, {"latency_ms": 0})

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
        params = {**spec.defaults, **(doc.get("params") or {})}
        unknown = set(params) - set(spec.defaults)
        if unknown:
            raise ValueError(f"unknown parameter(s) for {name}: {', '.join(sorted(unknown))}")
        duration = doc.get("duration_s")
        duration = min(float(duration), MAX_DURATION_S) if duration else MAX_DURATION_S
        now = time.time()
        with self.lock:
            self._apply_fault(name, target, params)
            self.faults[name] = {
                "fault": name,
                "target": target,
                "params": params,
                "started_at": now,
                "expires_at": now + duration,
            }
            return dict(self.faults[name])

    def revert(self, fault: str | None) -> list[str]:
        with self.lock:
            names = [fault] if fault else list(self.faults)
            done = []
            for name in names:
                active = self.faults.pop(name, None)
                if active:
                    self._clear_fault(name, active["target"])
                    done.append(name)
            return done

    def chaos_status(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(v) for v in self.faults.values()]

    # --- actions ------------------------------------------------------------------------

    def patch(self, service: str, params: dict[str, Any]) -> dict[str, Any]:
        code, doc = runtime.call(
            self.ports[service], "POST", "/_admin/config", params, token=self.token
        )
        if code != 200:
            raise ValueError(str(doc.get("error", f"{service} refused the change")))
        return dict(doc)

    def act(self, doc: dict[str, Any]) -> dict[str, Any]:
        action, service = doc.get("action"), str(doc.get("service", ""))
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; services: {', '.join(SERVICES)}")
        if action == "patch_config":
            return {"ok": True, **self.patch(service, dict(doc.get("params") or {}))}
        if action == "restart":
            self.restart(service)
            return {"ok": True, "pid": self.children[service].pid}
        raise ValueError(f"unknown action {action!r}; actions: patch_config, restart")


class ControlHandler(runtime.JsonHandler):
    sup: Supervisor

    def _guard(self) -> bool:
        # The control API checks the lab token like every admin endpoint.
        return self.authorized()

    def do_GET(self) -> None:
        if not self._guard():
            return
        path = self.path.split("?")[0]
        if path == "/health":
            doc = self.sup.describe()
            healthy = all(self.sup.healthy(n) for n in SERVICES)
            self.send_json(200, {"ok": healthy, "services": doc["services"]})
        elif path == "/status":
            self.send_json(200, self.sup.status())
        elif path == "/chaos":
            self.send_json(200, self.sup.chaos_status())
        else:
            self.send_json(404, {"error": f"no route {path}"})

    def do_POST(self) -> None:
        if not self._guard():
            return
        path = self.path.split("?")[0]
        try:
            doc = self.read_json()
            if path == "/chaos":
                self.send_json(200, self.sup.inject(doc))
            elif path == "/actions":
                self.send_json(200, self.sup.act(doc))
            elif path == "/shutdown":
                self.send_json(200, {"ok": True})
                threading.Thread(target=_terminate_self, daemon=True).start()
            else:
                self.send_json(404, {"error": f"no route {path}"})
        except (ValueError, KeyError, TypeError) as exc:
            self.send_json(400, {"error": str(exc)})
        except OSError as exc:
            self.send_json(503, {"error": f"lab process unreachable: {exc}"})

    def do_DELETE(self) -> None:
        if not self._guard():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/chaos":
            self.send_json(404, {"error": f"no route {url.path}"})
            return
        fault = dict(urllib.parse.parse_qsl(url.query)).get("fault")
        try:
            self.send_json(200, {"reverted": self.sup.revert(fault)})
        except OSError as exc:
            self.send_json(503, {"error": f"lab process unreachable: {exc}"})


def _terminate_self() -> None:
    os.kill(os.getpid(), signal.SIGTERM)


def main() -> None:
    parser = argparse.ArgumentParser(prog="sre_space.lab.supervisor")
    parser.add_argument("--home", required=True)
    args = parser.parse_args()
    settings = Settings(home=args.home)
    sup = Supervisor(settings)
    os.environ[runtime.TOKEN_ENV] = sup.token  # for the control handler's check
    write_secret(sup.paths.control_token, sup.token)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    ControlHandler.sup = sup
    server = runtime.LabServer(("127.0.0.1", sup.control_port), ControlHandler)
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    try:
        sup.start_all()
        sup.write_state()
        threading.Thread(target=sup.monitor, name="monitor", daemon=True).start()
        stop.wait()
    finally:
        sup.shutdown()
        server.shutdown()


if __name__ == "__main__":
    main()
