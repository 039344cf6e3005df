"""The one key table: the app's bindings, the footer, ``?`` and the command palette all read it.

Add a key here and it is bound, shown in the footer (if ``show``), listed by
``?`` and offered by Ctrl+P. Panes do not bind keys of their own: the app
routes each action to the pane that has focus. Dialogs answer to
``DIALOG_KEYS``, listed by ``?`` too.
"""

from __future__ import annotations

from textual.binding import Binding

KEYS: list[Binding] = [
    Binding("question_mark", "help", "Help", key_display="?"),
    Binding("enter", "enter", "Open", show=False, key_display="⏎"),
    Binding("escape", "back", "Back", show=False, key_display="esc"),
    Binding("slash", "filter", "Filter", key_display="/"),
    Binding("j,down", "cursor_down", "Down", show=False, key_display="j ↓"),
    Binding("k,up", "cursor_up", "Up", show=False, key_display="k ↑"),
    Binding("ctrl+d,pagedown", "page_down", "Page down", show=False, key_display="^d pgdn"),
    Binding("ctrl+u,pageup", "page_up", "Page up", show=False, key_display="^u pgup"),
    Binding("g,home", "first", "First", show=False, key_display="g home"),
    Binding("G,end", "last", "Last", show=False, key_display="G end"),
    Binding("tab", "focus_next", "Next pane", show=False, key_display="tab"),
    Binding("shift+tab", "focus_previous", "Previous pane", show=False, key_display="⇧tab"),
    Binding("space", "toggle_fold", "Fold", key_display="space"),
    Binding("h,left", "fold", "Fold / to parent", show=False, key_display="h ←"),
    Binding("l,right", "unfold", "Unfold", show=False, key_display="l →"),
    Binding("z", "fold_all", "Fold all", show=False),
    Binding("Z", "unfold_all", "Unfold all", show=False),
    Binding("s", "sort", "Sort"),
    Binding("e", "next_failure", "Next failed span", show=False),
    Binding("t", "next_trace", "Next exemplar trace", show=False),
    Binding("i", "toggle_side", "Side panels", show=False),
    Binding("f", "toggle_follow", "Follow", show=False),
    Binding("a", "approve", "Approve"),
    Binding("d", "deny", "Deny"),
    Binding("A", "ack", "Acknowledge", show=False),
    Binding("R", "resolve", "Resolve", show=False),
    Binding("c", "chaos", "Chaos"),
    Binding("r", "revert", "Revert"),
    Binding("ctrl+p", "command_palette", "Commands", show=False, key_display="^p"),
    Binding("q", "quit", "Quit"),
]

DIALOG_KEYS: list[Binding] = [
    Binding("y", "confirm", "Yes (in a dialog)", key_display="y"),
    Binding("n,escape", "cancel", "No / close (in a dialog)", key_display="n esc"),
]

# Actions that change something outside the cockpit: refused under --readonly.
ACTING = frozenset({"approve", "deny", "ack", "resolve", "chaos", "revert"})


def keys_for(*actions: str) -> list[Binding]:
    """The table's bindings for these actions (for a screen that handles them itself)."""
    return [b for b in (*KEYS, *DIALOG_KEYS) if b.action in actions]


def key_label(binding: Binding) -> str:
    return binding.key_display or binding.key
