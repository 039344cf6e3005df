"""The cockpit's panes, one per module (dialogs and other screens: ``tui.screens``)."""

from sre_space.tui.widgets.incident_table import IncidentTable
from sre_space.tui.widgets.memory_hits import MemoryHits
from sre_space.tui.widgets.span_details import SpanDetails
from sre_space.tui.widgets.squad_terminal import SquadTerminal
from sre_space.tui.widgets.status_bar import StatusBar
from sre_space.tui.widgets.waterfall import Waterfall

__all__ = [
    "IncidentTable",
    "MemoryHits",
    "SpanDetails",
    "SquadTerminal",
    "StatusBar",
    "Waterfall",
]
