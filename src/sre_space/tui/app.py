"""`sre-space watch`: the incident cockpit's app shell.

The app holds what the whole cockpit shares (``CockpitContext``: settings,
the mind it hosts or observes, its sources), shows the cockpit screen
(``screens/cockpit.py``: panes and their controllers) and answers the one key
table (``keys.py``) by routing each action to the pane that has focus. It
hosts the mind unless another mind already acts on this home (or it runs
``readonly``); then it observes the same incident log.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, ClassVar

from textual.app import App
from textual.binding import BindingType
from textual.screen import Screen

from sre_space import logs
from sre_space.config import Settings
from sre_space.paths import Paths
from sre_space.tui.commands import CockpitCommands
from sre_space.tui.context import CockpitContext
from sre_space.tui.feed import Feed
from sre_space.tui.host import MindHost
from sre_space.tui.keys import KEYS
from sre_space.tui.screens import HelpScreen
from sre_space.tui.screens.cockpit import CockpitScreen
from sre_space.tui.traces import MindTraces, SpanSource
from sre_space.tui.widgets import IncidentTable, SpanDetails, SquadTerminal, Waterfall

STOP_GRACE_S = 3.0  # how long the app waits for a hosted mind to stop before leaving
WATERFALL_ACTIONS = frozenset(
    {"toggle_fold", "fold", "unfold", "fold_all", "unfold_all", "sort", "next_failure"}
)
# cursor action -> (on the waterfall, on a scrolling pane, on the incidents)
MOVES: dict[str, tuple[Callable[[Waterfall], None], str, str]] = {
    "cursor_down": (lambda wf: wf.move(1), "scroll_down", "action_cursor_down"),
    "cursor_up": (lambda wf: wf.move(-1), "scroll_up", "action_cursor_up"),
    "page_down": (lambda wf: wf.page(1), "scroll_page_down", "action_page_down"),
    "page_up": (lambda wf: wf.page(-1), "scroll_page_up", "action_page_up"),
    "first": (Waterfall.home, "scroll_home", "action_scroll_top"),
    "last": (Waterfall.end, "scroll_end", "action_scroll_bottom"),
}


class SreSpaceApp(App[None]):
    CSS_PATH = "app.tcss"
    TITLE = "sre-space"
    # The palette offers the key table's actions and nothing else (commands.py).
    COMMANDS: ClassVar[set[Any]] = {CockpitCommands}
    COMMAND_PALETTE_BINDING = "ctrl+p"
    COMMAND_PALETTE_DISPLAY = "^p"
    BINDINGS: ClassVar[list[BindingType]] = [*KEYS]

    def __init__(
        self, settings: Settings, readonly: bool = False, span_source: SpanSource | None = None
    ) -> None:
        super().__init__()
        self.settings = settings
        self.readonly = readonly
        self.host = MindHost(settings, readonly)
        self.feed = Feed(settings)
        source: SpanSource = span_source or MindTraces(settings, lambda: self.host.mind)
        self.ctx = CockpitContext(settings, readonly, self.host, self.feed, source)
        self._cockpit: CockpitScreen | None = None
        self._quitting = False

    def get_default_screen(self) -> Screen[Any]:
        # Built here, not in __init__: its panes need the running app.
        self._cockpit = CockpitScreen(self.ctx)
        return self._cockpit

    @property
    def cockpit(self) -> CockpitScreen:
        """The cockpit screen (under every dialog) with its panes and controllers."""
        if self._cockpit is None:
            raise RuntimeError("the cockpit is built when the app runs")
        return self._cockpit

    @property
    def selected_id(self) -> str | None:
        """The incident the panes show (chosen with Enter)."""
        return self.cockpit.incidents.selected_id

    @property
    def follow(self) -> bool:
        return self.cockpit.terminal.follow

    # --- routing keys to the focused pane ----------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WATERFALL_ACTIONS:
            return isinstance(self.focused, Waterfall)
        return True

    def _move(self, action: str) -> None:
        """A cursor key: the waterfall's cursor, a scrolling pane, else the incidents."""
        on_waterfall, scroll, table_action = MOVES[action]
        pane = self.focused
        if isinstance(pane, Waterfall):
            on_waterfall(pane)
        elif isinstance(pane, SquadTerminal | SpanDetails):
            getattr(pane, scroll)(animate=False)
        else:
            getattr(self.cockpit.table, table_action)()

    def action_cursor_down(self) -> None:
        self._move("cursor_down")

    def action_cursor_up(self) -> None:
        self._move("cursor_up")

    def action_page_down(self) -> None:
        self._move("page_down")

    def action_page_up(self) -> None:
        self._move("page_up")

    def action_first(self) -> None:
        self._move("first")

    def action_last(self) -> None:
        self._move("last")

    def action_enter(self) -> None:
        focused = self.focused
        if isinstance(focused, Waterfall) and focused.selected_row is not None:
            self.cockpit.trace.open_details()
        elif isinstance(focused, IncidentTable | None):
            self.cockpit.incidents.select_under_cursor()

    async def action_back(self) -> None:
        focused = self.focused
        cockpit = self.cockpit
        if isinstance(focused, SpanDetails):
            cockpit.trace.close_details()
        elif isinstance(focused, Waterfall):
            if focused.view.filter:
                cockpit.trace.set_filter("")
            else:
                cockpit.table.focus()
        elif isinstance(focused, SquadTerminal):
            cockpit.table.focus()
        elif isinstance(focused, IncidentTable) and focused.filter_text:
            cockpit.filter.clear_incidents()

    # --- the waterfall -----------------------------------------------------------------

    def action_toggle_fold(self) -> None:
        self.cockpit.waterfall.toggle_fold()

    def action_fold(self) -> None:
        self.cockpit.waterfall.fold()

    def action_unfold(self) -> None:
        self.cockpit.waterfall.unfold()

    def action_fold_all(self) -> None:
        self.cockpit.waterfall.fold_all()

    def action_unfold_all(self) -> None:
        self.cockpit.waterfall.unfold_all()

    def action_sort(self) -> None:
        sort = self.cockpit.waterfall.cycle_sort()
        self.cockpit.actions.tell(f"spans sorted by {sort}", timeout=2)

    def action_next_failure(self) -> None:
        self.cockpit.waterfall.next_failure()

    def action_next_trace(self) -> None:
        self.cockpit.trace.next_trace()

    def action_toggle_side(self) -> None:
        self.cockpit.trace.toggle_side()

    def action_filter(self) -> None:
        """Filter the incidents (from their pane) or the spans by name (anywhere else)."""
        on_table = isinstance(self.focused, IncidentTable)
        self.cockpit.filter.open("incidents" if on_table else "spans")

    # --- help and follow ------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_follow(self) -> None:
        terminal = self.cockpit.terminal
        terminal.set_follow(not terminal.follow)
        self.cockpit.status.render()

    # --- acting: approve, deny, ack, resolve, chaos, revert (all but ack ask first) -----

    def action_approve(self) -> None:
        self.cockpit.actions.decide("approve")

    def action_deny(self) -> None:
        self.cockpit.actions.decide("deny")

    def action_ack(self) -> None:
        self.cockpit.actions.answer("ack")

    def action_resolve(self) -> None:
        self.cockpit.actions.answer("resolve")

    def action_chaos(self) -> None:
        self.cockpit.actions.chaos()

    def action_revert(self) -> None:
        self.cockpit.actions.revert()

    # --- quitting -----------------------------------------------------------------

    async def action_quit(self) -> None:
        if self._quitting:  # a second q: leave now, the stop finishes after the screen is gone
            self.exit()
            return
        self._quitting = True
        self.cockpit.quitting = True
        if not self.host.stop():
            self.exit()
            return
        self.cockpit.terminal.note("stopping the mind…", style="yellow")
        self.cockpit.status.render()
        deadline = time.monotonic() + STOP_GRACE_S

        def leave_when_stopped() -> None:
            if self.host.stopped or time.monotonic() > deadline:
                self.exit()

        self.set_interval(0.1, leave_when_stopped)


def run_app(settings: Settings, readonly: bool = False) -> None:
    Paths(settings.home).ensure()
    with logs.to_file(settings, "watch", alone=True):
        app = SreSpaceApp(settings, readonly=readonly)
        try:
            app.run()
        finally:
            # However the app ended, a hosted mind is stopped (the screen is already restored).
            app.host.stop()
            if not app.host.join(0.2):
                sys.stderr.write("sre-space: stopping the mind…\n")
                app.host.join()
            app.feed.close()
