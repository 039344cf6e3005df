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
from sre_space.lab.control import LabClient, pid_alive
from sre_space.paths import Paths

# Supervisors this process spawned: polled so they never linger as zombies in a
# long-lived caller (a test run, the TUI) once they exit.
_spawned: list[subprocess.Popen[bytes]] = []


@dataclass
class LabState:
    mode: str
    supervisor_pid: int
    control_port: int
    services: dict[str, dict[str, Any]]
    started_at: float
    already_running: bool = False
    loadgen: dict[str, Any] = field(default_factory=dict)
    otlp_endpoint: str = ""

    def pids(self) -> list[int]:
        """Every process of the lab: supervisor, services, load generator."""
        pids = [self.supervisor_pid, int(self.loadgen.get("pid") or 0)]
        for svc in self.services.values():
            replicas = svc.get("replicas") or [svc]
            pids += [int(r.get("pid") or 0) for r in replicas]
        return [p for p in pids if p > 0]


def _reap() -> None:
    for proc in list(_spawned):
        if proc.poll() is not None:
            _spawned.remove(proc)


def read_lab_state(settings: Settings) -> LabState | None:
    """The running lab, or None; a lab.json whose supervisor is gone is removed."""
    _reap()
    path = Paths(settings.home).lab_state
    try:
        doc = json.loads(path.read_text())
        state = LabState(
            mode=str(doc.get("mode", "embedded")),
            supervisor_pid=int(doc["supervisor_pid"]),
            control_port=int(doc["control_port"]),
            services=dict(doc.get("services", {})),
            started_at=float(doc.get("started_at", 0)),
            loadgen=dict(doc.get("loadgen", {})),
            otlp_endpoint=str(doc.get("otlp_endpoint", "")),
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if not pid_alive(state.supervisor_pid):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # stale: the supervisor died without cleaning up
        return None
    return state


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def start_lab(settings: Settings, timeout_s: float = 60.0) -> LabState:
    existing = read_lab_state(settings)
    if existing is not None:
        existing.already_running = True
        return existing
    paths = Paths(settings.home).ensure()
    log_path = paths.logs_dir / "supervisor.log"
    # Settings reach the supervisor explicitly, whatever this process's environment says.
    env = {
        **os.environ,
        "SRE_SPACE_HOME": str(settings.home),
        "SRE_SPACE_OTLP_HOST": settings.otlp_host,
        "SRE_SPACE_OTLP_HTTP_PORT": str(settings.otlp_http_port),
        "SRE_SPACE_EXPORT_TO": json.dumps(settings.export_to),
    }
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "sre_space.lab.supervisor", "--home", str(settings.home)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survives the terminal; its own process group for `down`
        )
    _spawned.append(proc)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                _kill_group(proc.pid)  # children it may have left behind
                raise Unavailable(
                    f"the lab supervisor exited with code {proc.returncode}; see {log_path}"
                )
            state = read_lab_state(settings)
            if state is not None and state.supervisor_pid == proc.pid:
                with contextlib.suppress(SreSpaceError):
                    if LabClient.from_settings(settings).health().get("ok"):
                        return read_lab_state(settings) or state
            time.sleep(0.2)
    except BaseException:  # interrupted while it starts (Ctrl-C, a drill's SIGTERM)
        _take_down(proc, paths)
        raise
    _take_down(proc, paths)  # not healthy in time
    raise TimedOut(f"the lab was not healthy within {timeout_s:.0f} s; see {log_path}")


def _take_down(proc: subprocess.Popen[bytes], paths: Paths) -> None:
    """Whatever a start that did not finish began goes, lab.json or not."""
    with contextlib.suppress(ProcessLookupError):
        proc.terminate()
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    _kill_group(proc.pid)
    with contextlib.suppress(FileNotFoundError):
        paths.lab_state.unlink()


def stop_lab(settings: Settings, timeout_s: float = 30.0) -> bool:
    state = read_lab_state(settings)
    if state is None:
        return False
    pids = state.pids()
    with contextlib.suppress(SreSpaceError):
        LabClient.from_settings(settings).shutdown()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(pid_alive(p) for p in pids):
        _reap()
        time.sleep(0.05)
    # Fallback: whatever is left in the supervisor's process group (every lab process
    # is in it, and only lab processes are) goes now.
    _kill_group(state.supervisor_pid)
    kill_deadline = time.monotonic() + 5
    while time.monotonic() < kill_deadline and any(pid_alive(p) for p in pids):
        _reap()
        time.sleep(0.05)
    _reap()
    paths = Paths(settings.home)
    for path in (paths.lab_state, paths.control_token):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return True
