"""Memory hits for the selected incident: the top past incidents, their fix and its outcome."""

from __future__ import annotations

from typing import Any

from rich.console import Group, RenderableType
from rich.text import Text
from textual.widgets import Static

from sre_space.incidents import Incident
from sre_space.safe_text import NAME_LIMIT, TEXT_LIMIT, printable
from sre_space.tui.widgets.plain import plain_text
from sre_space.vocabulary import FAILED, RECOVERED, UNCLEAR, UNDONE

OUTCOME_STYLES: dict[str, str] = {
    RECOVERED: "green",
    UNCLEAR: "yellow",  # memory never archives it; an old or imported entry might say it
    UNDONE: "red",
    FAILED: "red",
}


def hits_renderable(incident: Incident | None, top: int = 3) -> RenderableType:
    if incident is None:
        return Text("no incident selected", style="dim italic")
    hits = [h for h in incident.memory_hits if isinstance(h, dict)][:top]
    if not hits:
        return Text("no similar past incident", style="dim italic")
    parts: list[RenderableType] = []
    for rank, hit in enumerate(hits, 1):
        rem = hit.get("remediation") or {}
        action = rem.get("action", "-") if isinstance(rem, dict) else str(rem)
        params = rem.get("params") if isinstance(rem, dict) else None
        args = " ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else ""
        outcome = str(hit.get("outcome") or "-")
        try:
            score = f"{float(hit.get('score', 0.0)):.2f}"
        except (TypeError, ValueError):
            score = "?"
        # Everything in a hit came from memory (maybe imported): escaped and capped.
        head = Text.assemble(
            (f"{rank}. ", "dim"),
            (score, "bold"),
            " ",
            (printable(hit.get("id", "?"), NAME_LIMIT), "italic"),
            " ",
            (printable(hit.get("service", ""), NAME_LIMIT), "cyan"),
        )
        fix = Text.assemble(
            "   ",
            (printable(f"{action} {args}".strip(), NAME_LIMIT), "bold"),
            " → ",
            (printable(outcome, NAME_LIMIT), OUTCOME_STYLES.get(outcome, "yellow")),
        )
        parts.append(head)
        parts.append(fix)
        summary = printable(hit.get("summary") or "", TEXT_LIMIT)
        if summary:
            parts.append(Text(f"   {summary}", style="dim", overflow="ellipsis", no_wrap=True))
    return Group(*parts)


class MemoryHits(Static):
    BORDER_TITLE = "memory"

    def __init__(self, **kwargs: Any) -> None:
        self._renderable = hits_renderable(None)
        super().__init__(self._renderable, **kwargs)
        self._shown: tuple[str, str] | None = None

    def show(self, incident: Incident | None) -> None:
        key = (incident.id, repr(incident.memory_hits)) if incident else None
        if key == self._shown:
            return
        self._shown = key
        self._renderable = hits_renderable(incident)
        self.update(self._renderable, layout=False)  # the pane's size is set by the layout

    @property
    def text(self) -> str:
        return plain_text(self._renderable, max(20, self.size.width or 60))
