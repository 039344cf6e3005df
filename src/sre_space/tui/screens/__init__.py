"""The cockpit's screens, one per module: the cockpit itself and the dialogs over it."""

from sre_space.tui.screens.confirm import ConfirmScreen
from sre_space.tui.screens.faults import FaultScreen
from sre_space.tui.screens.help import HelpScreen

__all__ = ["ConfirmScreen", "FaultScreen", "HelpScreen"]
