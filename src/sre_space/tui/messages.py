"""What the cockpit's worker threads post back to the UI thread (one class per message).

Workers never touch a widget: they post one of these to the cockpit screen,
which hands it to the controller of the pane it concerns.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from sre_space.tui.feed import Snapshot
from sre_space.tui.waterfall_model import WaterfallView


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
    """A trace was fetched and laid out (``view`` None: not held, ``error`` says why)."""

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
