"""The lab supervisor: ``python -m sre_space.lab.supervisor --home HOME [--rate RPS]``.

Binds a loopback socket for every process and hands it down, puts a small
balancer in front of the replicated services, restarts a child that dies
(unless chaos crashed it: that one stays down until someone restarts it),
carries out the Fixer's actions, holds the chaos state (``chaos.py``), and
serves the token-protected control API. SIGTERM or POST /shutdown stops everything.

How the Fixer's actions are carried out (``act``, ``patch``, ``deploy``) is
in :mod:`sre_space.lab.actions`, a mixin of :class:`Supervisor`;
``ACTIONS`` and ``RELEASE_KEYS`` are re-exported here.

:class:`Supervisor` is a little over 300 lines on purpose: it is one process
owner (sockets, children, restarts, the control API's handlers) whose parts
share its lock and child table; split further, each part would take them all.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import signal
import sys
import threading
import time
import urllib.parse
from typing import Any

from sre_space.config import Settings
from sre_space.lab import runtime
from sre_space.lab.actions import ACTIONS as ACTIONS
from sre_space.lab.actions import RELEASE_KEYS, LabActions
from sre_space.lab.balancer import Balancer, listen
from sre_space.lab.chaos import Chaos
from sre_space.lab.children import Child
from sre_space.localapi import write_secret
from sre_space.paths import Paths
from sre_space.vocabulary import ENV_PREFIX

SERVICES = ("db", "payments", "inventory", "checkout", "frontend")
REPLICAS = {"payments": 2, "inventory": 2}  # behind a balancer; the rest run one process
MAX_REPLICAS = 6
DEFAULT_RATE = 50.0
HEALTH_TIMEOUT_S = 3.0  # the control API's /health waits this long on each service
MONITOR_INTERVAL_S = 0.5  # at least this long between two passes of the monitor
BACKOFF_CAP_S = 5.0


def backoff_s(restarts: int) -> float:
    """How long the monitor leaves a child that died on its own down before starting it."""
    return min(BACKOFF_CAP_S, 0.5 * (restarts + 1))


class Supervisor(LabActions):
    """The embedded lab's process tree: its children, their health and their changes.

    Over 300 lines on purpose: start, probe, restart, scale, monitor and
    describe act on the same children under the same lock; the Fixer's
    actions are ``lab/actions.py``'s (a mixin), the faults ``lab/chaos.py``'s,
    one child ``lab/children.py``'s.
    """

    def __init__(self, settings: Settings, rate: float = DEFAULT_RATE) -> None:
        self.settings = settings
        self.rate = rate
        self.paths = Paths(settings.home).ensure()
        self.token = secrets.token_urlsafe(32)
        self.started_at = time.time()
        self.control_port = 0  # set once the control API is listening
        self.stopping = threading.Event()
        self.lock = threading.RLock()  # children, faults and lab.json change under it
        self._written = ""  # the last lab.json text
        self.monitor_passes = 0  # passes the monitor has finished (status shows it)
        self.instances: dict[str, list[Child]] = {}
        self.balancers: dict[str, Balancer] = {}
        # Config patched per instance, kept so a restarted process gets it back.
        self.overrides: dict[str, dict[str, Any]] = {}
        public = {name: listen() for name in SERVICES if name in REPLICAS}
        self.ports = {name: int(s.getsockname()[1]) for name, s in public.items()}
        self.env = {
            **os.environ,
            runtime.TOKEN_ENV: self.token,
            # Every mind's receiver: the home's, then each `up --export-to URL`.
            runtime.OTLP_ENV: " ".join([settings.otlp_endpoint, *settings.export_to]),
            runtime.DIR_ENV: str(self.paths.lab_dir),
            runtime.SUPERVISOR_ENV: str(os.getpid()),
            "SRE_SPACE_LAB_RATE": str(rate),
        }
        for name in SERVICES:
            self.instances[name] = [self._child(name, i) for i in range(REPLICAS.get(name, 1))]
            if name not in REPLICAS:
                self.ports[name] = self.instances[name][0].port
        self.env[runtime.PORTS_ENV] = json.dumps(self.ports)
        for child in self.all_children():
            child.env[runtime.PORTS_ENV] = self.env[runtime.PORTS_ENV]
        for name, sock in public.items():
            self.balancers[name] = Balancer(name, sock, self._backends(name))
        # The users hold no admin token: the load generator only gets the ports.
        loadgen_env = {k: v for k, v in self.env.items() if k != runtime.TOKEN_ENV}
        self.loadgen = Child(
            "loadgen",
            "loadgen",
            [sys.executable, "-m", "sre_space.lab.loadgen"],
            loadgen_env,
            self._log("loadgen"),
            listens=False,
        )
        self.chaos = Chaos(self)

    def _log(self, name: str) -> Any:
        return open(self.paths.logs_dir / f"{name}.log", "ab")  # lives with the child

    def _child(self, service: str, index: int) -> Child:
        name = f"{service}-{index}" if service in REPLICAS else service
        argv = [sys.executable, "-m", "sre_space.lab.service", service]
        return Child(name, service, argv, self.env, self._log(name))

    def _backends(self, service: str) -> Any:
        def ports() -> list[int]:
            # Like a balancer with health checks: a replica that is starting (its
            # socket queues, nobody accepts yet) is skipped while another is ready.
            listening = [c for c in self.instances[service] if c.port]
            ready = [c.port for c in listening if c.healthy]
            return ready or [c.port for c in listening]

        return ports

    def all_children(self) -> list[Child]:
        return [c for name in SERVICES for c in self.instances[name]]

    def child(self, name: str) -> Child:
        for c in self.all_children():
            if c.name == name:
                return c
        raise ValueError(f"no lab process {name!r}")

    def check_service(self, service: str) -> None:
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; services: {', '.join(SERVICES)}")

    # --- children ---------------------------------------------------------------

    def probe(self, name: str | Child, timeout: float = 1.0) -> bool:
        """A service through its public port, or one replica process directly."""
        port = name.port if isinstance(name, Child) else self.ports[name]
        try:
            code, _ = runtime.call(port, "GET", "/healthz", timeout=timeout)
        except OSError:
            return False
        return code == 200

    def _await_healthy(self, child: Child, deadline: float) -> bool:
        while time.monotonic() < deadline and child.alive() and not self.stopping.is_set():
            if self.probe(child, timeout=0.5):
                child.healthy = True
                return True
            time.sleep(0.05)
        return False

    def start_all(self, timeout_s: float = 60.0) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            for child in self.all_children():
                child.start()
            for balancer in self.balancers.values():
                balancer.start()
        deadline = time.monotonic() + timeout_s
        for child in self.all_children():
            if not self._await_healthy(child, deadline) and not self.stopping.is_set():
                raise RuntimeError(f"{child.name} did not become healthy; see its log")
        with self.lock:
            if not self.stopping.is_set():
                self.loadgen.start()
                self.loadgen.healthy = True

    def restart_child(self, child: Child) -> int:
        """Stop and start one process; its config and the faults that outlive a process return."""
        with self.lock:
            if self.stopping.is_set():
                raise RuntimeError("the lab is shutting down")
            child.healthy = False  # out of the balancer's rotation before it stops answering
            child.stop()
            child.start()
            child.restarts += 1
        if child is self.loadgen:
            child.healthy = True
            return child.pid
        self._await_healthy(child, time.monotonic() + 30)
        if self.overrides.get(child.name):
            with contextlib.suppress(OSError, ValueError):
                self._patch_child(child, self.overrides[child.name])
        self.chaos.restarted(child)
        self.write_state()
        return child.pid

    def restart(self, service: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """One replica (``replica``: its index), or all of them one at a time (rolling)."""
        self.check_service(service)
        params = params or {}
        group = self.instances[service]
        if "replica" in params:
            index = int(params["replica"])
            if not 0 <= index < len(group):
                raise ValueError(f"{service} has replicas 0..{len(group) - 1}")
            group = [group[index]]
        before = [c.pid for c in group]
        # Rolling, ``batch`` replicas at a time (default one): the rest keep serving.
        batch = max(1, int(params.get("batch", 1)))
        pids: list[int] = []
        for i in range(0, len(group), batch):
            chunk = group[i : i + batch]
            for child in chunk:
                child.healthy = False
                child.stop()
            pids += [self.restart_child(c) for c in chunk]
        return {
            "ok": all(c.healthy for c in group),
            "previous_pid": before[0],
            "pid": pids[0],
            "restarted": [c.name for c in group],
            "pids": pids,
        }

    def scale(self, service: str, count: int) -> dict[str, Any]:
        """Add ``count`` replicas (negative: remove the newest) behind the service's balancer."""
        self.check_service(service)
        if service not in REPLICAS:
            raise ValueError(f"{service} runs one process with no balancer; it cannot be scaled")
        with self.lock:
            group = self.instances[service]
            wanted = len(group) + count
            if not 1 <= wanted <= MAX_REPLICAS:
                raise ValueError(f"{service} may have 1..{MAX_REPLICAS} replicas, not {wanted}")
            added: list[Child] = []
            removed: list[str] = []
            if count > 0:
                index = max(int(c.name.rsplit("-", 1)[1]) for c in group) + 1
                for i in range(count):
                    child = self._child(service, index + i)
                    child.env[runtime.PORTS_ENV] = self.env[runtime.PORTS_ENV]
                    for key in RELEASE_KEYS:  # the fleet's release, not the first one's
                        var = f"{ENV_PREFIX}{key.upper()}"
                        if var in group[0].env:
                            child.env[var] = group[0].env[var]
                    child.start()
                    added.append(child)
            else:
                for child in group[wanted:]:
                    child.release()
                    removed.append(child.name)
                del group[wanted:]
        for child in added:
            self._await_healthy(child, time.monotonic() + 30)
            template = self.overrides.get(group[0].name)
            if template:
                self.overrides[child.name] = dict(template)
                with contextlib.suppress(OSError, ValueError):
                    self._patch_child(child, template)
            with self.lock:
                group.append(child)  # in the balancer's rotation only once it is ready
            self.chaos.restarted(child)
        self.write_state()
        return {
            "ok": all(c.healthy for c in added),
            "added": [c.name for c in added],
            "removed": removed,
            "replicas": len(group),
        }

    def monitor(self) -> None:
        while not self.stopping.wait(MONITOR_INTERVAL_S):
            self.chaos.expire()
            for child in [*self.all_children(), self.loadgen]:
                if child.alive():
                    if child is not self.loadgen:
                        child.healthy = self.probe(child)
                    continue
                child.healthy = False
                child.close_listener()  # nobody answers there: refuse, don't queue
                if child.held:
                    continue  # chaos crashed it; it stays down until restarted
                if not child.next_restart_at:
                    # Simple backoff: longer after each unexpected death, at most 5 s.
                    child.next_restart_at = time.monotonic() + backoff_s(child.restarts)
                elif time.monotonic() >= child.next_restart_at:
                    child.next_restart_at = 0.0
                    with contextlib.suppress(RuntimeError, OSError):
                        self.restart_child(child)
            self.write_state()
            self.monitor_passes += 1

    def shutdown(self) -> None:
        with self.lock:
            self.stopping.set()
            order = [self.loadgen, *reversed(self.all_children())]
            for child in order:  # all at once: a slow one must not hold up the rest
                child.terminate()
            deadline = time.monotonic() + 5.0
            for child in order:
                child.reap(deadline)
            for balancer in self.balancers.values():
                balancer.stop()
            for path in (self.paths.lab_state, self.paths.control_token):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # --- state ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        services: dict[str, Any] = {}
        for name in SERVICES:
            group = self.instances[name]
            replicas = [
                {
                    "instance": c.name,
                    "pid": c.pid,
                    "port": c.port,
                    "running": c.alive(),
                    "healthy": c.healthy and c.alive(),
                    "restarts": c.restarts,
                }
                for c in group
            ]
            services[name] = {
                "pid": group[0].pid if group else 0,
                "port": self.ports[name],
                "healthy": bool(replicas) and all(r["healthy"] for r in replicas),
                "restarts": sum(r["restarts"] for r in replicas),
                "running": sum(r["running"] for r in replicas),
                "replicas": replicas,
            }
        return {
            "mode": "embedded",
            "supervisor_pid": os.getpid(),
            "control_port": self.control_port,
            "started_at": self.started_at,
            "otlp_endpoint": self.settings.otlp_endpoint,
            "export_to": self.settings.export_to,
            "services": services,
            "loadgen": {"pid": self.loadgen.pid, "rate": self.rate},
        }

    def write_state(self) -> None:
        with self.lock:  # never re-creates lab.json after shutdown removed it
            if self.stopping.is_set():
                return
            text = json.dumps(self.describe(), indent=1)
            if text == self._written and self.paths.lab_state.exists():
                return  # the monitor calls this twice a second; most times nothing changed
            tmp = self.paths.lab_state.with_name(f".lab.json.{os.getpid()}.tmp")
            tmp.write_text(text)
            os.replace(tmp, self.paths.lab_state)
            self._written = text

    def config_of(self, service: str) -> dict[str, Any]:
        """The runtime config of the service's first replica that answers."""
        for child in self.instances[service]:
            if not child.alive():
                continue
            try:
                code, config = runtime.call(
                    child.port, "GET", "/_admin/config", token=self.token, timeout=2
                )
            except OSError:
                continue
            if code == 200:
                return dict(config)
        return {}

    def status(self) -> dict[str, Any]:
        """Processes and runtime config; deliberately no fault in sight (see faults.py)."""
        doc = self.describe()
        for name, svc in doc["services"].items():
            svc["config"] = self.config_of(name)
            svc["healthy"] = svc["healthy"] and bool(svc["config"] or name == "db")
        # Not in lab.json, which would change on every pass: how far the monitor has got.
        doc["monitor_passes"] = self.monitor_passes
        return doc


