"""Panes of the cockpit: the squad terminal, the incident table, the status line."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable, RichLog, Static

from sre_space.incidents import Event, Incident

AGENT_STYLE = {
    "scout": "bold cyan",
    "brain": "bold magenta",
    "fixer": "bold yellow",
    "jules": "bold green",
    "mind": "dim",
}
STATUS_STYLE = {
    "open": "red",
    "diagnosing": "magenta",
    "mitigating": "yellow",
    "mitigated": "green",
    "resolved": "dim green",
    "escalated": "bold red",
}


class SquadTerminal(RichLog):
    """Every squad step as it happens; follows the tail unless told not to."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(wrap=True, markup=False, max_lines=5000, **kwargs)
        self.border_title = "squad"

    def add(self, event: Event) -> None:
        line = Text(event.line())
        style = AGENT_STYLE.get(event.agent, "")
        start = 9  # after "HH:MM:SS "
        line.stylize(style, start, start + len(event.agent))
        if event.kind == "error":
            line.stylize("red")
        self.write(line)


class IncidentTable(DataTable[Any]):
    COLUMNS = ("id", "status", "root cause", "class", "fix", "outcome", "TTD", "TTM")

    def on_mount(self) -> None:
        self.border_title = "incidents"
        self.cursor_type = "row"
        for col in self.COLUMNS:
            self.add_column(col, key=col)

    def show(self, incidents: list[Incident]) -> None:
        """Update rows in place so the cursor keeps its place."""
        for inc in incidents:
            rc, rem = inc.root_cause, inc.remediation
            params = " ".join(f"{k}={v}" for k, v in (rem.get("params") or {}).items())
            cells = (
                inc.id,
                Text(inc.status, style=STATUS_STYLE.get(inc.status, "")),
                f"{rc.get('service', '?')} {rc.get('operation', '')}".strip(),
                rc.get("fault_class", "-"),
                f"{rem.get('action', '-')} {params}".strip(),
                rem.get("outcome", "-"),
                "-" if inc.ttd_s is None else f"{inc.ttd_s:.1f}s",
                "-" if inc.ttm_s is None else f"{inc.ttm_s:.1f}s",
            )
            if inc.id in self.rows:
                for col, value in zip(self.COLUMNS, cells, strict=True):
                    self.update_cell(inc.id, col, value)
            else:
                self.add_row(*cells, key=inc.id)


class StatusLine(Static):
    def show(self, doc: dict[str, Any]) -> None:
        parts = [f"mind: {doc.get('mode', '?')}", f"lab: {doc.get('lab', '?')}"]
        if "spans_per_s" in doc:
            parts.append(f"{doc['spans_per_s']:.0f} spans/s")
        if "policy" in doc:
            parts.append(f"policy: {doc['policy']}")
        parts.append(f"open incidents: {doc.get('open', 0)}")
        parts.append("follow" if doc.get("follow") else "paused")
        self.update("  │  ".join(parts))
