"""``/``: filter the incidents (from their pane) or the spans by name (from anywhere else).

The box filters as you type; Enter keeps the filter, Esc puts back the one before.
"""

from __future__ import annotations

from typing import Literal

from textual.widgets import Input

from sre_space.tui.controllers.incidents import IncidentsController
from sre_space.tui.controllers.trace import TraceController

Target = Literal["incidents", "spans"]


class FilterController:
    def __init__(self, box: Input, incidents: IncidentsController, trace: TraceController) -> None:
        self.box = box
        self.incidents = incidents
        self.trace = trace
        self.target: Target = "spans"
        self._before = ""

    @property
    def is_open(self) -> bool:
        return self.box.has_class("-open")

    def open(self, target: Target) -> None:
        self.target = target
        if target == "incidents":
            self._before = self.incidents.table.filter_text
            self.box.placeholder = "filter incidents (⏎ keep, esc cancel)"
        else:
            self._before = self.trace.waterfall.view.filter
            self.box.placeholder = "filter spans by name (⏎ keep, esc cancel)"
        self.box.value = self._before
        self.box.add_class("-open")
        self.box.focus()

    def apply(self, text: str) -> None:
        if self.target == "incidents":
            self.incidents.set_filter(text)
        else:
            self.trace.set_filter(text)

    def changed(self, text: str) -> None:
        if self.is_open:
            self.apply(text)

    def close(self, keep: bool) -> None:
        self.box.remove_class("-open")
        if not keep:
            self.apply(self._before)
        (self.incidents.table if self.target == "incidents" else self.trace.waterfall).focus()

    def clear_incidents(self) -> None:
        """Esc on a filtered incident list: show them all."""
        self.target = "incidents"
        self.apply("")
