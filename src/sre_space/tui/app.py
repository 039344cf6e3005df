"""`sre-space watch`: the squad terminal and incidents, live.

The app hosts the mind unless another mind already acts on this home (or
--readonly), in which case it observes the same incident log. All I/O runs in
thread workers; the UI thread only renders.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Footer, Static

from sre_space.config import Settings
from sre_space.errors import Unavailable
from sre_space.incidents import Event, Incident, IncidentLog
from sre_space.paths import Paths
from sre_space.tui.keys import KEYS
from sre_space.tui.widgets import IncidentTable, SquadTerminal, StatusLine


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        ("escape", "dismiss", "Close"),
        ("question_mark", "dismiss", "Close"),
    ]

    def compose(self) -> ComposeResult:
        rows = [
            f"  {(b.key_display or b.key):<8} {b.description}"
            for b in KEYS
            if isinstance(b, Binding)
        ]
        yield Static("Keys\n\n" + "\n".join(rows), id="help")


class Snapshot(Message):
    def __init__(
        self, events: list[Event], incidents: list[Incident], status: dict[str, Any]
    ) -> None:
        super().__init__()
        self.events, self.incidents, self.status = events, incidents, status


class SreSpaceApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "sre-space"
    BINDINGS = KEYS

    def __init__(self, settings: Settings, readonly: bool = False) -> None:
        super().__init__()
        self.settings = settings
        self.readonly = readonly
        self.paths = Paths(settings.home).ensure()
        self.mind: Any = None
        self.mode = "starting" if not readonly else "readonly"
        self.follow = True
        self._after = 0
        self._incidents: IncidentLog | None = None

    def compose(self) -> ComposeResult:
        yield IncidentTable(id="incidents")
        yield SquadTerminal(id="squad")
        yield StatusLine(id="status")
        yield Footer()

    def on_mount(self) -> None:
        if not self.readonly:
            self.host_mind()
        else:
            self._incidents = IncidentLog(self.paths.incidents_db)
        self.set_interval(0.5, self.poll)
        self.poll()

    @work(thread=True, exclusive=True, group="mind")
    def host_mind(self) -> None:
        from sre_space.mind import Mind

        try:
            self.mind = Mind(self.settings).start()
            self.mode = "hosting"
        except Unavailable as exc:
            logging.getLogger(__name__).info("observing: %s", exc)
            self.mode = "observing"

    @work(thread=True, exclusive=True, group="poll")
    def poll(self) -> None:
        if self._incidents is None:
            if self.mode == "starting":
                return
            self._incidents = self.mind.log if self.mind else IncidentLog(self.paths.incidents_db)
        events = self._incidents.events(self._after)
        if events:
            self._after = events[-1].seq
        incidents = self._incidents.list(50)
        status: dict[str, Any] = {
            "mode": self.mode,
            "open": sum(i.status in ("open", "diagnosing", "mitigating") for i in incidents),
            "follow": self.follow,
            "lab": _lab_state(self.settings),
        }
        if self.mind is not None:
            mind = self.mind.status()
            status["spans_per_s"] = mind["store"]["spans_per_s"]
            status["policy"] = mind["policy"]
        self.post_message(Snapshot(events, incidents, status))

    def on_snapshot(self, message: Snapshot) -> None:
        terminal = self.query_one(SquadTerminal)
        terminal.auto_scroll = self.follow
        for event in message.events:
            terminal.add(event)
        self.query_one(IncidentTable).show(message.incidents)
        self.query_one(StatusLine).show(message.status)

    # --- actions ------------------------------------------------------------------

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        terminal = self.query_one(SquadTerminal)
        terminal.auto_scroll = self.follow
        if self.follow:
            terminal.scroll_end(animate=False)

    def action_cursor_down(self) -> None:
        self.query_one(IncidentTable).action_cursor_down()

    def action_cursor_up(self) -> None:
        self.query_one(IncidentTable).action_cursor_up()

    def action_go_back(self) -> None:
        if len(self.screen_stack) > 1:
            self.pop_screen()

    async def action_quit(self) -> None:
        if self.mind is not None:
            self.mind.stop()
        self.exit()


def _lab_state(settings: Settings) -> str:
    try:
        from sre_space.lab.launcher import read_lab_state

        return "up" if read_lab_state(settings) else "down"
    except Exception:  # the status line must never take the app down
        return "?"


def run_app(settings: Settings, readonly: bool = False) -> None:
    log_file: Path = Paths(settings.home).ensure().logs_dir / "watch.log"
    # Nothing may print over the screen: every log line goes to the file.
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    logging.basicConfig(filename=log_file, level=logging.INFO)
    SreSpaceApp(settings, readonly=readonly).run()
