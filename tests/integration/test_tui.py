"""The cockpit driven by Textual's Pilot against a real incident log in a temporary home."""

from __future__ import annotations

import asyncio
import io
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest
from rich.console import Console
from textual.widgets import Static

from sre_space import logs
from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.mind import MindLock
from sre_space.paths import Paths
from sre_space.tui.app import SreSpaceApp
from sre_space.tui.keys import KEYS, key_label
from sre_space.tui.screens import HelpScreen
from sre_space.tui.widgets import IncidentTable, SquadTerminal, StatusBar
from tui_helpers import until

SIZE = (100, 30)


def terminal_text(app: SreSpaceApp) -> str:
    return app.query_one(SquadTerminal).text


def status_text(app: SreSpaceApp) -> str:
    return _plain(app.query_one(StatusBar).content)


def cell(app: SreSpaceApp, incident_id: str, column: str) -> str:
    return str(app.query_one(IncidentTable).get_cell(incident_id, column))


@pytest.fixture
def home(tmp_path: Path) -> tuple[Settings, IncidentLog]:
    settings = Settings(home=tmp_path)
    log = IncidentLog(Paths(tmp_path).ensure().incidents_db)
    now = time.time()
    log.save(
        Incident(
            id="INC-20250101-0001",
            status="resolved",
            detected_at=now - 600,
            first_error_at=now - 603,
            mitigated_at=now - 580,
            root_cause={
                "service": "payments",
                "operation": "POST /charge",
                "fault_class": "db-timeout",
                "confidence": 0.9,
            },
            remediation={
                "action": "patch_config",
                "params": {"db_timeout_ms": 2000},
                "source": "memory",
                "outcome": "verified",
            },
        )
    )
    log.save(
        Incident(
            id="INC-20250101-0002",
            status="mitigating",
            detected_at=now - 10,
            root_cause={"service": "checkout", "operation": "POST /checkout"},
        )
    )
    log.emit("scout", "error rate 42% on checkout POST /checkout", incident_id="INC-20250101-0002")
    log.emit("brain", "root cause: checkout saturation", incident_id="INC-20250101-0002")
    log.emit("mind", "squad error: boom", kind="error")
    return settings, log


def test_readonly_cockpit_follows_the_log_live(home: tuple[Settings, IncidentLog]) -> None:
    settings, log = home

    async def scenario() -> None:
        app = SreSpaceApp(settings, readonly=True)
        async with app.run_test(size=SIZE) as pilot:
            # What was in the log before the cockpit opened.
            await until(pilot, lambda: "squad error: boom" in terminal_text(app))
            text = terminal_text(app)
            assert "scout" in text and "error rate 42% on checkout" in text
            assert "root cause: checkout saturation" in text
            table = app.query_one(IncidentTable)
            await until(pilot, lambda: table.row_count == 2)
            assert cell(app, "INC-20250101-0002", "status") == "mitigating"
            assert cell(app, "INC-20250101-0001", "status") == "resolved"
            assert cell(app, "INC-20250101-0001", "cause") == "payments POST /charge"
            assert cell(app, "INC-20250101-0001", "fix") == "patch_config db_timeout_ms=2000"
            assert cell(app, "INC-20250101-0001", "ttd") == "3.0s"
            assert table.get_row_index("INC-20250101-0002") == 0  # newest first
            await until(pilot, lambda: "readonly" in status_text(app))
            assert "open 1" in status_text(app)
            assert app.host.mind is None

            # Move to the older incident; the cursor must stay on it through updates.
            await pilot.press("j")
            assert table.selected_id == "INC-20250101-0001"

            # Written after the start: a new event, a status change, a new incident.
            log.emit("fixer", "patch_config checkout pool_size=40", incident_id="INC-20250101-0002")
            inc = log.get("INC-20250101-0002")
            assert inc is not None
            inc.status = "mitigated"
            inc.mitigated_at = time.time()
            inc.remediation = {"action": "scale", "outcome": "verified"}
            log.save(inc)
            log.save(Incident(id="INC-20250101-0003", status="open", detected_at=time.time()))
            await until(pilot, lambda: "pool_size=40" in terminal_text(app))
            await until(pilot, lambda: table.row_count == 3)
            await until(pilot, lambda: cell(app, "INC-20250101-0002", "status") == "mitigated")
            assert cell(app, "INC-20250101-0002", "outcome") == "verified"
            assert table.get_row_index("INC-20250101-0003") == 0
            assert table.selected_id == "INC-20250101-0001"  # not lost to the refresh
            await pilot.press("k")
            assert table.selected_id == "INC-20250101-0002"

            # Every event line appears exactly once (polls never overlap).
            assert terminal_text(app).count("pool_size=40") == 1
            assert terminal_text(app).count("squad error: boom") == 1

            # Help lists the one key table; escape closes it.
            await pilot.press("question_mark")
            await until(pilot, lambda: isinstance(app.screen, HelpScreen))
            help_text = _plain(app.screen.query_one("#help", Static).content)
            for binding in KEYS:
                assert binding.description in help_text
                assert key_label(binding) in help_text
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, HelpScreen))

            await pilot.press("f")
            assert app.follow is False
            assert "paused" in status_text(app)
            await pilot.press("f")
            assert app.follow is True

            await pilot.press("q")
            await until(pilot, lambda: not app.is_running)
        assert app.return_code == 0
        assert not Paths(settings.home).mind_lock.exists()  # readonly never tried to host

    asyncio.run(scenario())


