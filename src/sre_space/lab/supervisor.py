"""The lab supervisor: ``python -m sre_space.lab.supervisor --home HOME [--rate RPS]``.

Binds a loopback socket for every service and hands it to the service's child
process, restarts a child that dies, holds the chaos state, and serves the
token-protected control API. SIGTERM or POST /shutdown stops everything.
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
from sre_space.lab.faults import FAULT_PATH, FAULTS, clamp_duration
from sre_space.localapi import write_secret
from sre_space.paths import Paths

SERVICES = ("db", "payments", "inventory", "checkout", "frontend")
STOP_GRACE_S = 5.0  # SIGTERM, then SIGKILL after this
DEFAULT_RATE = 50.0


class Child:
    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log: IO[bytes],
        sock: socket.socket | None,
    ) -> None:
        self.name, self.argv, self.log, self.sock = name, argv, log, sock
        self.env = dict(env)
        if sock is not None:
            self.env[runtime.FD_ENV] = str(sock.fileno())
        self.proc: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self.healthy = False
        self.next_restart_at = 0.0  # backoff: when a dead child may be started again

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1]) if self.sock else 0

    def start(self) -> None:
        self.healthy = False
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.log,
            pass_fds=(self.sock.fileno(),) if self.sock else (),
        )

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc else 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def terminate(self) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()

    def reap(self, deadline: float) -> None:
        """Wait for the child until ``deadline``, then kill it; never leaves it running."""
        if self.proc is None:
            return
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        self.terminate()
        self.reap(time.monotonic() + STOP_GRACE_S)


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(256)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, settings: Settings, rate: float = DEFAULT_RATE) -> None:
        self.settings = settings
        self.rate = rate
        self.paths = Paths(settings.home).ensure()
        self.token = secrets.token_urlsafe(32)
        self.started_at = time.time()
        self.control_port = 0  # set once the control API is listening
        self.stopping = threading.Event()
        self.lock = threading.RLock()  # children, faults and lab.json change under it
        self.faults: dict[str, dict[str, Any]] = {}
        self._written = ""  # the last lab.json text
        socks = {name: _listen() for name in SERVICES}
        self.ports = {name: int(s.getsockname()[1]) for name, s in socks.items()}
        env = {
            **os.environ,
            runtime.TOKEN_ENV: self.token,
            runtime.PORTS_ENV: json.dumps(self.ports),
            runtime.OTLP_ENV: settings.otlp_endpoint,
            runtime.DIR_ENV: str(self.paths.lab_dir),
            runtime.SUPERVISOR_ENV: str(os.getpid()),
            "SRE_SPACE_LAB_RATE": str(rate),
        }
        self.children: dict[str, Child] = {}
        for name in (*SERVICES, "loadgen"):
            module = "sre_space.lab.loadgen" if name == "loadgen" else "sre_space.lab.service"
            argv = [sys.executable, "-m", module] + ([] if name == "loadgen" else [name])
            log = open(self.paths.logs_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives with the child
            # The users hold no admin token: the load generator only gets the ports.
            child_env = (
                env
                if name != "loadgen"
                else {k: v for k, v in env.items() if k != runtime.TOKEN_ENV}
            )
            self.children[name] = Child(name, argv, child_env, log, socks.get(name))

    # --- children ---------------------------------------------------------------

    def probe(self, name: str, timeout: float = 1.0) -> bool:
        try:
            code, _ = runtime.call(self.ports[name], "GET", "/healthz", timeout=timeout)
        except OSError:
            return False
        return code == 200

    def _await_healthy(self, name: str, deadline: float) -> bool:
        child = self.children[name]
        while time.monotonic() < deadline and child.alive() and not self.stopping.is_set():
            if self.probe(name, timeout=0.5):
                child.healthy = True
                return True
            time.sleep(0.05)
        return False

    def start_all(self, timeout_s: float = 60.0) -> None:
        with self.lock:
            if self.stopping.is_set():
                return
            for name in SERVICES:
                self.children[name].start()
        deadline = time.monotonic() + timeout_s
        for name in SERVICES:
            if not self._await_healthy(name, deadline) and not self.stopping.is_set():
                raise RuntimeError(f"{name} did not become healthy; see its log")
        with self.lock:
            if not self.stopping.is_set():
                self.children["loadgen"].start()
                self.children["loadgen"].healthy = True

    def restart(self, name: str) -> int:
        """Stop and start one child; faults that target it are applied again."""
        with self.lock:
            if self.stopping.is_set():
                raise RuntimeError("the lab is shutting down")
            child = self.children[name]
            child.stop()
            child.start()
            child.restarts += 1
        if name != "loadgen":
            self._await_healthy(name, time.monotonic() + 30)
            for fault, active in list(self.faults.items()):
                if active["target"] == name:
                    self._apply_fault(fault, name, active["params"])
        else:
            child.healthy = True
        self.write_state()
        return child.pid

    def monitor(self) -> None:
        while not self.stopping.wait(0.5):
            now = time.time()
            for fault, active in list(self.faults.items()):
                if now >= active["expires_at"]:
                    with contextlib.suppress(OSError, ValueError):
                        self.revert(fault)
            for name, child in self.children.items():
                if child.alive():
                    if name != "loadgen":
                        child.healthy = self.probe(name)
                    continue
                child.healthy = False
                if not child.next_restart_at:
                    # Simple backoff: longer after each unexpected death, at most 5 s.
                    child.next_restart_at = time.monotonic() + min(5.0, 0.5 * (child.restarts + 1))
                elif time.monotonic() >= child.next_restart_at:
                    child.next_restart_at = 0.0
                    with contextlib.suppress(RuntimeError, OSError):
                        self.restart(name)
            self.write_state()

    def shutdown(self) -> None:
        with self.lock:
            self.stopping.set()
            order = ("loadgen", *reversed(SERVICES))
            for name in order:  # all at once: a slow one must not hold up the rest
                self.children[name].terminate()
            deadline = time.monotonic() + STOP_GRACE_S
            for name in order:
                self.children[name].reap(deadline)
            for path in (self.paths.lab_state, self.paths.control_token):
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # --- state ----------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        services = {
            name: {
                "pid": self.children[name].pid,
                "port": self.ports[name],
                "healthy": self.children[name].healthy and self.children[name].alive(),
                "restarts": self.children[name].restarts,
            }
            for name in SERVICES
        }
        return {
            "mode": "embedded",
            "supervisor_pid": os.getpid(),
            "control_port": self.control_port,
            "started_at": self.started_at,
            "otlp_endpoint": self.settings.otlp_endpoint,
            "services": services,
            "loadgen": {"pid": self.children["loadgen"].pid, "rate": self.rate},
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

    def status(self) -> dict[str, Any]:
        """Processes and runtime config; deliberately no fault in sight (see faults.py)."""
        doc = self.describe()
        for name, svc in doc["services"].items():
            try:
                code, config = runtime.call(
                    self.ports[name], "GET", "/_admin/config", token=self.token, timeout=2
                )
            except OSError:
                code, config = 0, {}
            svc["config"] = config if code == 200 else {}
            svc["healthy"] = svc["healthy"] and code == 200
        return doc

    # --- chaos ------------------------------------------------------------------------

    def _apply_fault(self, fault: str, target: str, params: dict[str, Any]) -> None:
        doc = {"fault": fault, "params": params}
        code, body = runtime.call(self.ports[target], "POST", FAULT_PATH, doc, token=self.token)
        if code != 200:
            raise ValueError(str(body.get("error", f"{target} refused fault {fault}")))

    def _clear_fault(self, fault: str, target: str) -> None:
        query = urllib.parse.urlencode({"fault": fault})
        runtime.call(self.ports[target], "DELETE", f"{FAULT_PATH}?{query}", token=self.token)

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
        params = spec.resolve_params(doc.get("params"))
        duration = clamp_duration(doc.get("duration_s"))
        now = time.time()
        with self.lock:
            previous = self.faults.get(name)
            if previous and previous["target"] != target:
                self._clear_fault(name, previous["target"])
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
                active = self.faults.get(name)
                if active:
                    self._clear_fault(name, active["target"])
                    del self.faults[name]  # only once the target has really let go
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
        return {"previous": doc.get("previous", {}), "current": doc.get("current", {})}

    def act(self, doc: dict[str, Any]) -> dict[str, Any]:
        action, service = doc.get("action"), str(doc.get("service", ""))
        if service not in SERVICES:
            raise ValueError(f"unknown service {service!r}; services: {', '.join(SERVICES)}")
        if action == "patch_config":
            return {"ok": True, **self.patch(service, dict(doc.get("params") or {}))}
        if action == "restart":
            before = self.children[service].pid
            pid = self.restart(service)
            return {"ok": self.children[service].healthy, "previous_pid": before, "pid": pid}
        raise ValueError(f"unknown action {action!r}; actions: patch_config, restart")


class ControlHandler(runtime.JsonHandler):
    sup: Supervisor

    def do_GET(self) -> None:
        if not self.authorized():
            return
        path = self.path.split("?")[0]
        if path == "/health":
            healthy = {name: self.sup.probe(name) for name in SERVICES}
            services = self.sup.describe()["services"]
            for name, ok in healthy.items():
                services[name]["healthy"] = ok
            self.send_json(200, {"ok": all(healthy.values()), "services": services})
        elif path == "/status":
            self.send_json(200, self.sup.status())
        elif path == "/chaos":
            self.send_json(200, self.sup.chaos_status())
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
                self.send_json(200, self.sup.inject(doc))
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
            self.send_json(200, {"reverted": self.sup.revert(fault)})
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
