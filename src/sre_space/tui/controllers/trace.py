"""The waterfall and the span panel beside it: the selected incident's exemplar traces.

Traces are fetched and laid out in a worker thread (a large one takes a
while); the panel follows the cursor once it rests, so a held ``j`` redraws
it once.
"""

from __future__ import annotations

import logging

from rich.text import Text
from textual.screen import Screen
from textual.timer import Timer

from sre_space.incidents import Incident
from sre_space.safe_text import NAME_LIMIT, printable
from sre_space.tui.context import CockpitContext
from sre_space.tui.messages import TraceLoaded
from sre_space.tui.traces import exemplar_trace_ids
from sre_space.tui.waterfall_model import WaterfallView
from sre_space.tui.widgets import SpanDetails, Waterfall

log = logging.getLogger(__name__)

DETAILS_DELAY_S = 0.05  # the side panel follows the cursor once it rests this long
WIDE = 120  # from this many columns the side panels show without asking
NOT_HELD = "not held by the mind\n(evicted from its store, or no mind is running)"


class TraceController:
    def __init__(
        self, screen: Screen[None], ctx: CockpitContext, waterfall: Waterfall, details: SpanDetails
    ) -> None:
        self.screen = screen
        self.ctx = ctx
        self.waterfall = waterfall
        self.details = details
        self.incident_id = ""
        self.trace_ids: list[str] = []
        self.trace_index = 0
        self._wanted = ""
        self.side: bool | None = None  # None: by the terminal's width
        self.side_for_details = False  # shown only to read a span (80 columns)
        self._pending: Waterfall.SpanHighlighted | None = None
        self._details_timer: Timer | None = None

    # --- which trace ------------------------------------------------------------------

    def show_incident(self, incident: Incident | None, incident_id: str) -> None:
        """A newly selected incident: its first exemplar trace."""
        self.incident_id = incident_id
        self.trace_ids = exemplar_trace_ids(incident)
        self.trace_index = 0
        self.load()

    def incident_changed(self, incident: Incident) -> None:
        """The selected incident was updated: reload only if its exemplars changed."""
        traces = exemplar_trace_ids(incident)
        if traces != self.trace_ids:
            self.trace_ids = traces
            self.trace_index = 0
            self.load()

    def next_trace(self) -> None:
        if len(self.trace_ids) > 1:
            self.trace_index = (self.trace_index + 1) % len(self.trace_ids)
            self.load()

    def reload_if_missing(self) -> None:
        """The mind settled: its store may hold the trace now."""
        if self.incident_id and not self.waterfall.trace_id:
            self.load()

    def load(self) -> None:
        if not self.trace_ids:
            self.waterfall.clear(f"{self.incident_id}: no exemplar trace yet (diagnosis pending)")
            self.title()
            return
        trace_id = self.trace_ids[self.trace_index % len(self.trace_ids)]
        self._wanted = trace_id
        incident_id, source = self.incident_id, self.ctx.span_source

        def fetch() -> None:  # in a worker thread
            try:
                spans = source(trace_id)
                view = WaterfallView(spans) if spans else None
                self.screen.post_message(TraceLoaded(incident_id, trace_id, view))
            except Exception as exc:  # the mind went away, or answered nonsense
                log.exception("loading trace %s", trace_id)
                error = f"{type(exc).__name__}: {exc}"
                self.screen.post_message(TraceLoaded(incident_id, trace_id, None, error))

        self.screen.run_worker(
            fetch, thread=True, group="trace", exclusive=True, exit_on_error=False
        )

    def loaded(self, message: TraceLoaded) -> None:
        if message.incident_id != self.incident_id or message.trace_id != self._wanted:
            return  # the user moved on (a thread worker cannot be cancelled, only ignored)
        if message.view is None:
            self.waterfall.clear(f"trace {message.trace_id}: {message.error or NOT_HELD}")
            self.title(missing=message.trace_id)
        else:
            self.waterfall.show(message.view, message.trace_id)
            self.title()

    def title(self, missing: str = "") -> None:
        """The pane's title and subtitle: which trace, how big, what failed, the filter."""
        wf = self.waterfall
        tree = wf.view.tree
        trace_id = wf.trace_id or missing
        if not trace_id:
            wf.border_title = "trace"
            wf.border_subtitle = ""
            return
        n = len(self.trace_ids)
        which = f" {self.trace_index % n + 1}/{n}" if n > 1 else ""
        # Text titles: the trace id and the filter are outside text, never markup.
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
        wf.border_subtitle = Text(" · ".join(bits))

    def set_filter(self, text: str) -> None:
        self.waterfall.set_filter(text)
        self.title()

    # --- the span panel -------------------------------------------------------------------

    def span_highlighted(self, message: Waterfall.SpanHighlighted) -> None:
        # A burst of moves (a held j, page downs) updates the side panel once, at rest.
        self._pending = message
        if self._details_timer is None:
            self._details_timer = self.screen.set_timer(DETAILS_DELAY_S, self._show_details)
        else:
            self._details_timer.reset()

    def _show_details(self) -> None:
        self._details_timer = None
        message, self._pending = self._pending, None
        if message is not None and self.details.is_attached:
            self.details.show(message.span, message.trace_start_ns, message.parent_missing)

    def layout_side(self) -> None:
        """Side panels from WIDE columns, when asked (``i``), or to read a span."""
        show = self.side if self.side is not None else self.screen.size.width >= WIDE
        self.screen.set_class(show or self.side_for_details, "-side")

    def toggle_side(self) -> None:
        self.side = not self.screen.has_class("-side")
        self.side_for_details = False
        self.layout_side()

    def open_details(self) -> None:
        """Read the span beside the list, even at 80 columns."""
        self.side_for_details = True
        self.layout_side()
        self.details.focus()

    def close_details(self) -> None:
        self.side_for_details = False
        self.layout_side()
        self.waterfall.focus()
