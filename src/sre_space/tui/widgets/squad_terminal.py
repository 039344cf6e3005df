"""The squad terminal: every squad event line as it happens, coloured by agent.

It follows the tail unless following is off (``f``) or the user has scrolled
up to read; scrolling back to the bottom resumes following.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from rich.text import Text
from textual.widgets import RichLog

from sre_space.incidents import Event
from sre_space.safe_text import TEXT_LIMIT, printable

AGENT_STYLES: dict[str, str] = {
    "scout": "bold cyan",
    "brain": "bold magenta",
    "fixer": "bold yellow",
    "jules": "bold green",
    "mind": "bold blue",
    "watch": "bold bright_black",  # the cockpit's own notes, never in the incident log
}
MAX_LINES = 5000


def render_event(event: Event) -> Text:
    """The event's own line, with its time dimmed and its agent in the agent's colour."""
    text = Text(printable(event.line(), TEXT_LIMIT))  # line() escapes the message; this caps it
    plain = text.plain
    when_end = plain.find(" ")
    if when_end > 0:
        text.stylize("dim", 0, when_end)
    agent_at = plain.find(event.agent, max(when_end, 0))
    if agent_at >= 0:
        text.stylize(AGENT_STYLES.get(event.agent, "bold"), agent_at, agent_at + len(event.agent))
        if event.incident_id:
            inc_at = plain.find(event.incident_id, agent_at)
            if inc_at >= 0:
                text.stylize("italic", inc_at, inc_at + len(event.incident_id))
    if event.kind == "error":
        text.stylize("red", max(agent_at, 0) + len(event.agent))
    return text


class SquadTerminal(RichLog):
    BORDER_TITLE = "squad"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            wrap=True, markup=False, min_width=20, max_lines=MAX_LINES, auto_scroll=False, **kwargs
        )
        self.follow = True

    @property
    def scrolled_up(self) -> bool:
        """The user has scrolled away from the tail (so new lines do not move the view)."""
        return not self.is_vertical_scroll_end

    def add_events(self, events: Iterable[Event], skipped: int = 0) -> None:
        stick = self.follow and not self.scrolled_up
        if skipped:
            self.write(
                Text(f"… {skipped} earlier events not shown", style="dim italic"),
                expand=True,
                scroll_end=stick,
            )
        for event in events:
            self.write(render_event(event), expand=True, scroll_end=stick)

    def note(self, message: str, style: str = "") -> None:
        """A line from the cockpit itself (why it observes, a read error)."""
        when = datetime.now(UTC).strftime("%H:%M:%S")  # the clock Event.line() uses
        line = Text.assemble(
            (when, "dim"),
            " ",
            ("watch ", AGENT_STYLES["watch"]),
            " ",
            (printable(message, TEXT_LIMIT), style),
        )
        self.write(line, expand=True, scroll_end=self.follow and not self.scrolled_up)

    def set_follow(self, follow: bool) -> None:
        self.follow = follow
        if follow:
            self.scroll_end(animate=False)

    @property
    def text(self) -> str:
        """What the terminal holds, as plain text (for tests and copy)."""
        return "\n".join(strip.text for strip in self.lines)
