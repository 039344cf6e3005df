"""Shared test helpers: free ports, waiting on a condition with a deadline, the CLI as a
subprocess, a span builder, a Chroma server, the squad's common diagnosis.

The fixtures built on them (``home``, ``cli``, ``make_span``) are in conftest.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from sre_space.telemetry.model import Span, SpanKind

T = TypeVar("T")

# Where things are: the tests' folder (unit/, integration/, e2e/ beside this file),
# their recorded inputs, and the project.
TESTS = Path(__file__).resolve().parent
FIXTURES = TESTS / "fixtures"
ROOT = TESTS.parent

# The real `sre-space` command, as a user runs it (a new process each time).
CLI = [sys.executable, "-m", "sre_space"]
Cli = Callable[..., "subprocess.CompletedProcess[str]"]  # conftest's ``cli``: sre-space on a home

# One diagnosis the squad's tests act on: a catalog read that timed out (the
# Brain's verdict as fixer.fixer reads it). Copy it before changing a field.
SIGNATURE = "catalog|GET /items/{id}|timeout|ReadTimeout"
DIAGNOSIS: dict[str, Any] = {
    "service": "catalog",
    "operation": "GET /items/{id}",
    "fault_class": "timeout",
    "exception": "ReadTimeout: timed out",
    "signature": SIGNATURE,
    "confidence": 0.9,
}
# A memory hit: a fix that verifiably worked here before for the same signature.
MEMORY_HIT: dict[str, Any] = {
    "id": "INC-BEFORE",
    "outcome": "recovered",
    "signature": SIGNATURE,
    "confidence": 0.95,
    "remediation": {"action": "scale_out", "service": "catalog", "params": {"replicas": 3}},
}


def _ephemeral_low() -> int:
    """The first port of the kernel's range for outgoing connections (Linux: 32768)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS = random.Random()  # seeded from the OS: each xdist worker draws its own
_EPHEMERAL_LOW = _ephemeral_low()


def free_port() -> int:
    """A loopback port free now, for a server a test starts in another process.

    Below the kernel's ephemeral range: a port bound to 0 comes from that range,
    and the kernel may hand it to any outgoing connection (a lab makes hundreds
    a second) before the server meant for it binds it ("Address already in
    use", seen once in a drill beside a second worker and two CPU burners).
    """
    low = max(1024, _EPHEMERAL_LOW - 12000)
    for _ in range(200 if _EPHEMERAL_LOW - low >= 1000 else 0):
        port = _PORTS.randrange(low, _EPHEMERAL_LOW)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # no room below the range: the kernel's pick
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli_env(home: Path, **extra: str) -> dict[str, str]:
    """A CLI subprocess's environment: this one's without any ``SRE_SPACE_*``, on ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_SPACE_")}
    env.update(SRE_SPACE_HOME=str(home), NO_COLOR="1", **extra)
    return env


def sre(
    home: Path,
    *args: str,
    check: bool = False,
    stdin: str | None = None,
    timeout: float = 300,
    **env: str,
) -> subprocess.CompletedProcess[str]:
    """Run ``sre-space ARGS`` on ``home`` (``env`` added to its environment); its result.

    ``check`` fails the test with the command's stderr when it exits non-zero.
    """
    proc = subprocess.run(
        [*CLI, *args],
        env=cli_env(home, **env),
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"sre-space {' '.join(args)} -> {proc.returncode}: {proc.stderr}")
    return proc


def span(
    service: str,
    name: str,
    start_s: float,
    ms: float = 20.0,
    *,
    error: bool = False,
    trace: int = 1,
    n: int = 1,
    parent: int | None = None,
    kind: SpanKind = SpanKind.SERVER,
    resource: dict[str, Any] | None = None,
    **attributes: Any,
) -> Span:
    """Span ``n`` of trace ``trace``: ``ms`` long from ``start_s`` (Unix seconds), by ``service``."""
    start = int(start_s * 1e9)
    return Span(
        trace_id=f"{trace:032x}",
        span_id=f"{n:016x}",
        parent_id=f"{parent:016x}" if parent is not None else None,
        service=service,
        name=name,
        start_ns=start,
        end_ns=start + int(ms * 1e6),
        kind=kind,
        error=error,
        attributes=attributes,
        resource={"service.name": service, **(resource or {})},
    )


def wait_until(
    predicate: Callable[[], T], timeout: float, interval: float = 0.1, what: str = ""
) -> T:
    """Poll until ``predicate`` returns something truthy; fail with ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what or predicate}")
        time.sleep(interval)


def _chroma_executable() -> str | None:
    beside = Path(sys.executable).with_name("chroma")
    return str(beside) if beside.exists() else shutil.which("chroma")


def answers_ok(url: str, timeout: float = 2.0) -> bool:
    """Whether a GET of ``url`` answers 200 now (a server's health or readiness check)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def stop(proc: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """Ask a server process to stop, then kill it if it has not within ``timeout``."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


@contextlib.contextmanager
def chroma_server(path: Path) -> Iterator[str]:
    """A real Chroma server (``chroma run``, from the chromadb package) on a free port; its URL.

    Skips the test when the executable is not installed; fails with the server's
    log when it exits or does not answer its heartbeat within 60 s.
    """
    import pytest

    exe = _chroma_executable()
    if exe is None:
        pytest.skip("the `chroma` executable is not installed (pip install chromadb provides it)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = path / "chroma.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [exe, "run", "--path", str(path / "data"), "--host", "127.0.0.1", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 60
            while not answers_ok(f"{url}/api/v2/heartbeat", timeout=1):
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-2000:]
                    pytest.fail(f"chroma run exited with {proc.returncode}:\n{tail}")
                if time.monotonic() > deadline:
                    pytest.fail("chroma run did not answer its heartbeat within 60 s")
                time.sleep(0.1)
            yield url
        finally:
            stop(proc)


class BlockedStore:
    """A real store whose consumer blocks on its first batch until ``release()``.

    What a full intake queue needs to be reached on purpose: the intake's
    consumer thread is held inside the store's listener (``entered`` says when).
    """

    def __init__(self) -> None:
        from sre_space.telemetry.store import TraceStore

        self.store = TraceStore()
        self.entered = threading.Event()
        self._gate = threading.Event()
        self.store.subscribe(self._block)

    def _block(self, spans: object) -> None:
        self.entered.set()
        self._gate.wait(10)

    def release(self) -> None:
        self._gate.set()


# The shop's call graph as the incident tracker's tests give it: (caller, callee).
SHOP = [
    ("gateway", "catalog"),
    ("gateway", "pricing"),
    ("gateway", "orders"),
    ("orders", "payments"),
    ("catalog", "db"),
]


def sig(service: str, kind: str = "error") -> Any:
    """A detector's signal at ``service``, for the incident tracker."""
    from sre_space.detect.window import Signal

    return Signal(service, "op", 100, 50, 0, 10.0, kind=kind, reason=f"{kind} on {service}")


class Shop:
    """Ten requests a second through rca_synth's shop, into a mind's store, with a fault."""

    def __init__(self, mind: Any, seed: int = 7) -> None:
        import random

        from rca_synth import Fault

        self.mind = mind
        self.fault = Fault()
        self._rnd = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="shop", daemon=True)

    def __enter__(self) -> Shop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        from rca_synth import trace

        sent = time.time()
        while not self._stop.wait(0.1):
            # Catch up on a starved thread: the shop's rate does not depend on the machine.
            now = time.time()
            while sent + 0.1 <= now:
                sent += 0.1
                self.mind.store.add(trace(self._rnd, sent * 1000, self.fault))
