"""Text from telemetry, made safe to print on an operator's terminal.

Span names, status messages and exception texts come from the systems being
watched; a hostile or broken one could embed terminal escape sequences (to
rewrite the screen, set the window title, or worse). Human output passes them
through ``printable``; JSON output escapes them by itself.
"""

from __future__ import annotations

import re

_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with control characters (ESC, CR, newlines, C1 codes) shown as ``?``; tabs kept."""
    return _CONTROL.sub("?", text)


def printable_lines(text: str) -> str:
    """``printable`` for each line of a multi-line rendering."""
    return "\n".join(printable(line) for line in text.split("\n"))
