"""Pick a fault from the lab's catalogue to inject."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList
from textual.widgets.option_list import Option

from sre_space.tui.keys import keys_for


class FaultScreen(ModalScreen[str | None]):
    """Choose a fault from the lab's catalogue (Enter), or close (Esc)."""

    BINDINGS: ClassVar[list[BindingType]] = [*keys_for("cancel")]

    def __init__(self, faults: dict[str, str]) -> None:
        super().__init__()
        self.faults = faults  # name -> description

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as box:
            box.border_title = "inject a fault"
            box.border_subtitle = "⏎ choose · esc close"
            options = [
                Option(Text.assemble((name, "bold"), "\n", (desc, "dim")), id=name)
                for name, desc in self.faults.items()
            ]
            yield OptionList(*options, id="faults")

    def on_mount(self) -> None:
        self.query_one(OptionList).focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
