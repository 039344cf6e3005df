"""The one key table: it drives the app's bindings, the footer and the help screen."""

from __future__ import annotations

from textual.binding import Binding, BindingType

KEYS: list[BindingType] = [
    Binding("q", "quit", "Quit"),
    Binding("question_mark", "help", "Help", key_display="?"),
    Binding("f", "toggle_follow", "Follow"),
    Binding("j", "cursor_down", "Down", show=False),
    Binding("k", "cursor_up", "Up", show=False),
    Binding("tab", "focus_next", "Next pane", show=False),
    Binding("escape", "go_back", "Back", show=False),
]
