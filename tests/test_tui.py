"""The cockpit driven by Textual's Pilot against a real incident log."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.paths import Paths
from sre_space.tui.app import HelpScreen, SreSpaceApp
from sre_space.tui.widgets import IncidentTable, SquadTerminal


async def _until(pilot: object, predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not met before the deadline")
        await pilot.pause(0.1)  # type: ignore[attr-defined]


def _terminal_text(app: SreSpaceApp) -> str:
    return "\n".join(line.text for line in app.query_one(SquadTerminal).lines)


def test_observer_shows_events_and_incidents_live(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path)
    log = IncidentLog(Paths(tmp_path).ensure().incidents_db)
    log.save(
        Incident(
            id="INC-1",
            status="mitigating",
            detected_at=time.time(),
            root_cause={
                "service": "checkout",
                "operation": "POST /checkout",
                "fault_class": "saturation",
            },
        )
    )
    log.emit("scout", "incident opened", incident_id="INC-1")

    async def scenario() -> None:
        app = SreSpaceApp(settings, readonly=True)
        async with app.run_test(size=(100, 30)) as pilot:
            await _until(pilot, lambda: "incident opened" in _terminal_text(app))
            table = app.query_one(IncidentTable)
            await _until(pilot, lambda: "INC-1" in table.rows)
            assert str(table.get_cell("INC-1", "status")) == "mitigating"

            log.emit("fixer", "patch_config checkout", incident_id="INC-1")
            inc = log.get("INC-1")
            assert inc is not None
            inc.status = "mitigated"
            log.save(inc)
            await _until(pilot, lambda: "patch_config checkout" in _terminal_text(app))
            await _until(pilot, lambda: str(table.get_cell("INC-1", "status")) == "mitigated")

            await pilot.press("question_mark")
            await _until(pilot, lambda: isinstance(app.screen, HelpScreen))
            assert "Follow" in str(app.screen.query_one("#help").render())
            await pilot.press("escape")
            await _until(pilot, lambda: not isinstance(app.screen, HelpScreen))

            await pilot.press("f")
            assert app.follow is False
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(scenario())


def test_core_does_not_import_textual() -> None:
    code = "import sys, sre_space.mind, sre_space.cli; assert 'textual' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
