"""The cockpit's status line says which mind acts when minds share a state_url."""

from __future__ import annotations

import asyncio
from typing import Any

from textual.app import App, ComposeResult

from sre_space.tui.widgets import StatusBar


class Bar(App[None]):
    def compose(self) -> ComposeResult:
        yield StatusBar()


def shown(mind: dict[str, Any]) -> str:
    async def scenario() -> str:
        app = Bar()
        async with app.run_test(size=(160, 3)):
            bar = app.query_one(StatusBar)
            bar.show(mode="hosting", lab_up=True, mind=mind, open_incidents=0, follow="follow")
            return bar.content.plain if hasattr(bar.content, "plain") else str(bar.content)

    return asyncio.run(scenario())


def test_a_standby_says_who_holds_the_lease_and_a_sole_mind_says_nothing() -> None:
    standby = {"leadership": {"role": "standby", "leader": {"holder": "vm:4242:abc123"}}}
    assert "standby (lease: vm:4242:abc123)" in shown(standby)
    assert "│ leader │" in shown({"leadership": {"role": "leader", "leader": {"holder": "me"}}})
    line = shown({"leadership": {"role": "sole"}})
    assert "leader" not in line and "standby" not in line