def _plain(renderable: Any) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(renderable)
    return cast(io.StringIO, console.file).getvalue()


def test_squad_terminal_stays_put_when_scrolled_up(home: tuple[Settings, IncidentLog]) -> None:
    settings, log = home
    for n in range(80):
        log.emit("scout", f"backlog line {n}")

    async def scenario() -> None:
        app = SreSpaceApp(settings, readonly=True)
        async with app.run_test(size=SIZE) as pilot:
            terminal = app.query_one(SquadTerminal)
            await until(pilot, lambda: "backlog line 79" in terminal.text)
            await until(
                pilot, lambda: terminal.max_scroll_y > 0 and terminal.is_vertical_scroll_end
            )

            # Following: a new line scrolls the view to it.
            log.emit("fixer", "first new line")
            await until(pilot, lambda: "first new line" in terminal.text)
            await until(pilot, lambda: terminal.is_vertical_scroll_end)

            # The user scrolls up to read: new lines must not pull the view down.
            terminal.scroll_home(animate=False)
            await until(pilot, lambda: terminal.scroll_y == 0)
            log.emit("fixer", "second new line")
            await until(pilot, lambda: "second new line" in terminal.text)
            await pilot.pause(0.2)
            assert terminal.scroll_y == 0
            assert "scrolled up" in status_text(app)

            # f off then on: back to the tail, following again.
            await pilot.press("f", "f")
            await until(pilot, lambda: terminal.is_vertical_scroll_end)
            log.emit("fixer", "third new line")
            await until(pilot, lambda: "third new line" in terminal.text)
            await until(pilot, lambda: terminal.is_vertical_scroll_end)
            await pilot.press("q")

    asyncio.run(scenario())


