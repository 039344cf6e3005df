"""The incidents: newest first, updated in place so the cursor stays on its incident."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import CellDoesNotExist

from sre_space.incidents import Incident
from sre_space.safe_text import NAME_LIMIT, printable
from sre_space.vocabulary import ACTIVE, AWAITING_APPROVAL, UNCLEAR, IncidentStatus

STATUS_STYLES: dict[IncidentStatus, str] = {
    "open": "bold red",
    "diagnosing": "magenta",
    "mitigating": "yellow",
    "mitigated": "green",
    "degraded": "yellow",
    "resolved": "dim green",
    "escalated": "bold red reverse",
}

# (key, label, width or None to fit the content)
COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("id", "id", None),
    ("status", "status", 10),
    ("cause", "root cause", 22),
    ("class", "fault", 11),
    ("fix", "fix", 18),
    ("outcome", "outcome", 9),
    ("ttd", "TTD", 6),
    ("ttm", "TTM", 6),
)


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}s"


def _cell(value: object) -> Text:
    """A cell from outside text: a ``Text`` (a plain ``str`` would be parsed as markup)."""
    return Text(printable(value, NAME_LIMIT))


def incident_cells(incident: Incident) -> tuple[Text, ...]:
    rc, rem = incident.root_cause, incident.remediation
    cause = " ".join(str(p) for p in (rc.get("service"), rc.get("operation")) if p) or "-"
    params = rem.get("params") or {}
    args = " ".join(f"{k}={v}" for k, v in params.items()) if isinstance(params, dict) else ""
    fix = " ".join(p for p in (str(rem.get("action") or "-"), args) if p)
    status = Text(printable(incident.status), style=STATUS_STYLES.get(incident.status, ""))
    if rem.get("outcome") == AWAITING_APPROVAL and incident.status in ACTIVE:
        status = Text("approve?", style="bold black on yellow")  # a human is needed: a / d
    return (
        _cell(incident.id),
        status,
        _cell(cause),
        _cell(rc.get("fault_class") or "-"),
        _cell(fix),
        # unclear: the SLO is back but the fix is not credited with it; stands out
        Text(printable(rem["outcome"]), style="yellow")
        if rem.get("outcome") == UNCLEAR
        else _cell(rem.get("outcome") or "-"),
        _cell(_secs(incident.ttd_s)),
        _cell(_secs(incident.ttm_s)),
    )


class IncidentTable(DataTable[Any]):
    BORDER_TITLE = "incidents"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(cursor_type="row", zebra_stripes=True, **kwargs)
        self._shown: dict[str, tuple[Text, ...]] = {}  # rows in the table
        self._known: dict[str, tuple[Text, ...]] = {}  # every incident read, filtered or not
        self._detected_at: dict[str, float] = {}
        self.filter_text = ""
        # Here, not on mount: the first poll may come back before this pane is mounted.
        for key, label, width in COLUMNS:
            self.add_column(label, key=key, width=width)

    def show(self, incidents: list[Incident]) -> None:
        """Add new incidents and update changed cells; never rebuild the table."""
        for incident in incidents:
            cells = self._known[incident.id] = incident_cells(incident)
            self._detected_at[cells[0].plain] = incident.detected_at  # the sort sees the cell
        self._sync()

    def set_filter(self, text: str) -> None:
        """Show only incidents with ``text`` in a cell (any case); empty shows all."""
        self.filter_text = text.strip()
        self._sync()

    def _matches(self, cells: tuple[Text, ...]) -> bool:
        needle = self.filter_text.casefold()
        return not needle or any(needle in cell.plain.casefold() for cell in cells)

    def _sync(self) -> None:
        added = False
        for incident_id, cells in self._known.items():
            before = self._shown.get(incident_id)
            if not self._matches(cells):
                if before is not None:
                    self.remove_row(incident_id)
                    del self._shown[incident_id]
                continue
            if before is None:
                self.add_row(*cells, key=incident_id)
                added = True
            elif before != cells:
                for (key, _, _), old, new in zip(COLUMNS, before, cells, strict=True):
                    if old != new:
                        self.update_cell(incident_id, key, new)
            self._shown[incident_id] = cells
        if added:
            self._newest_first()

    def _newest_first(self) -> None:
        selected = self.selected_id
        self.sort("id", key=lambda inc_id: self._detected_at.get(str(inc_id), 0.0), reverse=True)
        if selected is not None:
            self.move_cursor(row=self.get_row_index(selected), animate=False)

    @property
    def selected_id(self) -> str | None:
        """The incident under the cursor, if any."""
        if not self.row_count:
            return None
        try:
            key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key
        except CellDoesNotExist:
            return None
        return None if key.value is None else str(key.value)
