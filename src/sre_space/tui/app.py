"""`sre-space watch`: the incident cockpit.

Panes: the incidents (Enter selects one for the others), the selected
incident's exemplar traces as a waterfall with the selected span beside it,
the memory hits it was matched with, the squad terminal, and a status line.

The app hosts the mind unless another mind already acts on this home (or it
runs ``readonly``); then it observes the same incident log. Every blocking
call (starting or stopping the mind, SQLite, the lab, the mind's API, laying
out a large trace) runs in a worker thread; the UI thread only renders what
the workers post back. Every key is in ``keys.py``.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.timer import Timer
from textual.widgets import DataTable, Footer, Input

from sre_space.config import Settings
from sre_space.incidents import ACTIVE, AWAITING_APPROVAL, Incident, IncidentLog
from sre_space.paths import Paths
from sre_space.safe_text import NAME_LIMIT, TEXT_LIMIT, printable
from sre_space.tui.commands import CockpitCommands
from sre_space.tui.feed import Feed, Snapshot
from sre_space.tui.host import MindHost
from sre_space.tui.keys import ACTING, KEYS
from sre_space.tui.traces import MindTraces, SpanSource, exemplar_trace_ids
from sre_space.tui.waterfall_model import WaterfallView
from sre_space.tui.widgets import (
    ConfirmScreen,
    FaultScreen,
    HelpScreen,
    IncidentTable,
    MemoryHits,
    SpanDetails,
    SquadTerminal,
    StatusBar,
    Waterfall,
)

log = logging.getLogger(__name__)

POLL_S = 0.5
EXTRAS_S = 2.0  # the lab's chaos and an observed mind's intake: slower, over the network
STOP_GRACE_S = 3.0  # how long the app waits for a hosted mind to stop before leaving
DETAILS_DELAY_S = 0.05  # the side panel follows the cursor once it rests this long
WIDE = 120  # from this many columns the side panels show without asking
WATERFALL_ACTIONS = frozenset(
    {"toggle_fold", "fold", "unfold", "fold_all", "unfold_all", "sort", "next_failure"}
)


class Polled(Message):
    """A worker read the log: here is what changed."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot


class MindSettled(Message):
    """The mind is hosted, or the app observes (and why)."""


class Extras(Message):
    """The lab's active faults and an observed mind's status (a newer one replaces an older)."""

    def __init__(self, chaos: list[str] | None, mind: dict[str, Any] | None) -> None:
        super().__init__()
        self.chaos, self.mind = chaos, mind

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Extras)


class TraceLoaded(Message):
    def __init__(
        self, incident_id: str, trace_id: str, view: WaterfallView | None, error: str = ""
    ) -> None:
        super().__init__()
        self.incident_id, self.trace_id, self.view, self.error = incident_id, trace_id, view, error


