"""The status line: who acts, the lab and its faults, intake, open incidents, follow.

The lab's faults and an observed mind's status come over the network, so a
worker reads them (every EXTRAS_S) and posts ``Extras``; the log's figures
come with each poll.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen

from sre_space.paths import Paths
from sre_space.tui.context import CockpitContext
from sre_space.tui.controllers.incidents import IncidentsController
from sre_space.tui.feed import Snapshot
from sre_space.tui.messages import Extras
from sre_space.tui.widgets import SquadTerminal, StatusBar


class StatusController:
    def __init__(
        self,
        screen: Screen[None],
        ctx: CockpitContext,
        bar: StatusBar,
        terminal: SquadTerminal,
        incidents: IncidentsController,
    ) -> None:
        self.screen = screen
        self.ctx = ctx
        self.bar = bar
        self.terminal = terminal
        self.incidents = incidents
        self.last = Snapshot()
        self.chaos: list[str] | None = None
        self.observed: dict[str, Any] | None = None

    def read_extras(self) -> None:
        """Ask the lab and an observed mind, in a worker (one at a time)."""

        def read() -> None:
            self.screen.post_message(Extras(self._chaos_now(), self._observed_mind()))

        self.screen.run_worker(
            read, thread=True, group="extras", exclusive=True, exit_on_error=False
        )

    def _chaos_now(self) -> list[str] | None:
        if self.last.lab_up is False:
            return None
        try:
            from sre_space.lab.control import LabClient

            faults = LabClient.from_settings(self.ctx.settings).chaos_status()
            return [str(f.get("fault", "?")) for f in faults]
        except Exception:  # no lab, or it is going down: the status line says "lab down"
            return None

    def _observed_mind(self) -> dict[str, Any] | None:
        if self.ctx.host.mode == "hosting":
            return None
        try:
            from sre_space.localapi import get, mind_port

            paths = Paths(self.ctx.settings.home)
            port = mind_port(paths)
            if port is None:
                return None
            doc = get(port, paths.mind_token, "/status")
            return doc if isinstance(doc, dict) else None
        except Exception:
            return None

    def extras(self, message: Extras) -> None:
        self.chaos, self.observed = message.chaos, message.mind
        self.render()

    def polled(self, snapshot: Snapshot) -> None:
        self.last = snapshot
        self.render()

    def render(self) -> None:
        follow = "follow"
        if not self.terminal.follow:
            follow = "paused"
        elif self.terminal.scrolled_up:
            follow = "scrolled up"
        mode = self.ctx.host.mode
        self.bar.show(
            mode=mode,
            lab_up=self.last.lab_up,
            mind=self.last.mind if mode == "hosting" else self.observed,
            open_incidents=self.last.open_incidents,
            follow=follow,
            error=self.last.error,
            chaos=self.chaos,
            awaiting=self.incidents.awaiting_ids(),
            # Our own policy only while it is ours to apply (an observer shows the mind's).
            policy=self.ctx.settings.policy if mode in ("starting", "hosting") else None,
        )
