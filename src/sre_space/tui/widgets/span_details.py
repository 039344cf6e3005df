"""The side panel: the selected span's attributes, events and resource.

Beside the waterfall, not over it, so the list keeps its place while you read.
"""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual import events
from textual.widgets import RichLog

from sre_space.safe_text import NAME_LIMIT, TEXT_LIMIT, printable
from sre_space.telemetry.model import Span
from sre_space.tui.waterfall_model import span_details
from sre_space.tui.widgets.plain import plain_text


def details_renderable(
    span: Span | None, trace_start_ns: int, parent_missing: bool = False
) -> RenderableType:
    if span is None:
        return Text("no span selected", style="dim italic")
    parts: list[RenderableType] = []
    for title, rows in span_details(span, trace_start_ns, parent_missing):
        if title != "span":
            parts.append(Text(f"\n{title}", style="bold underline"))
        if not rows:
            parts.append(Text("  none", style="dim"))
            continue
        table = Table.grid(padding=(0, 1))
        table.add_column(style="bold" if title != "events" else "dim", no_wrap=True)
        table.add_column(overflow="fold")
        for key, value in rows:
            style = "bold red" if (key, value) == ("status", "ERROR") or key == "error" else ""
            style = "yellow" if key == "note" else style
            # Keys and values are the span's own: Text (a str cell is parsed as markup).
            table.add_row(
                Text(printable(key, NAME_LIMIT)), Text(printable(value, TEXT_LIMIT), style=style)
            )
        parts.append(table)
    return Group(*parts)


class SpanDetails(RichLog):
    """A line widget: new content redraws the panel without a layout of the whole screen."""

    BORDER_TITLE = "span"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(wrap=True, markup=False, auto_scroll=False, min_width=20, **kwargs)
        self._renderable = details_renderable(None, 0)
        self._shown_width = 0

    def on_mount(self) -> None:
        self._redraw()

    def show(self, span: Span | None, trace_start_ns: int, parent_missing: bool = False) -> None:
        self._renderable = details_renderable(span, trace_start_ns, parent_missing)
        # A Text title: a str one would be parsed as markup.
        self.border_title = Text(f"span {printable(span.name, NAME_LIMIT)}" if span else "span")
        self._redraw()

    def _redraw(self) -> None:
        self.clear()
        self.write(self._renderable, scroll_end=False)
        self._shown_width = self.scrollable_content_region.width
        self.scroll_home(animate=False)

    def on_resize(self, event: events.Resize) -> None:
        if self.scrollable_content_region.width != self._shown_width:
            self._redraw()  # wrap again at the new width

    @property
    def text(self) -> str:
        return plain_text(self._renderable, max(20, self.size.width or 60))