class ActionDone(Message):
    """An action that went outside the cockpit (approve, chaos...) finished."""

    def __init__(self, text: str, ok: bool) -> None:
        super().__init__()
        self.text, self.ok = text, ok


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
        self.span_source: SpanSource = span_source or MindTraces(settings, lambda: self.host.mind)
        self._polling = False
        self._quitting = False
        self._last = Snapshot()
        self._incidents: dict[str, Incident] = {}
        self.selected_id: str | None = None
        self._trace_ids: list[str] = []
        self._trace_index = 0
        self._wanted_trace = ""
        self._side: bool | None = None  # None: by the terminal's width
        self._side_for_details = False  # shown only to read a span (80 columns)
        self._chaos: list[str] | None = None
        self._observed: dict[str, Any] | None = None
        self._filter_before = ""
        self._filter_target = "spans"
        self._pending_span: Waterfall.SpanHighlighted | None = None
        self._details_timer: Timer | None = None

    # --- layout ---------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Horizontal(id="top"):
            yield IncidentTable(id="incidents")
            yield MemoryHits(id="memory", classes="side")
        with Horizontal(id="middle"):
            yield Waterfall(id="waterfall")
            yield SpanDetails(id="span", classes="side")
        yield SquadTerminal(id="squad")
        yield Input(id="filter", placeholder="filter spans by name (⏎ keep, esc cancel)")
        yield StatusBar(id="status")
        yield Footer()

    @property
    def terminal(self) -> SquadTerminal:
        return self.query_one(SquadTerminal)

    @property
    def table(self) -> IncidentTable:
        return self.query_one(IncidentTable)

    @property
    def waterfall(self) -> Waterfall:
        return self.query_one(Waterfall)

    @property
    def follow(self) -> bool:
        return self.terminal.follow

    @property
    def selected(self) -> Incident | None:
        """The incident the panes show (chosen with Enter)."""
        return self._incidents.get(self.selected_id) if self.selected_id else None

    def on_mount(self) -> None:
        self.table.focus()
        self.waterfall.clear("no incident selected: ⏎ on one to see its traces")
        self._layout_side()
        if self.host.readonly:
            self.terminal.note("readonly: observing the incident log, taking no action")
        else:
            self._host_mind()
        self.set_interval(POLL_S, self._poll)
        self.set_interval(EXTRAS_S, self._read_extras)
        self._poll()
        self._read_extras()

    def on_resize(self) -> None:
        if not self._gone():
            self._layout_side()

    def _layout_side(self) -> None:
        show = self._side if self._side is not None else self.size.width >= WIDE
        show = show or self._side_for_details
        # The cockpit's own screen, even while a dialog is on top of it.
        self.waterfall.screen.set_class(show, "-side")

    # --- workers: nothing here runs on the UI thread ----------------------------

    @work(thread=True, group="mind", exit_on_error=False)
    def _host_mind(self) -> None:
        self.host.start()
        self.post_message(MindSettled())

    def _gone(self) -> bool:
        """The panes are gone (the app is shutting down): late worker messages are dropped."""
        try:
            return not self.query(SquadTerminal)
        except Exception:
            return True

    def on_mind_settled(self, _: MindSettled) -> None:
        if self._gone():
            return
        if self.host.mode == "hosting":
            self.terminal.note("hosting the mind: this cockpit detects, diagnoses and fixes")
        elif self.host.mode == "observing":
            self.terminal.note(f"observing: {self.host.reason}", style="yellow")
        self._render_status()
        if self.selected_id and not self.waterfall.trace_id:
            self._load_trace()  # the store may hold it now

    def _poll(self) -> None:
        if self._polling or self._quitting:
            return  # one read at a time: a slow read must not pile up workers
        self._polling = True
        self._read_feed()

    @work(thread=True, group="poll", exit_on_error=False)
    def _read_feed(self) -> None:
        self.post_message(Polled(self.feed.read(self.host.mind)))

    def on_polled(self, message: Polled) -> None:
        self._polling = False
        if self._gone():
            return
        snap = message.snapshot
        if snap.events or snap.skipped:
            self.terminal.add_events(snap.events, snap.skipped)
        if snap.incidents:
            self.table.show(snap.incidents)
            self._incidents.update((i.id, i) for i in snap.incidents)
            self._follow_selected(snap.incidents)
        self._last = snap
        self._render_status()

    def _follow_selected(self, incidents: list[Incident]) -> None:
        """Pick an incident on first sight; refresh the panes when the selected one changed."""
        if self.selected_id is None:
            waiting = [i for i in incidents if _awaiting(i)]
            self.select_incident((waiting or incidents)[0].id, focus=False)
            return
        incident = self.selected
        if incident is None:
            return
        self.query_one(MemoryHits).show(incident)
        traces = exemplar_trace_ids(incident)
        if traces != self._trace_ids:
            self._trace_ids = traces
            self._trace_index = 0
            self._load_trace()

    @work(thread=True, group="extras", exclusive=True, exit_on_error=False)
    def _read_extras(self) -> None:
        self.post_message(Extras(self._chaos_now(), self._observed_mind()))

    def _chaos_now(self) -> list[str] | None:
        if self._last.lab_up is False:
            return None
        try:
            from sre_space.lab.control import LabClient

            return [
                str(f.get("fault", "?"))
                for f in LabClient.from_settings(self.settings).chaos_status()
            ]
        except Exception:  # no lab, or it is going down: the status line says "lab down"
            return None

    def _observed_mind(self) -> dict[str, Any] | None:
        if self.host.mode == "hosting":
            return None
        try:
            from sre_space.cli_common import mind_port
            from sre_space.localapi import get

            paths = Paths(self.settings.home)
            port = mind_port(paths)
            if port is None:
                return None
            doc = get(port, paths.mind_token, "/status")
            return doc if isinstance(doc, dict) else None
        except Exception:
            return None

    def on_extras(self, message: Extras) -> None:
        if self._gone():
            return
        self._chaos, self._observed = message.chaos, message.mind
        self._render_status()

    def _render_status(self) -> None:
        terminal = self.terminal
        follow = "follow"
        if not terminal.follow:
            follow = "paused"
        elif terminal.scrolled_up:
            follow = "scrolled up"
        mind = self._last.mind if self.host.mode == "hosting" else self._observed
        waiting = [i.id for i in self._incidents.values() if _awaiting(i)]
        self.query_one(StatusBar).show(
            mode=self.host.mode,
            lab_up=self._last.lab_up,
            mind=mind,
            open_incidents=self._last.open_incidents,
            follow=follow,
            error=self._last.error,
            chaos=self._chaos,
            awaiting=sorted(waiting),
            # Our own policy only while it is ours to apply (an observer shows the mind's).
            policy=self.settings.policy if self.host.mode in ("starting", "hosting") else None,
        )

    # --- the selected incident and its traces ------------------------------------------

    @on(DataTable.RowSelected, "#incidents")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key.value is not None:
            self.select_incident(str(event.row_key.value), focus=True)

    def select_incident(self, incident_id: str, focus: bool = True) -> None:
        self.selected_id = incident_id
        incident = self.selected
        self.query_one(MemoryHits).show(incident)
        self.query_one(MemoryHits).border_title = Text(f"memory · {printable(incident_id)}")
        self._trace_ids = exemplar_trace_ids(incident)
        self._trace_index = 0
        self._load_trace()
        if focus:
            self.waterfall.focus()

    def _load_trace(self) -> None:
        incident_id = self.selected_id or ""
        if not self._trace_ids:
            self.waterfall.clear(f"{incident_id}: no exemplar trace yet (diagnosis pending)")
            self._title_waterfall()
            return
        trace_id = self._trace_ids[self._trace_index % len(self._trace_ids)]
        self._wanted_trace = trace_id
        self._fetch_trace(incident_id, trace_id)

    @work(thread=True, group="trace", exclusive=True, exit_on_error=False)
    def _fetch_trace(self, incident_id: str, trace_id: str) -> None:
        try:
            spans = self.span_source(trace_id)
            view = WaterfallView(spans) if spans else None
            self.post_message(TraceLoaded(incident_id, trace_id, view))
        except Exception as exc:  # the mind went away, or answered nonsense
            log.exception("loading trace %s", trace_id)
            self.post_message(
                TraceLoaded(incident_id, trace_id, None, f"{type(exc).__name__}: {exc}")
            )

    def on_trace_loaded(self, message: TraceLoaded) -> None:
        if (
            message.incident_id != (self.selected_id or "")
            or message.trace_id != self._wanted_trace
            or self._gone()
        ):
            return  # the user moved on (a thread worker cannot be cancelled, only ignored)
        if message.view is None:
            why = (
                message.error
                or "not held by the mind\n(evicted from its store, or no mind is running)"
            )
            self.waterfall.clear(f"trace {message.trace_id}: {why}")
            self._title_waterfall(message.trace_id)
        else:
            self.waterfall.show(message.view, message.trace_id)
            self._title_waterfall()

    def _title_waterfall(self, missing: str = "") -> None:
        wf = self.waterfall
        tree = wf.view.tree
        trace_id = wf.trace_id or missing
        if not trace_id:
            wf.border_title = "trace"
            wf.border_subtitle = ""
            return
        n = len(self._trace_ids)
        which = f" {self._trace_index % n + 1}/{n}" if n > 1 else ""
        wf.border_title = Text(f"trace{which} {printable(trace_id[:12])}…")
        if missing:
            wf.border_subtitle = "no spans"
            return
        bits = [f"{len(tree)} spans", f"{len(tree.services)} services"]
        if tree.errors:
            bits.append(f"{tree.errors} failed")
        if tree.orphans:
            bits.append(f"partial: {tree.orphans} without parent")
        if wf.view.filter:
            bits.append(f"/{printable(wf.view.filter, NAME_LIMIT)}")
        wf.border_subtitle = Text(" · ".join(bits))  # Text: never parsed as markup

    def on_waterfall_span_highlighted(self, message: Waterfall.SpanHighlighted) -> None:
        # A burst of moves (a held j, page downs) updates the side panel once, at rest.
        self._pending_span = message
        if self._details_timer is None:
            self._details_timer = self.set_timer(DETAILS_DELAY_S, self._show_details)
        else:
            self._details_timer.reset()

    def _show_details(self) -> None:
        self._details_timer = None
        message, self._pending_span = self._pending_span, None
        if message is not None and not self._gone():
            self.query_one(SpanDetails).show(
                message.span, message.trace_start_ns, message.parent_missing
            )

    # --- routing keys to the focused pane ----------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in WATERFALL_ACTIONS:
            return isinstance(self.focused, Waterfall)
        return True

    def _scroll_pane(self, method: str) -> bool:
        pane = self.focused
        if isinstance(pane, SquadTerminal | SpanDetails):
            getattr(pane, method)(animate=False)
            return True
        return False

    def action_cursor_down(self) -> None:
        if isinstance(self.focused, Waterfall):
            self.waterfall.move(1)
        elif not self._scroll_pane("scroll_down"):
            self.table.action_cursor_down()

    def action_cursor_up(self) -> None:
        if isinstance(self.focused, Waterfall):
            self.waterfall.move(-1)
        elif not self._scroll_pane("scroll_up"):
            self.table.action_cursor_up()

    def action_page_down(self) -> None:
        if isinstance(self.focused, Waterfall):
            self.waterfall.page(1)
        elif not self._scroll_pane("scroll_page_down"):
            self.table.action_page_down()

    def action_page_up(self) -> None:
        if isinstance(self.focused, Waterfall):
            self.waterfall.page(-1)
        elif not self._scroll_pane("scroll_page_up"):
            self.table.action_page_up()

    def action_first(self) -> None:
        if isinstance(self.focused, Waterfall):
            self.waterfall.home()
        elif not self._scroll_pane("scroll_home"):
            self.table.action_scroll_top()

    def action_last(self) -> None:
        if isinstance(self.focused, Waterfall):
            self.waterfall.end()
        elif not self._scroll_pane("scroll_end"):
            self.table.action_scroll_bottom()

    def action_enter(self) -> None:
        focused = self.focused
        if isinstance(focused, Waterfall) and focused.selected_row is not None:
            self._side_for_details = True  # read the span beside the list, even at 80 columns
            self._layout_side()
            self.query_one(SpanDetails).focus()
        elif isinstance(focused, IncidentTable | None):
            selected = self.table.selected_id
            if selected:
                self.select_incident(selected)

    async def action_back(self) -> None:
        focused = self.focused
        if isinstance(focused, SpanDetails):
            self._side_for_details = False
            self._layout_side()
            self.waterfall.focus()
        elif isinstance(focused, Waterfall):
            if focused.view.filter:
                focused.set_filter("")
                self._title_waterfall()
            else:
                self.table.focus()
        elif isinstance(focused, SquadTerminal):
            self.table.focus()
        elif isinstance(focused, IncidentTable) and focused.filter_text:
            self._filter_target = "incidents"
            self._apply_filter("")

    def action_toggle_fold(self) -> None:
        self.waterfall.toggle_fold()

    def action_fold(self) -> None:
        self.waterfall.fold()

    def action_unfold(self) -> None:
        self.waterfall.unfold()

    def action_fold_all(self) -> None:
        self.waterfall.fold_all()

    def action_unfold_all(self) -> None:
        self.waterfall.unfold_all()

    def action_sort(self) -> None:
        sort = self.waterfall.cycle_sort()
        self._tell(f"spans sorted by {sort}", timeout=2)

    def action_next_failure(self) -> None:
        self.waterfall.next_failure()

    def action_next_trace(self) -> None:
        if len(self._trace_ids) > 1:
            self._trace_index = (self._trace_index + 1) % len(self._trace_ids)
            self._load_trace()

    def action_toggle_side(self) -> None:
        shown = self.waterfall.screen.has_class("-side")
        self._side = not shown
        self._side_for_details = False
        self._layout_side()

    # --- filter -------------------------------------------------------------------

    def action_filter(self) -> None:
        """Filter the incidents (from their pane) or the spans by name (anywhere else)."""
        box = self.query_one("#filter", Input)
        self._filter_target = "incidents" if isinstance(self.focused, IncidentTable) else "spans"
        if self._filter_target == "incidents":
            self._filter_before = self.table.filter_text
            box.placeholder = "filter incidents (⏎ keep, esc cancel)"
        else:
            self._filter_before = self.waterfall.view.filter
            box.placeholder = "filter spans by name (⏎ keep, esc cancel)"
        box.value = self._filter_before
        box.add_class("-open")
        box.focus()

    def _apply_filter(self, text: str) -> None:
        if self._filter_target == "incidents":
            self.table.set_filter(text)
            shown = printable(text.strip(), NAME_LIMIT)
            self.table.border_subtitle = Text(f"/{shown}" if shown else "")
        else:
            self.waterfall.set_filter(text)
            self._title_waterfall()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if event.input.has_class("-open"):
            self._apply_filter(event.value)

    @on(Input.Submitted, "#filter")
    def _filter_submitted(self, event: Input.Submitted) -> None:
        self._close_filter(keep=True)

    def _close_filter(self, keep: bool) -> None:
        box = self.query_one("#filter", Input)
        box.remove_class("-open")
        if not keep:
            self._apply_filter(self._filter_before)
        (self.table if self._filter_target == "incidents" else self.waterfall).focus()

    def on_key(self, event: Any) -> None:
        # Esc in the filter box: put the filter back as it was.
        if event.key == "escape" and isinstance(self.focused, Input):
            event.stop()
            self._close_filter(keep=False)

    # --- help and follow ------------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_follow(self) -> None:
        self.terminal.set_follow(not self.terminal.follow)
        self._render_status()

    def _tell(self, text: str, severity: SeverityLevel = "information", timeout: float = 5) -> None:
        """A notification: it may quote outside text, so escaped and never read as markup."""
        self.notify(printable(text, TEXT_LIMIT), severity=severity, timeout=timeout, markup=False)

    # --- acting: approve, deny, chaos, revert ------------------------------------------

    def _refused(self, action: str) -> bool:
        if self.readonly and action in ACTING:
            self._tell(f"readonly: {action} is disabled", severity="warning")
            return True
        return False

    def _target(self) -> Incident | None:
        """The selected incident, else the one under the table's cursor."""
        incident = self.selected
        if incident is None and self.table.selected_id:
            incident = self._incidents.get(self.table.selected_id)
        return incident

    def action_approve(self) -> None:
        self._decide("approve")

    def action_deny(self) -> None:
        self._decide("deny")

    def _decide(self, decision: str) -> None:
        if self._refused(decision):
            return
        incident = self._target()
        if incident is None:
            self._tell("no incident selected", severity="warning")
            return
        rem = incident.remediation
        if not _awaiting(incident):
            outcome = rem.get("outcome") or "no remediation yet"
            self._tell(f"{incident.id} is not awaiting approval ({outcome})", severity="warning")
            return
        params = " ".join(f"{k}={v}" for k, v in (rem.get("params") or {}).items())
        plan = f"{rem.get('action', '?')} {rem.get('service', '')} {params}".strip()
        question = f"{decision.capitalize()} {plan} for {incident.id}?"
        incident_id = incident.id

        def answered(yes: bool | None) -> None:
            if yes:
                self._write_decision(incident_id, decision)

        self.push_screen(ConfirmScreen(decision, question, yes=decision.capitalize()), answered)

    @work(thread=True, group="act", exit_on_error=False)
    def _write_decision(self, incident_id: str, decision: str) -> None:
        try:
            mind = self.host.mind
            if mind is not None:
                mind.log.decide(incident_id, decision, by="watch")
            else:
                incident_log = IncidentLog(Paths(self.settings.home).incidents_db)
                try:
                    incident_log.decide(incident_id, decision, by="watch")
                finally:
                    incident_log.close()
        except Exception as exc:
            log.exception("recording a decision")
            self.post_message(ActionDone(f"{decision} {incident_id} failed: {exc}", ok=False))
            return
        self.post_message(ActionDone(f"{decision} recorded for {incident_id}", ok=True))

    def action_chaos(self) -> None:
        if self._refused("chaos"):
            return
        from sre_space.lab.faults import FAULTS

        def chosen(name: str | None) -> None:
            if not name:
                return
            spec = FAULTS[name]

            def answered(yes: bool | None) -> None:
                if yes:
                    self._inject(name)

            question = f"Inject {name} into {spec.default_target}?\n\n{spec.description}"
            self.push_screen(ConfirmScreen("inject a fault", question, yes="Inject"), answered)

        self.push_screen(FaultScreen({n: f.description for n, f in FAULTS.items()}), chosen)

    @work(thread=True, group="act", exit_on_error=False)
    def _inject(self, fault: str) -> None:
        try:
            from sre_space.lab.control import LabClient

            doc = LabClient.from_settings(self.settings).inject(fault)
        except Exception as exc:
            self.post_message(ActionDone(f"inject {fault}: {exc}", ok=False))
            return
        target = doc.get("target") or ""
        self.post_message(ActionDone(f"injected {fault} {target}".strip(), ok=True))

    def action_revert(self) -> None:
        if self._refused("revert"):
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self._revert()

        question = "Revert every fault active in the lab?"
        self.push_screen(ConfirmScreen("revert chaos", question, yes="Revert"), answered)

    @work(thread=True, group="act", exit_on_error=False)
    def _revert(self) -> None:
        try:
            from sre_space.lab.control import LabClient

            reverted = LabClient.from_settings(self.settings).revert(None)
        except Exception as exc:
            self.post_message(ActionDone(f"revert: {exc}", ok=False))
            return
        text = f"reverted {', '.join(reverted)}" if reverted else "no fault was active"
        self.post_message(ActionDone(text, ok=True))

    def on_action_done(self, message: ActionDone) -> None:
        if self._gone():
            return
        self._tell(message.text, severity="information" if message.ok else "error")
        self.terminal.note(message.text, style="" if message.ok else "red")
        self._read_extras()

    # --- quitting -----------------------------------------------------------------

    async def action_quit(self) -> None:
        if self._quitting:  # a second q: leave now, the stop finishes after the screen is gone
            self.exit()
            return
        self._quitting = True
        if not self.host.stop():
            self.exit()
            return
        self.terminal.note("stopping the mind…", style="yellow")
        self._render_status()
        deadline = time.monotonic() + STOP_GRACE_S

        def leave_when_stopped() -> None:
            if self.host.stopped or time.monotonic() > deadline:
                self.exit()

        self.set_interval(0.1, leave_when_stopped)


def _awaiting(incident: Incident) -> bool:
    """A remediation waits for a human's approve or deny."""
    return incident.status in ACTIVE and incident.remediation.get("outcome") == AWAITING_APPROVAL


@contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Route every log record (and warning) to ``path``: nothing prints over the screen."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    )
    for h in saved_handlers:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)


def run_app(settings: Settings, readonly: bool = False) -> None:
    paths = Paths(settings.home).ensure()
    with _log_to_file(paths.logs_dir / "watch.log"):
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
