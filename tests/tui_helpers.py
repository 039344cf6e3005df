"""What the cockpit's Pilot tests share: a home with incidents, running a scenario, waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from textual.pilot import Pilot

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.paths import Paths
from sre_space.tui.app import SreSpaceApp


async def until(pilot: Pilot[Any], predicate: Callable[[], object], timeout: float = 60.0) -> None:
    """Let the app run until ``predicate`` holds; fail at the deadline (no fixed sleeps).

    The deadline is generous: a loaded 2-core machine can take seconds per frame.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"not met within {timeout:.0f}s: {predicate}")
        await pilot.pause(0.02)


def run(
    app: SreSpaceApp,
    scenario: Callable[[Pilot[Any]], Coroutine[Any, Any, None]],
    size: tuple[int, int],
) -> None:
    """Drive ``app`` headless at ``size`` through ``scenario``."""

    async def main() -> None:
        async with app.run_test(size=size) as pilot:
            await scenario(pilot)

    asyncio.run(main())


def home_with(tmp_path: Path, *incidents: Incident) -> tuple[Settings, IncidentLog]:
    """A home under ``tmp_path`` (policy approve) whose incident log holds ``incidents``."""
    settings = Settings(home=tmp_path, policy="approve")
    log = IncidentLog(Paths(tmp_path).ensure().incidents_db)
    for incident in incidents:
        log.save(incident)
    return settings, log
