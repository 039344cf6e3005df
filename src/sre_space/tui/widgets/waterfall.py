"""The trace waterfall: a Line API widget that draws only the lines on screen.

Line 0 is the time axis and stays put; below it one line per visible span:
tree guides and a fold marker, ``[!]`` on a failed span (``(!)`` on a folded
span that hides a failure), the name, its duration, then a bar placed by time
in its service's colour with the critical path drawn over it (``━``). The
layout (tree, folds, sort, filter, critical path) lives in
:mod:`sre_space.tui.waterfall_model`; this widget only turns rows into strips.

Over 300 lines on purpose: one Textual widget, whose cursor, folds, key
actions and drawing all read and move the same rows and scroll offset; the
layout itself already lives apart, in the model.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual.binding import BindingType
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from sre_space.safe_text import printable
from sre_space.telemetry.model import Span
from sre_space.tui.waterfall_model import (
    Row,
    SortKey,
    WaterfallView,
    axis,
    bar_cells,
    format_duration,
    shown_name,
    tree_prefix,
)

SERVICE_COLOURS = (
    "#5f87ff",
    "#d787ff",
    "#ffaf5f",
    "#5fd7af",
    "#d7d75f",
    "#ff87af",
    "#5fd7ff",
    "#af875f",
    "#87af5f",
    "#af87d7",
)
DURATION_W = 8
MAX_GUIDE_LEVELS = 12


def name_width(width: int, view: WaterfallView | None = None) -> int:
    """Cells for the name column: what the names need, between 16 and 45% of ``width``."""
    most = max(16, int(width * 0.45))
    if view is None or not view.rows:
        return most
    guides = 2 * min(view.depth_shown, MAX_GUIDE_LEVELS + 1)
    return max(16, min(most, 1 + guides + 2 + view.longest_name + 1))


class Waterfall(ScrollView, can_focus=True, inherit_bindings=False):
    """One trace as a tree of spans over a shared time axis.

    Over 300 lines on purpose: one widget's state (cursor, folds, sort,
    filter) and the lines it renders from it; the layout is
    ``tui/waterfall_model.py``'s, and the keys are ``tui/keys.py``'s.
    """

    # No keys of its own (not even the scroll view's): the app's one key table
    # (keys.py) binds them and the app routes them here.
    BINDINGS: ClassVar[list[BindingType]] = []

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "waterfall--axis",
        "waterfall--cursor",
        "waterfall--guide",
        "waterfall--context",
        "waterfall--failed",
        "waterfall--hidden-failure",
        "waterfall--critical",
        "waterfall--empty",
    }
    DEFAULT_CSS = """
    Waterfall {
        overflow-x: hidden;
        overflow-y: auto;
    }
    Waterfall > .waterfall--axis { color: $text-muted; text-style: bold; }
    Waterfall > .waterfall--cursor { background: $surface-lighten-2; }
    Waterfall:focus > .waterfall--cursor { background: $accent 40%; text-style: bold; }
    Waterfall > .waterfall--guide { color: $text-muted; }
    Waterfall > .waterfall--context { color: $text-disabled; }
    Waterfall > .waterfall--failed { color: $text; background: $error; text-style: bold; }
    Waterfall > .waterfall--hidden-failure { color: $error; text-style: bold; }
    Waterfall > .waterfall--critical { color: #101010; text-style: bold; }
    Waterfall > .waterfall--empty { color: $text-muted; text-style: italic; }
    """

    class SpanHighlighted(Message):
        """The cursor is on this span (None: no span, the trace is empty)."""

        def __init__(
            self,
            waterfall: Waterfall,
            span: Span | None,
            trace_start_ns: int,
            parent_missing: bool = False,
        ) -> None:
            super().__init__()
            self.waterfall = waterfall
            self.span = span
            self.trace_start_ns = trace_start_ns
            self.parent_missing = parent_missing

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.view = WaterfallView([])
        self.trace_id = ""
        self.empty_message = "no incident selected"
        self._colour_styles: dict[str, tuple[Style, Style]] = {}
        self._cursor = 0
        self._base_style: Style | None = None

    # --- content ---------------------------------------------------------------

    def show(self, view: WaterfallView, trace_id: str) -> None:
        """Show a laid-out trace (built off the UI thread by the caller)."""
        keep = self.trace_id == trace_id and self.view.rows
        selected = self.selected_span_id if keep else None
        if keep:  # the same trace again (more spans arrived): keep folds, sort, filter
            view.collapsed = set(self.view.collapsed) & set(view.tree.nodes)
            view.sort, view.filter = self.view.sort, self.view.filter
            view.relayout()
        self.view = view
        self.trace_id = trace_id
        self._colour_styles.clear()
        self._relayout(selected)

    def clear(self, message: str) -> None:
        self.view = WaterfallView([])
        self.trace_id = ""
        self.empty_message = message
        self._relayout(None)

    def _relayout(self, keep_span: str | None) -> None:
        """The rows changed: keep the cursor on ``keep_span`` if it is still shown."""
        index = self.view.index_of(keep_span) if keep_span else None
        self.virtual_size = Size(self.size.width, len(self.view.rows) + 1)
        if index is None and keep_span is None:
            self.scroll_to(y=0, animate=False)
            index = 0
        self._move_to(self._cursor if index is None else index, changed=True)

    @property
    def cursor(self) -> int:
        """The index of the selected row."""
        return self._cursor

    @cursor.setter
    def cursor(self, index: int) -> None:
        self._move_to(index)

    def _move_to(self, index: int, changed: bool = False) -> None:
        """Put the cursor on row ``index``; redraw only what changed."""
        count = len(self.view.rows)
        index = max(0, min(index, count - 1)) if count else 0
        old, self._cursor = self._cursor, index
        scrolled = self._scroll_to_cursor()
        if changed:
            self.refresh()
        elif old != index and not scrolled:  # a scroll redraws the lot
            self.refresh_line(old + 1)  # line 0 is the axis
            self.refresh_line(index + 1)
        if changed or old != index:
            row = self.selected_row
            self.post_message(
                self.SpanHighlighted(
                    self,
                    row.span if row else None,
                    self.view.tree.start_ns,
                    parent_missing=bool(row and row.node.orphan),
                )
            )

    @property
    def selected_row(self) -> Row | None:
        rows = self.view.rows
        return rows[self._cursor] if 0 <= self._cursor < len(rows) else None

    @property
    def selected_span_id(self) -> str | None:
        row = self.selected_row
        return row.span.span_id if row else None

    def _scroll_to_cursor(self) -> bool:
        """Scroll so the cursor's row is on screen; True if the view moved."""
        body = max(1, self.size.height - 1)  # below the axis
        top = round(self.scroll_y)
        target = top
        if self._cursor < top:
            target = self._cursor
        elif self._cursor >= top + body:
            target = self._cursor - body + 1
        if target == top:
            return False
        self.scroll_to(y=target, animate=False)
        return True

    def on_resize(self) -> None:
        self.virtual_size = Size(self.size.width, len(self.view.rows) + 1)
        self._scroll_to_cursor()

    def notify_style_update(self) -> None:
        self._base_style = None
        self._colour_styles.clear()
        super().notify_style_update()

    @property
    def _base(self) -> Style:
        """The widget's own style, computed once per style change (not per line)."""
        if self._base_style is None:
            self._base_style = self.rich_style
        return self._base_style

    # --- moves and folds (called by the app's actions) -----------------------------

    def move(self, delta: int) -> None:
        if self.view.rows:
            self.cursor = max(0, min(self.cursor + delta, len(self.view.rows) - 1))

    def page(self, direction: int) -> None:
        self.move(direction * max(1, self.size.height - 2))

    def home(self) -> None:
        self.cursor = 0

    def end(self) -> None:
        self.cursor = max(0, len(self.view.rows) - 1)

    def toggle_fold(self) -> None:
        span_id = self.selected_span_id
        if span_id is not None:
            self.view.toggle(span_id)
            self._relayout(span_id)

    def fold(self) -> None:
        """Fold the span under the cursor; on a leaf or folded span, go to its parent."""
        row = self.selected_row
        if row is None:
            return
        if not self.view.collapse(row.span.span_id) and row.parent_row >= 0:
            self.cursor = row.parent_row
            return
        self._relayout(row.span.span_id)

    def unfold(self) -> None:
        row = self.selected_row
        if row is not None and self.view.expand(row.span.span_id):
            self._relayout(row.span.span_id)
        elif row is not None and row.has_children:
            self.move(1)

    def fold_all(self) -> None:
        selected = self.selected_row
        self.view.collapse_all()
        root = selected
        if root is not None:
            while root.parent_row >= 0:
                root = self._row_of_parent(root)
        self._relayout(root.span.span_id if root else None)

    def _row_of_parent(self, row: Row) -> Row:
        parent = row.node.parent
        while parent is not None and self.view.index_of(parent.span_id) is None:
            parent = parent.parent
        if parent is None:
            return Row(row.node, -1)
        return self.view.rows[self.view.index_of(parent.span_id) or 0]

    def unfold_all(self) -> None:
        selected = self.selected_span_id
        self.view.expand_all()
        self._relayout(selected)

    def cycle_sort(self) -> SortKey:
        selected = self.selected_span_id
        sort = self.view.next_sort()
        self._relayout(selected)
        return sort

    def set_filter(self, text: str) -> None:
        selected = self.selected_span_id
        self.view.set_filter(text)
        first_match = next((i for i, r in enumerate(self.view.rows) if r.matched), None)
        if text and first_match is not None:
            self._relayout(self.view.rows[first_match].span.span_id)
        else:
            self._relayout(selected)

    def next_failure(self) -> None:
        """Jump to the next failed span (or folded span hiding one), wrapping around."""
        rows = self.view.rows
        for step in range(1, len(rows) + 1):
            i = (self.cursor + step) % len(rows)
            if rows[i].span.error or rows[i].hidden_failure:
                self.cursor = i
                return

    # --- drawing ----------------------------------------------------------------

    def _service_styles(self, service: str) -> tuple[Style, Style]:
        styles = self._colour_styles.get(service)
        if styles is None:
            services = self.view.tree.services
            index = services.index(service) if service in services else len(self._colour_styles)
            colour = SERVICE_COLOURS[index % len(SERVICE_COLOURS)]
            bar = Style(bgcolor=colour)
            critical = bar + self.get_component_rich_style("waterfall--critical", partial=True)
            styles = self._colour_styles[service] = (bar, critical)
        return styles

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self._base
        if y == 0:
            return self._axis_line(width, base)
        index = round(self.scroll_y) + y - 1
        rows = self.view.rows
        if not rows:
            lines = [printable(line, width) for line in self.empty_message.splitlines()]
            if 1 <= y <= len(lines):
                style = base + self.get_component_rich_style("waterfall--empty", partial=True)
                return Strip([Segment(set_cell_size(f" {lines[y - 1]}", width), style)])
            return Strip.blank(width, base)
        if index >= len(rows):
            return Strip.blank(width, base)
        return self._span_line(index, width, base)

    def _axis_line(self, width: int, base: Style) -> Strip:
        if not self.view.rows and not self.view.filter:
            return Strip.blank(width, base)
        name_w = name_width(width, self.view)
        bars_w = max(0, width - name_w - DURATION_W - 1)
        style = base + self.get_component_rich_style("waterfall--axis", partial=True)
        tree = self.view.tree
        title = f" {len(tree)} spans" if len(tree) else ""
        if self.view.sort != "start":
            title += f" · by {self.view.sort}"
        head = set_cell_size(title, name_w) + set_cell_size("duration", DURATION_W) + " "
        return Strip([Segment(head + axis(tree.duration_ns, bars_w), style)], width)

    def _span_line(self, index: int, width: int, base: Style) -> Strip:
        row = self.view.rows[index]
        span = row.span
        name_w = name_width(width, self.view)
        bars_w = max(0, width - name_w - DURATION_W - 1)
        on_cursor = index == self.cursor
        line_style = base
        if on_cursor:
            line_style = base + self.get_component_rich_style("waterfall--cursor", partial=True)
        text_style = line_style
        if not row.matched:
            text_style = line_style + self.get_component_rich_style(
                "waterfall--context", partial=True
            )
        guide_style = line_style + self.get_component_rich_style("waterfall--guide", partial=True)

        prefix = tree_prefix(self.view.rows, index, MAX_GUIDE_LEVELS)
        if row.node.orphan:
            prefix = "┄"  # its parent is not in the trace (a partial trace)
        marker = "▸ " if row.collapsed else "▾ " if row.has_children else "  "
        segments: list[Segment] = [Segment(" " + prefix + marker, guide_style)]
        used = 1 + len(prefix) + 2
        if span.error:
            flag = self.get_component_rich_style("waterfall--failed", partial=True)
            segments += [Segment("[!]", line_style + flag), Segment(" ", text_style)]
            used += 4
        elif row.hidden_failure:
            flag = self.get_component_rich_style("waterfall--hidden-failure", partial=True)
            segments += [Segment("(!)", line_style + flag), Segment(" ", text_style)]
            used += 4
        if used > name_w - 4:  # a very deep span: keep room for its name
            segments = [Segment(set_cell_size(" " + prefix + marker, name_w - 4), guide_style)]
            used = name_w - 4
        name = set_cell_size(shown_name(span), max(0, name_w - used - 1)) + " "
        segments.append(Segment(name, text_style))
        duration = format_duration(span.end_ns - span.start_ns).rjust(DURATION_W - 1) + " "
        segments.append(Segment(duration + " ", text_style))
        segments += self._bar(row, bars_w, base)
        return Strip(segments).adjust_cell_length(width, base)

    def _bar(self, row: Row, width: int, base: Style) -> list[Segment]:
        if width <= 0:
            return []
        tree = self.view.tree
        node = row.node
        first, last = bar_cells(node.start_ns, node.end_ns, tree.start_ns, tree.duration_ns, width)
        bar, critical = self._service_styles(node.span.service)
        cells = [False] * (last - first)
        for start, end in self.view.critical.get(node.span_id, ()):
            a, b = bar_cells(start, end, tree.start_ns, tree.duration_ns, width)
            for col in range(max(a, first), min(b, last)):
                cells[col - first] = True
        out = [Segment(" " * first, base)] if first else []
        run_start = 0
        for i in range(1, len(cells) + 1):
            if i == len(cells) or cells[i] != cells[run_start]:
                n = i - run_start
                out.append(
                    Segment("━" * n, critical) if cells[run_start] else Segment(" " * n, bar)
                )
                run_start = i
        return out

    # --- for tests and the snapshot of what is on screen ---------------------------------

    def visible_text(self) -> list[str]:
        """The lines now on screen, as plain text."""
        height = self.size.height
        return [self.render_line(y).text.rstrip() for y in range(height)]
