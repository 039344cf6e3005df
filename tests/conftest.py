"""What every test shares: a private environment per test process, a home, the CLI, spans.

The tests are laid out by what they need: ``unit/`` needs no process and no
server (a test there that starts a process or binds a socket fails, below),
``integration/`` starts servers, processes or in-process minds on real
telemetry, ``e2e/`` runs the whole loop on the embedded lab. A test module that
imports another's builders sits in the same folder (pytest puts each test
file's folder on ``sys.path``).

The suite runs in parallel (``-n 2 --dist loadgroup``: the README's test
command): each pytest-xdist worker is its own process with its own temporary
directories, and every server a test starts listens on a free loopback port
(``helpers.free_port``, or port 0). The session fixture below keeps what a test
does not set itself from leaking between workers or into the user's state: no
sre-space setting from the calling shell, and the XDG state dir (sre-space's
default home) inside the worker's own temporary directory.

How the tests are shared out (``pytest_collection_modifyitems`` below):

- Tests marked ``lab`` start an embedded lab, a load generator and five
  services that burn CPU while what the tests assert is latency and error
  rates. They run in lanes (``xdist_group("lab-N")``), one per
  ``WORKERS_PER_LAB`` workers, each lane on one worker, one lab after another:
  ``-n 2`` runs one lab at a time on one worker beside the other tests
  (``-n 3``, two workers beside the lab, was faster here, 504 s against
  613 s, but starved a clean CI machine's lab of CPU: drills judged wrong).
  They are put first, so that the lanes, the longest part of the run, start at once.
- Tests that share a module-scoped fixture (a lab, a server, a recording)
  stay together on one worker (``xdist_group`` named after the module), so
  the fixture is built once.
- Every other test goes to whichever worker is free.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sre_space.config import Settings
from sre_space.telemetry.model import Span

import helpers

UNIT = Path(__file__).resolve().parent / "unit"
# What a unit test may not do: start a process or listen on a socket (audit events).
NOT_IN_UNIT = ("subprocess.Popen", "os.posix_spawn", "os.fork", "os.system", "socket.bind")
_unit_running = threading.Event()
_unit_did: list[str] = []


def _audit(event: str, _args: tuple[object, ...]) -> None:
    # Only the test's own thread: a thread an earlier test left behind is not this test's.
    if (
        event in NOT_IN_UNIT
        and _unit_running.is_set()
        and threading.current_thread() is threading.main_thread()
    ):
        _unit_did.append(event)


sys.addaudithook(_audit)

# Workers per lab lane: a lab (five services and a load generator) keeps about
# one core busy, so a 2-core machine runs one lab beside the other tests, which
# mostly wait on timers (quiet periods, verification windows, servers).
WORKERS_PER_LAB = 2
# What a lane is balanced on: a test that starts a lab of its own (a drill) costs
# about as much as this many tests on a lab their module shares.
OWN_LAB_COST = 6


def _module_scoped(item: pytest.Item) -> bool:
    """Whether the test uses a fixture built once per module (or class, or package)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return False
    return any(
        d.scope in ("module", "class", "package")
        for defs in info.name2fixturedefs.values()
        for d in defs
    )


@pytest.hookimpl(tryfirst=True)  # before xdist's own, which reads the groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Groups for ``--dist loadgroup``: the lab lanes first, module fixtures kept together."""
    lab = [item for item in items if item.get_closest_marker("lab") is not None]
    for item in items:
        if item.get_closest_marker("lab") is None and _module_scoped(item):
            item.add_marker(pytest.mark.xdist_group(item.module.__name__))
    # A module whose lab is built once (module-scoped) is one unit; a test that
    # starts its own lab (a drill) is a unit of its own, dearer.
    shared = {item.module.__name__ for item in lab if _module_scoped(item)}
    units: dict[str, list[pytest.Item]] = {}
    for item in lab:
        key = item.module.__name__ if item.module.__name__ in shared else item.nodeid
        units.setdefault(key, []).append(item)

    def cost(unit: list[pytest.Item]) -> int:
        return len(unit) if unit[0].module.__name__ in shared else OWN_LAB_COST * len(unit)

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set in each worker
    lanes = [0] * max(1, workers // WORKERS_PER_LAB)
    for unit in sorted(units.values(), key=cost, reverse=True):  # dearest first, to the
        lane = lanes.index(min(lanes))  # lane with the least so far
        lanes[lane] += cost(unit)
        for item in unit:
            item.add_marker(pytest.mark.xdist_group(f"lab-{lane}"))
    items.sort(key=lambda item: item.get_closest_marker("lab") is None)  # stable: lab first


@pytest.fixture(scope="session", autouse=True)
def _private_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """This test process's own state dir, and none of the calling shell's sre-space settings.

    A test that forgets ``SRE_SPACE_HOME`` writes under this worker's temporary
    directory, never under ``~/.local/state`` nor where another worker writes.
    """
    settings = {f"SRE_SPACE_{name.upper()}" for name in Settings.model_fields}
    saved = dict(os.environ)
    for name in settings & set(os.environ):
        del os.environ[name]
    os.environ["XDG_STATE_HOME"] = str(tmp_path_factory.mktemp("xdg-state"))
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _unit_tests_stay_in_process(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test under ``tests/unit`` fails if it started a process or bound a socket."""
    if not request.node.path.is_relative_to(UNIT):
        yield
        return
    _unit_did.clear()
    _unit_running.set()
    try:
        yield
    finally:
        _unit_running.clear()
    if _unit_did:
        pytest.fail(
            f"a unit test did {sorted(set(_unit_did))}: tests/unit is for tests that need "
            "no process and no server; this one belongs in tests/integration"
        )


@pytest.fixture(autouse=True)
def _no_lab_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop a lab a ``lab`` test left running in its temporary directory.

    A drill killed at its deadline (pytest-timeout, or its subprocess timeout)
    leaves its lab's supervisor behind, in its own session: it would burn CPU
    under every test after it.
    """
    if request.node.get_closest_marker("lab") is None:
        yield
        return
    tmp_path: Path = request.getfixturevalue("tmp_path")
    yield
    from sre_space.lab.launcher import stop_lab

    for state in tmp_path.glob("**/lab/lab.json"):
        stop_lab(Settings(home=state.parent.parent))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty sre-space home (``SRE_SPACE_HOME``) in the test's temporary directory."""
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def cli(home: Path) -> helpers.Cli:
    """``cli(*args, check=False, stdin=None, **env)``: the real ``sre-space`` on ``home``."""

    def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
        return helpers.sre(home, *args, **kwargs)  # type: ignore[arg-type]

    return run


@pytest.fixture
def make_span() -> Callable[..., Span]:
    """``helpers.span``: ``make_span(service, name, start_s, ms=20, error=False, trace=1, n=1)``."""
    return helpers.span
