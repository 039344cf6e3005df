"""Start, find and stop the embedded lab from the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any

from sre_space.config import Settings
from sre_space.errors import SreSpaceError, TimedOut, Unavailable
from sre_space.lab.control import LabClient
from sre_space.paths import Paths


@dataclass
class LabState:
    mode: str
    supervisor_pid: int
    control_port: int
    services: dict[str, dict[str, Any]]
    started_at: float
    loadgen: dict[str, Any] = field(default_factory=dict)
    already_running: bool = False

    def pids(self) -> list[int]:
        pids = [self.supervisor_pid, int(self.loadgen.get("pid") or 0)]
        pids += [int(s.get("pid") or 0) for s in self.services.values()]
        return [p for p in pids if p]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split()[2] != "Z"
    except OSError:
        return True


def docker_engine_reason() -> str:
    """Why the embedded lab is used (the Compose path needs a reachable engine)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not os.path.exists(host[len("unix://") :]):
        return f"no Docker engine reachable at {host}"
    return f"Compose support is not enabled in this build (DOCKER_HOST={host})"


def read_lab_state(settings: Settings) -> LabState | None:
    path = Paths(settings.home).lab_state
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    state = LabState(
        mode=doc.get("mode", "embedded"),
        supervisor_pid=int(doc["supervisor_pid"]),
        control_port=int(doc["control_port"]),
        services=dict(doc.get("services", {})),
        started_at=float(doc.get("started_at", 0)),
        loadgen=dict(doc.get("loadgen", {})),
    )
    if not _alive(state.supervisor_pid):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # stale: the supervisor died without cleaning up
        return None
    return state


def start_lab(settings: Settings, timeout_s: float = 60.0) -> LabState:
    existing = read_lab_state(settings)
    if existing is not None:
        existing.already_running = True
        return existing
    paths = Paths(settings.home).ensure()
    log = open(paths.logs_dir / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(settings.home),
        "SRE_SPACE_OTLP_HOST": settings.otlp_host,
        "SRE_SPACE_OTLP_HTTP_PORT": str(settings.otlp_http_port),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "sre_space.lab.supervisor", "--home", str(settings.home)],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,  # survives the terminal; its own process group for `down`
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise Unavailable(
                f"the lab supervisor exited with {proc.returncode}; see {paths.logs_dir / 'supervisor.log'}"
            )
        state = read_lab_state(settings)
        if state is not None:
            try:
                if LabClient.from_settings(settings).health().get("ok"):
                    return read_lab_state(settings) or state
            except SreSpaceError:
                pass
        time.sleep(0.2)
    stop_lab(settings)
    raise TimedOut(f"the lab was not healthy within {timeout_s:.0f} s")


def stop_lab(settings: Settings, timeout_s: float = 30.0) -> bool:
    state = read_lab_state(settings)
    if state is None:
        return False
    pids = state.pids()
    with contextlib.suppress(SreSpaceError):
        LabClient.from_settings(settings).shutdown()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    # Fallback: whatever is left in the supervisor's process group goes now.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(state.supervisor_pid, signal.SIGKILL)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(FileNotFoundError):
        Paths(settings.home).lab_state.unlink()
    return True
