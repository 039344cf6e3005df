"""While the cockpit is on screen, every log record goes to a file, never over the screen."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sre_space.safe_text import printable_lines


class EscapingFormatter(logging.Formatter):
    """Records quote telemetry (a trace id, a mind's answer): a ``tail -f`` shows them escaped."""

    def format(self, record: logging.LogRecord) -> str:
        return printable_lines(super().format(record))


@contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Route every log record (and warning) to ``path``: nothing prints over the screen."""
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(
        EscapingFormatter("%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s")
    )
    for h in saved_handlers:
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        handler.close()
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
