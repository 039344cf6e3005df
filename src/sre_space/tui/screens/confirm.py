"""Confirm before anything that acts: nothing happens unless the answer is yes."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from sre_space.safe_text import TEXT_LIMIT, printable_lines
from sre_space.tui.keys import keys_for


class ConfirmScreen(ModalScreen[bool]):
    """Yes or no; nothing happens unless the answer is yes."""

    BINDINGS: ClassVar[list[BindingType]] = [*keys_for("confirm", "cancel")]

    def __init__(self, title: str, question: str, yes: str = "Yes") -> None:
        super().__init__()
        self._title, self.question, self._yes = title, question, yes

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog") as box:
            box.border_title = Text(self._title)
            # The question quotes the incident (outside text): Text, never markup.
            yield Static(Text(printable_lines(self.question, TEXT_LIMIT)), id="question")
            with Horizontal(id="buttons"):
                yield Button(f"{self._yes} (y)", id="yes", variant="warning")
                yield Button("Cancel (n)", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # the safe answer is the default

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_confirm(self) -> None:
        self.dismiss(True)

    def action_cancel(self) -> None:
        self.dismiss(False)
