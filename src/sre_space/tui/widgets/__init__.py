"""The cockpit's panes and dialogs, one per module."""

from sre_space.tui.widgets.dialogs import ConfirmScreen, FaultScreen
from sre_space.tui.widgets.help_screen import HelpScreen
from sre_space.tui.widgets.incident_table import IncidentTable
from sre_space.tui.widgets.memory_hits import MemoryHits
from sre_space.tui.widgets.span_details import SpanDetails
from sre_space.tui.widgets.squad_terminal import SquadTerminal
from sre_space.tui.widgets.status_bar import StatusBar
from sre_space.tui.widgets.waterfall import Waterfall

__all__ = [
    "ConfirmScreen",
    "FaultScreen",
    "HelpScreen",
    "IncidentTable",
    "MemoryHits",
    "SpanDetails",
    "SquadTerminal",
    "StatusBar",
    "Waterfall",
]
