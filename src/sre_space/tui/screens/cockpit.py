"""The cockpit: the panes, laid out, and the controllers that drive them.

Panes: the incidents (Enter selects one for the others), the selected
incident's exemplar traces as a waterfall with the selected span beside it,
the memory hits it was matched with, the squad terminal, and a status line.

This screen is the app's default screen and stays under every dialog, so
what the workers post back (``tui.messages``) reaches the panes even while a
dialog is open. Each message goes to the controller of the pane it concerns.
Every blocking call runs in a worker thread; the UI thread only renders.
"""

from __future__ import annotations

from textual import events, on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input

from sre_space.tui.context import CockpitContext
from sre_space.tui.controllers.actions import ActionsController
from sre_space.tui.controllers.filter import FilterController
from sre_space.tui.controllers.incidents import IncidentsController
from sre_space.tui.controllers.status import StatusController
from sre_space.tui.controllers.trace import TraceController
from sre_space.tui.messages import ActionDone, Extras, MindSettled, Polled, TraceLoaded
from sre_space.tui.widgets import (
    IncidentTable,
    MemoryHits,
    SpanDetails,
    SquadTerminal,
    StatusBar,
    Waterfall,
)

POLL_S = 0.5
EXTRAS_S = 2.0  # the lab's chaos and an observed mind's intake: slower, over the network


class CockpitScreen(Screen[None]):
    def __init__(self, ctx: CockpitContext) -> None:
        super().__init__()
        self.ctx = ctx
        self.quitting = False
        self._polling = False
        self.table = IncidentTable(id="incidents")
        self.memory = MemoryHits(id="memory", classes="side")
        self.waterfall = Waterfall(id="waterfall")
        self.details = SpanDetails(id="span", classes="side")
        self.terminal = SquadTerminal(id="squad")
        self.filter_box = Input(
            id="filter", placeholder="filter spans by name (⏎ keep, esc cancel)"
        )
        self.bar = StatusBar(id="status")
        self.trace = TraceController(self, ctx, self.waterfall, self.details)
        self.incidents = IncidentsController(
            self.table, self.memory, on_select=self._selected, on_change=self.trace.incident_changed
        )
        self.status = StatusController(self, ctx, self.bar, self.terminal, self.incidents)
        self.actions = ActionsController(
            self, ctx, self.incidents, self.terminal, after=self.status.read_extras
        )
        self.filter = FilterController(self.filter_box, self.incidents, self.trace)

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield self.table
            yield self.memory
        with Horizontal(id="middle"):
            yield self.waterfall
            yield self.details
        yield self.terminal
        yield self.filter_box
        yield self.bar
        yield Footer()

    def on_mount(self) -> None:
        self.table.focus()
        self.waterfall.clear("no incident selected: ⏎ on one to see its traces")
        self.trace.layout_side()
        if self.ctx.host.readonly:
            self.terminal.note("readonly: observing the incident log, taking no action")
        else:
            self.run_worker(self._host_mind, thread=True, group="mind", exit_on_error=False)
        self.set_interval(POLL_S, self.poll)
        self.set_interval(EXTRAS_S, self.status.read_extras)
        self.poll()
        self.status.read_extras()

    def on_resize(self, _: events.Resize) -> None:
        self.trace.layout_side()

    def _selected(self, incident_id: str, focus: bool) -> None:
        self.trace.show_incident(self.incidents.selected, incident_id)
        if focus:
            self.waterfall.focus()

    # --- workers and what they post back ------------------------------------------------

    def _host_mind(self) -> None:
        self.ctx.host.start()
        self.post_message(MindSettled())

    def on_mind_settled(self, _: MindSettled) -> None:
        host = self.ctx.host
        if host.mode == "hosting":
            self.terminal.note("hosting the mind: this cockpit detects, diagnoses and fixes")
        elif host.mode == "observing":
            self.terminal.note(f"observing: {host.reason}", style="yellow")
        self.status.render()
        self.trace.reload_if_missing()

    def poll(self) -> None:
        if self._polling or self.quitting:
            return  # one read at a time: a slow read must not pile up workers
        self._polling = True
        feed, host = self.ctx.feed, self.ctx.host
        self.run_worker(
            lambda: self.post_message(Polled(feed.read(host.mind))),
            thread=True,
            group="poll",
            exit_on_error=False,
        )

    def on_polled(self, message: Polled) -> None:
        self._polling = False
        snap = message.snapshot
        if snap.events or snap.skipped:
            self.terminal.add_events(snap.events, snap.skipped)
        self.incidents.update(snap.incidents)
        self.status.polled(snap)

    def on_extras(self, message: Extras) -> None:
        self.status.extras(message)

    def on_trace_loaded(self, message: TraceLoaded) -> None:
        self.trace.loaded(message)

    def on_action_done(self, message: ActionDone) -> None:
        self.actions.done(message)

    def on_waterfall_span_highlighted(self, message: Waterfall.SpanHighlighted) -> None:
        self.trace.span_highlighted(message)

    @on(DataTable.RowSelected, "#incidents")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.incidents.select(str(event.row_key.value), focus=True)

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.filter.changed(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, _: Input.Submitted) -> None:
        self.filter.close(keep=True)

    def on_key(self, event: events.Key) -> None:
        # Esc in the filter box: put the filter back as it was.
        if event.key == "escape" and isinstance(self.focused, Input):
            event.stop()
            self.filter.close(keep=False)
