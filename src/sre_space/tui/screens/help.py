"""`?`: every key the cockpit answers to, read from the one key table."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from sre_space.tui.keys import DIALOG_KEYS, KEYS, key_label, keys_for


def key_table(columns: int = 2) -> Table:
    """The key table as (key, what it does) pairs, ``columns`` pairs side by side."""
    table = Table.grid(padding=(0, 1))
    for n in range(columns):
        table.add_column(style="bold", no_wrap=True)
        table.add_column(no_wrap=True)
        if n < columns - 1:
            table.add_column(width=2)  # a gutter between the pairs
    bindings = [*KEYS, *DIALOG_KEYS]
    per_column = -(-len(bindings) // columns)
    for row in range(per_column):
        cells: list[str] = []
        for n in range(columns):
            i = n * per_column + row
            pair = (
                [key_label(bindings[i]), bindings[i].description] if i < len(bindings) else ["", ""]
            )
            cells += pair + ([""] if n < columns - 1 else [])
        table.add_row(*cells)
    return table


class HelpScreen(ModalScreen[None]):
    # A modal screen hides the app's bindings: it answers to the table's own keys.
    BINDINGS: ClassVar[list[BindingType]] = [*keys_for("back", "help", "quit")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box") as box:
            box.border_title = "keys"
            box.border_subtitle = "esc closes"
            yield Static(key_table(), id="help")

    def on_mount(self) -> None:
        self.query_one("#help-box").focus()  # so ↑ ↓ scroll a small terminal's help

    def action_back(self) -> None:
        self.dismiss()

    def action_help(self) -> None:
        self.dismiss()

    async def action_quit(self) -> None:
        await self.app.action_quit()
