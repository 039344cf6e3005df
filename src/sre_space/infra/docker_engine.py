"""The Docker engine: is one there, and `docker compose` up and down against it.

`docker compose` (the v2 plugin) is used when the docker CLI has it, else
Debian's `docker-compose` (v1.29). Every command is an argument list built
here from a file path, the project name and fixed flags: never a shell
string, never anything read from telemetry. `compose_up` returns only when
every service's healthcheck passes, or raises at its deadline.

The Docker SDK (``pip install 'sre-space[docker]'``) is optional: without it,
`engine_reachable` pings the engine's socket itself and the Docker actuator
drives containers through the docker CLI (`CliDockerClient`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sre_space.errors import TimedOut, Unavailable, UsageError
from sre_space.infra.compose import COMPOSE_FILE, PROJECT, endpoints

Progress = Callable[[str], None]

SERVICE_LABEL = "com.docker.compose.service"
PROJECT_LABEL = "com.docker.compose.project"
READY = frozenset({"healthy", "running", "exited(0)"})
_PROJECT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
DOCKER_EXTRA_HINT = "pip install 'sre-space[docker]' (the Docker SDK)"


@dataclass(frozen=True)
class Completed:
    returncode: int
    stdout: str
    stderr: str


Runner = Callable[[Sequence[str], Mapping[str, str], "float | None"], Completed]


def run_command(argv: Sequence[str], env: Mapping[str, str], timeout_s: float | None) -> Completed:
    """Run one command (an argument list) with ``env`` over this process's environment."""
    try:
        done = subprocess.run(
            list(argv),
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except FileNotFoundError:
        raise Unavailable(f"{argv[0]} is not installed") from None
    except subprocess.TimeoutExpired:
        raise TimedOut(f"`{' '.join(argv[:3])}` ran past {timeout_s:.0f} s") from None
    return Completed(done.returncode, done.stdout, done.stderr)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


# --- is an engine there? ---------------------------------------------------------


def _socket_candidates() -> list[str]:
    explicit = os.environ.get("DOCKER_HOST")
    if explicit:
        return [explicit]
    found = ["unix:///var/run/docker.sock"]
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR")
    if runtime_dir:
        found.append(f"unix://{runtime_dir}/docker.sock")  # rootless Docker
    found.append(f"unix://{Path.home() / '.docker' / 'run' / 'docker.sock'}")  # Docker Desktop
    return found


def _ping(sock: socket.socket) -> tuple[bool, str]:
    sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
    raw = b""
    while len(raw) < 8192:
        chunk = sock.recv(4096)
        if not chunk:
            break
        raw += chunk
    head = raw.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    status = head.split("\r\n", 1)[0]
    api = re.search(r"(?im)^api-version:\s*(\S+)", head)
    if " 200" not in status:
        return False, f"answered {status or 'nothing'} to /_ping"
    return True, f"API {api.group(1)}" if api else "API version unknown"


def _ping_raw(timeout_s: float) -> tuple[bool, str]:
    problems = []
    for url in _socket_candidates():
        parts = urlsplit(url)
        try:
            if parts.scheme == "unix":
                path = parts.path
                if not os.path.exists(path):
                    problems.append(f"{path}: no such socket")
                    continue
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(timeout_s)
                    sock.connect(path)
                    ok, detail = _ping(sock)
            elif parts.scheme == "tcp" and parts.hostname:
                with socket.create_connection(
                    (parts.hostname, parts.port or 2375), timeout=timeout_s
                ) as sock:
                    if os.environ.get("DOCKER_TLS_VERIFY"):
                        return (
                            True,
                            f"{url} accepts connections (TLS not checked without the Docker SDK)",
                        )
                    ok, detail = _ping(sock)
            else:
                problems.append(f"DOCKER_HOST={url}: checking it needs {DOCKER_EXTRA_HINT}")
                continue
        except OSError as exc:
            problems.append(f"{url}: {exc.strerror or exc}")
            continue
        if ok:
            return True, f"Docker engine at {url} ({detail})"
        problems.append(f"{url} {detail}")
    return False, "; ".join(problems)


def engine_reachable(timeout_s: float = 3.0) -> tuple[bool, str]:
    """(True, what answered) when a Docker engine answers, else (False, why not), in one line."""
    try:
        import docker
    except ImportError:
        return _ping_raw(timeout_s)
    where = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    try:
        client = docker.from_env(timeout=max(1, int(timeout_s)))
        try:
            client.ping()
            version = client.version().get("Version", "?")
        finally:
            client.close()
    except Exception as exc:  # the SDK raises DockerException, requests' errors, OSError
        return False, f"{where}: {_last_line(str(exc)) or type(exc).__name__}"
    return True, f"Docker engine {version} at {where}"


# --- docker compose -----------------------------------------------------------------


def compose_command(
    env: Mapping[str, str] | None = None, runner: Runner = run_command
) -> list[str]:
    """``["docker", "compose"]`` when the plugin is there, else ``["docker-compose"]``."""
    if shutil.which("docker"):
        try:
            if runner(["docker", "compose", "version"], env or {}, 15).returncode == 0:
                return ["docker", "compose"]
        except (Unavailable, TimedOut):
            pass
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise Unavailable(
        "neither `docker compose` (the Compose plugin) nor `docker-compose` is installed"
    )


class Compose:
    """One Compose project: its files, its name, and the commands run against it."""

    def __init__(
        self,
        project_dir: Path,
        *,
        project: str = PROJECT,
        env: Mapping[str, str] | None = None,
        override: Path | None = None,
        command: Sequence[str] | None = None,
        runner: Runner = run_command,
    ) -> None:
        if not _PROJECT_NAME.match(project):
            raise UsageError(
                f"project name {project!r}: use lowercase letters, digits, '-' and '_'"
            )
        self.file = Path(project_dir) / COMPOSE_FILE
        if not self.file.is_file():
            raise Unavailable(f"no {COMPOSE_FILE} in {project_dir}")
        self.project = project
        self.override = override
        self.env = dict(env or {})
        self._runner = runner
        self._command = list(command) if command else None

    @property
    def command(self) -> list[str]:
        if self._command is None:
            self._command = compose_command(self.env, self._runner)
        return self._command

    def files(self) -> list[Path]:
        """The base file, then the actuator's override once it exists."""
        found = [self.file]
        if self.override is not None and self.override.is_file():
            found.append(self.override)
        return found

    def argv(self, *args: str) -> list[str]:
        argv = [*self.command, "-p", self.project]
        for path in self.files():
            argv += ["-f", str(path)]
        return [*argv, *args]

    def run(self, *args: str, timeout_s: float | None = 600.0) -> str:
        done = self._runner(self.argv(*args), self.env, timeout_s)
        if done.returncode != 0:
            why = _last_line(done.stderr) or _last_line(done.stdout) or "no output"
            raise Unavailable(
                f"compose {args[0] if args else ''} failed ({done.returncode}): {why}"
            )
        return done.stdout

    def docker(self, *args: str, timeout_s: float | None = 60.0) -> str:
        """A plain docker CLI command (inspect, restart) with the project's environment."""
        done = self._runner(["docker", *args], self.env, timeout_s)
        if done.returncode != 0:
            why = _last_line(done.stderr) or "no output"
            raise Unavailable(f"docker {args[0] if args else ''} failed ({done.returncode}): {why}")
        return done.stdout


def container_state(doc: Mapping[str, Any]) -> str:
    """One container's state from `docker inspect`: healthy, starting, running, exited(N)..."""
    state = doc.get("State") or {}
    status = str(state.get("Status", "unknown"))
    if status == "exited":
        return f"exited({state.get('ExitCode', '?')})"
    health = state.get("Health")
    if status == "running" and isinstance(health, Mapping) and health.get("Status"):
        return str(health["Status"])
    return status


def service_states(compose: Compose) -> dict[str, str]:
    """Each service's state; a scaled service reports its least ready container."""
    ids = compose.run("ps", "-a", "-q", timeout_s=60).split()
    if not ids:
        return {}
    docs = json.loads(compose.docker("inspect", *ids) or "[]")
    states: dict[str, str] = {}
    for doc in docs:
        service = ((doc.get("Config") or {}).get("Labels") or {}).get(SERVICE_LABEL)
        if not service:
            continue
        state = container_state(doc)
        if service not in states or states[service] in READY:
            states[service] = state
    return states


def wait_healthy(
    compose: Compose,
    deadline: float,
    progress: Progress | None = None,
    *,
    poll_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Poll until every service is healthy (or done, for one-shot jobs); raise at ``deadline``."""
    say = progress or (lambda _msg: None)
    expected = compose.run("config", "--services", timeout_s=60).split()
    said = ""
    while True:
        states = service_states(compose)
        failed = {
            s: st
            for s, st in states.items()
            if st == "dead" or (st.startswith("exited") and st not in READY)
        }
        if failed:
            name, state = sorted(failed.items())[0]
            raise Unavailable(
                f"{name} stopped: {state}; see `{' '.join(compose.command)} -p {compose.project} logs {name}`"
            )
        waiting = {s: states.get(s, "not created") for s in expected if states.get(s) not in READY}
        if not waiting:
            say(f"all {len(expected)} services are healthy")
            return states
        listing = ", ".join(f"{s} ({st})" for s, st in sorted(waiting.items()))
        if clock() > deadline:
            raise TimedOut(f"not healthy in time: {listing}")
        if listing != said:
            say(f"waiting for {listing}")
            said = listing
        sleep(poll_s)


def _require_engine() -> None:
    ok, why = engine_reachable()
    if not ok:
        raise Unavailable(f"no Docker engine reachable: {why}")


def compose_up(
    project_dir: Path,
    env: Mapping[str, str],
    progress: Progress | None = None,
    *,
    project: str = PROJECT,
    timeout_s: float = 900.0,
    build: bool = True,
    override: Path | None = None,
    runner: Runner = run_command,
    command: Sequence[str] | None = None,
    check_engine: bool = True,
    poll_s: float = 2.0,
) -> dict[str, Any]:
    """Build, start and wait for the stack; answer what runs and where it listens.

    ``env`` comes from compose.compose_env (build knobs, ports, the lab token).
    Raises Unavailable (no engine, no compose, a service stopped) or TimedOut.
    """
    say = progress or (lambda _msg: None)
    deadline = time.monotonic() + timeout_s
    if check_engine:
        _require_engine()
    compose = Compose(
        project_dir, project=project, env=env, override=override, command=command, runner=runner
    )

    def left() -> float:
        return max(1.0, deadline - time.monotonic())

    if build:
        say("building images (the lab's, the Collector's with its probe)")
        compose.run("build", timeout_s=left())
    say(f"starting project {project}")
    compose.run(
        "up", "-d", "--remove-orphans", *(() if build else ("--no-build",)), timeout_s=left()
    )
    states = wait_healthy(compose, deadline, say, poll_s=poll_s)
    return {
        "project": project,
        "files": [str(path) for path in compose.files()],
        "services": dict(sorted(states.items())),
        "endpoints": endpoints(env),
    }


def compose_down(
    project_dir: Path,
    env: Mapping[str, str],
    progress: Progress | None = None,
    *,
    project: str = PROJECT,
    volumes: bool = False,
    timeout_s: float = 180.0,
    override: Path | None = None,
    runner: Runner = run_command,
    command: Sequence[str] | None = None,
    check_engine: bool = True,
) -> None:
    """Stop and remove the project's containers and network (and its volumes with ``volumes``)."""
    say = progress or (lambda _msg: None)
    if check_engine:
        _require_engine()
    compose = Compose(
        project_dir, project=project, env=env, override=override, command=command, runner=runner
    )
    say(f"stopping project {project}" + (" and removing its volumes" if volumes else ""))
    compose.run(
        "down", "--remove-orphans", *(("--volumes",) if volumes else ()), timeout_s=timeout_s
    )


def host_gateway(env: Mapping[str, str] | None = None, runner: Runner = run_command) -> str | None:
    """The default bridge's gateway address (what ``host-gateway`` maps to), if the engine says."""
    try:
        done = runner(
            ["docker", "network", "inspect", "bridge", "--format", "{{json .IPAM.Config}}"],
            env or {},
            15,
        )
    except (Unavailable, TimedOut):
        return None
    if done.returncode != 0:
        return None
    try:
        configs = json.loads(done.stdout or "null") or []
    except ValueError:
        return None
    for config in configs:
        gateway = config.get("Gateway") if isinstance(config, dict) else None
        if gateway:
            return str(gateway)
    return None


# --- containers through the CLI (when the Docker SDK is not installed) -------------


class CliContainer:
    """The slice of the SDK's Container that the Docker actuator uses, over `docker inspect`."""

    def __init__(self, doc: Mapping[str, Any], docker: Callable[..., str]) -> None:
        self.attrs = dict(doc)
        self.id = str(doc.get("Id", ""))
        self.name = str(doc.get("Name", "")).lstrip("/")
        self.status = str((doc.get("State") or {}).get("Status", "unknown"))
        self.labels = dict((doc.get("Config") or {}).get("Labels") or {})
        self._docker = docker

    def restart(self, timeout: int = 10) -> None:
        self._docker("restart", "--time", str(int(timeout)), self.id, timeout_s=timeout + 60)


class _CliContainers:
    def __init__(self, docker: Callable[..., str]) -> None:
        self._docker = docker

    def list(
        self, all: bool = False, filters: Mapping[str, Any] | None = None
    ) -> list[CliContainer]:
        argv = ["ps", "-q", "--no-trunc"] + (["--all"] if all else [])
        for key, values in (filters or {}).items():
            for value in [values] if isinstance(values, str) else list(values):
                argv += ["--filter", f"{key}={value}"]
        ids = self._docker(*argv).split()
        if not ids:
            return []
        return [
            CliContainer(doc, self._docker) for doc in json.loads(self._docker("inspect", *ids))
        ]


class CliDockerClient:
    """``client.containers.list(...)`` and ``container.restart()`` through the docker CLI."""

    def __init__(self, env: Mapping[str, str] | None = None, runner: Runner = run_command) -> None:
        self._env = dict(env or {})
        self._runner = runner
        self.containers = _CliContainers(self._docker)

    def _docker(self, *args: str, timeout_s: float | None = 60.0) -> str:
        done = self._runner(["docker", *args], self._env, timeout_s)
        if done.returncode != 0:
            raise Unavailable(
                f"docker {args[0]} failed: {_last_line(done.stderr) or done.returncode}"
            )
        return done.stdout


def docker_client(env: Mapping[str, str] | None = None) -> Any:
    """The Docker SDK's client when it is installed, else the CLI-backed one."""
    try:
        import docker
    except ImportError:
        return CliDockerClient(env)
    try:
        return docker.from_env()
    except Exception as exc:  # DockerException when no engine answers
        raise Unavailable(f"no Docker engine reachable: {_last_line(str(exc))}") from None