class ControlHandler(runtime.JsonHandler):
    sup: Supervisor

    def do_GET(self) -> None:
        if not self.authorized():
            return
        path = self.path.split("?")[0]
        if path == "/health":
            # Answering at all is healthy here; a starved machine may take seconds to.
            healthy = {name: self.sup.probe(name, timeout=HEALTH_TIMEOUT_S) for name in SERVICES}
            services = self.sup.describe()["services"]
            for name, ok in healthy.items():
                services[name]["healthy"] = ok
            self.send_json(200, {"ok": all(healthy.values()), "services": services})
        elif path == "/status":
            self.send_json(200, self.sup.status())
        elif path == "/chaos":
            self.send_json(200, self.sup.chaos.status())
        else:
            self.send_json(404, {"error": f"no route {path}"})

    def do_POST(self) -> None:
        if not self.authorized():
            return
        path = self.path.split("?")[0]
        try:
            doc = self.read_json()
            if not isinstance(doc, dict):
                raise TypeError("the body must be a JSON object")
            if path == "/chaos":
                self.send_json(200, self.sup.chaos.inject(doc))
            elif path == "/actions":
                self.send_json(200, self.sup.act(doc))
            elif path == "/shutdown":
                self.send_json(200, {"ok": True})
                os.kill(os.getpid(), signal.SIGTERM)  # main thread stops everything
            else:
                self.send_json(404, {"error": f"no route {path}"})
        except (ValueError, KeyError, TypeError) as exc:
            self.send_json(400, {"error": str(exc)})
        except (OSError, RuntimeError) as exc:
            self.send_json(503, {"error": f"lab process unreachable: {exc}"})

    def do_DELETE(self) -> None:
        if not self.authorized():
            return
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/chaos":
            self.send_json(404, {"error": f"no route {url.path}"})
            return
        fault = dict(urllib.parse.parse_qsl(url.query)).get("fault")
        try:
            self.send_json(200, {"reverted": self.sup.chaos.revert(fault)})
        except OSError as exc:
            self.send_json(503, {"error": f"lab process unreachable: {exc}"})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sre_space.lab.supervisor")
    parser.add_argument("--home", required=True)
    parser.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("SRE_SPACE_LAB_RATE") or DEFAULT_RATE),
        help="requests per second the load generator offers (default 50)",
    )
    args = parser.parse_args(argv)
    runtime.quiet_logging("supervisor")
    settings = Settings(home=args.home)
    sup = Supervisor(settings, rate=max(0.1, args.rate))
    os.environ[runtime.TOKEN_ENV] = sup.token  # what ControlHandler.authorized compares with
    write_secret(sup.paths.control_token, sup.token)
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        sup.stopping.set()  # also cuts a start-up that is still waiting on health
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    ControlHandler.sup = sup
    server = runtime.LabServer(("127.0.0.1", 0), ControlHandler)
    sup.control_port = int(server.server_address[1])
    threading.Thread(target=server.serve_forever, name="control", daemon=True).start()
    code = 0
    try:
        sup.start_all()
        sup.write_state()
        threading.Thread(target=sup.monitor, name="monitor", daemon=True).start()
        while not stop.wait(1.0):  # a timed wait keeps the signal handler responsive
            pass
    except Exception as exc:  # logged to supervisor.log; the launcher reports the exit
        print(f"lab supervisor failed: {exc}", file=sys.stderr)
        code = 1
    finally:
        sup.shutdown()
        server.shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
