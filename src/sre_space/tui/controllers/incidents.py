"""The incidents pane and the memory hits beside it: which incident the cockpit shows."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text

from sre_space.incidents import Incident
from sre_space.safe_text import NAME_LIMIT, printable
from sre_space.tui.widgets import IncidentTable, MemoryHits
from sre_space.vocabulary import ACTIVE, AWAITING_APPROVAL


def awaiting(incident: Incident) -> bool:
    """A remediation waits for a human's approve or deny."""
    return incident.status in ACTIVE and incident.remediation.get("outcome") == AWAITING_APPROVAL


class IncidentsController:
    def __init__(
        self,
        table: IncidentTable,
        memory: MemoryHits,
        on_select: Callable[[str, bool], None],
        on_change: Callable[[Incident], None],
    ) -> None:
        self.table = table
        self.memory = memory
        self._on_select = on_select  # a new incident was chosen (focus the trace or not)
        self._on_change = on_change  # the chosen incident was updated by the mind
        self.incidents: dict[str, Incident] = {}
        self.selected_id: str | None = None

    @property
    def selected(self) -> Incident | None:
        """The incident the panes show (chosen with Enter)."""
        return self.incidents.get(self.selected_id) if self.selected_id else None

    @property
    def target(self) -> Incident | None:
        """What approve and deny act on: the selected incident, else the one under the cursor."""
        incident = self.selected
        if incident is None and self.table.selected_id:
            incident = self.incidents.get(self.table.selected_id)
        return incident

    def awaiting_ids(self) -> list[str]:
        return sorted(i.id for i in self.incidents.values() if awaiting(i))

    def update(self, incidents: list[Incident]) -> None:
        """New or changed incidents from the log."""
        if not incidents:
            return
        self.table.show(incidents)
        self.incidents.update((i.id, i) for i in incidents)
        if self.selected_id is None:  # pick one on first sight: one waiting for a human first
            waiting = [i for i in incidents if awaiting(i)]
            self.select((waiting or incidents)[0].id, focus=False)
            return
        incident = self.selected
        if incident is not None:
            self.memory.show(incident)
            self._on_change(incident)

    def select(self, incident_id: str, focus: bool = True) -> None:
        self.selected_id = incident_id
        self.memory.show(self.selected)
        self.memory.border_title = Text(f"memory · {printable(incident_id, NAME_LIMIT)}")
        self._on_select(incident_id, focus)

    def select_under_cursor(self) -> None:
        if self.table.selected_id:
            self.select(self.table.selected_id)

    def set_filter(self, text: str) -> None:
        self.table.set_filter(text)
        shown = printable(text.strip(), NAME_LIMIT)
        self.table.border_subtitle = Text(f"/{shown}" if shown else "")