class FakeMind:
    """Stands in for sre_space.mind.Mind: slow to start and stop, like the real one."""

    instances: list[FakeMind] = []  # noqa: RUF012 - a test registry

    def __init__(
        self,
        settings: Settings,
        start_s: float = 0.0,
        stop_s: float = 0.3,
        gate: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.start_s, self.stop_s = start_s, stop_s
        self.gate = gate  # start() returns only once it is set
        self.started = self.stopped = False
        self.stop_thread = ""
        FakeMind.instances.append(self)

    def start(self) -> FakeMind:
        if self.gate is not None:
            assert self.gate.wait(60)
        time.sleep(self.start_s)
        self.started = True
        return self

    def stop(self) -> None:
        self.stop_thread = threading.current_thread().name
        time.sleep(self.stop_s)
        self.stopped = True

    def status(self) -> dict[str, Any]:
        return {"policy": "dry-run", "store": {"spans_per_s": 12.0}}


def test_hosting_shows_intake_and_quitting_stops_the_mind_off_the_ui_thread(
    home: tuple[Settings, IncidentLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = home
    FakeMind.instances.clear()
    monkeypatch.setattr("sre_space.mind.Mind", FakeMind)

    async def scenario() -> None:
        app = SreSpaceApp(settings, readonly=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "hosting" in status_text(app))
            await until(pilot, lambda: "12 spans/s" in status_text(app))
            assert "policy dry-run" in status_text(app)
            assert "hosting the mind" in terminal_text(app)
            ui_thread = threading.current_thread().name
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running)
        (mind,) = FakeMind.instances
        assert mind.stopped
        assert mind.stop_thread not in ("", ui_thread)

    asyncio.run(scenario())


def test_quitting_while_the_mind_starts_still_stops_it(
    home: tuple[Settings, IncidentLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = home
    FakeMind.instances.clear()
    started = threading.Event()  # the mind finishes starting only after the app is gone

    def slow(s: Settings) -> FakeMind:
        return FakeMind(s, stop_s=0.0, gate=started)

    monkeypatch.setattr("sre_space.mind.Mind", slow)

    async def scenario() -> None:
        app = SreSpaceApp(settings, readonly=False)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: len(FakeMind.instances) == 1)
            await pilot.press("q")
            await until(pilot, lambda: not app.is_running)
            assert not FakeMind.instances[0].started  # the app left without waiting for it
        # The starting thread finishes after the app and stops what it started.
        started.set()
        assert app.host.join(60)
        deadline = time.monotonic() + 60
        while not FakeMind.instances[0].stopped and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert FakeMind.instances[0].stopped
        assert app.host.mind is None

    asyncio.run(scenario())


def test_observes_when_another_mind_acts_on_the_home(home: tuple[Settings, IncidentLog]) -> None:
    settings, log = home
    other = MindLock(Paths(settings.home))
    other.acquire()  # another process's mind, as far as the flock can tell
    try:

        async def scenario() -> None:
            app = SreSpaceApp(settings, readonly=False)
            async with app.run_test(size=SIZE) as pilot:
                await until(pilot, lambda: "observing" in status_text(app), timeout=30)
                # The status bar reads the host's mode on its own timer; the note
                # comes with the message that the mind settled, a moment later.
                await until(pilot, lambda: "another mind is already acting" in terminal_text(app))
                log.emit("jules", "postmortem written")
                await until(pilot, lambda: "postmortem written" in terminal_text(app))
                assert app.host.mind is None
                await pilot.press("q")

        asyncio.run(scenario())
    finally:
        other.release()


def test_fits_80x24(home: tuple[Settings, IncidentLog]) -> None:
    settings, _ = home

    async def scenario() -> None:
        app = SreSpaceApp(settings, readonly=True)
        async with app.run_test(size=(80, 24)) as pilot:
            table, terminal = app.query_one(IncidentTable), app.query_one(SquadTerminal)
            await until(pilot, lambda: table.row_count == 2 and "boom" in terminal.text)
            status = app.query_one(StatusBar)
            assert table.region.height >= 6 and terminal.region.height >= 6
            assert status.region.y + 1 < 24 and status.region.width == 80
            # Nothing overlaps: table above terminal above status line.
            assert table.region.bottom <= terminal.region.y
            assert terminal.region.bottom <= status.region.y
            await pilot.press("q")

    asyncio.run(scenario())


def test_logs_go_to_the_file_not_the_screen(tmp_path: Path) -> None:
    root = logging.getLogger()
    before = root.handlers[:]
    with logs.to_file(Settings(home=tmp_path), "watch", alone=True) as path:
        assert all(isinstance(h, logging.FileHandler) for h in root.handlers)
        logging.getLogger("sre_space.test").warning("into the file")
        logging.getLogger("sre_space.test").warning("trace %s", "\x1b]0;owned\x07\u202e")
    text = path.read_text()
    assert "into the file" in text
    assert "trace ?]0;owned?<U+202E>" in text and "\x1b" not in text  # a tail -f is safe
    assert root.handlers == before


def test_core_does_not_import_textual() -> None:
    code = "import sys, sre_space.mind, sre_space.cli; assert 'textual' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
