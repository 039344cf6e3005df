"""What the cockpit shows, read from the incident log in one go (no textual).

``Feed.read`` does every blocking read (SQLite, the lab's state file, the
hosted mind's stats) and is called from a worker thread, one read at a time;
the app only renders the ``Snapshot`` it returns.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sre_space import state
from sre_space.config import Settings
from sre_space.incidents import Event, Incident, IncidentLog

log = logging.getLogger(__name__)

BACKLOG = 500  # events shown when the cockpit opens on a long history
PAGE = 1000
INCIDENT_ROWS = 50


@dataclass(frozen=True)
class Snapshot:
    events: list[Event] = field(default_factory=list)
    skipped: int = 0  # older events not shown (beyond BACKLOG)
    incidents: list[Incident] = field(default_factory=list)
    open_incidents: int = 0
    lab_up: bool | None = None  # None: unknown (the lab module could not be read)
    mind: dict[str, Any] | None = None  # the hosted mind's status()
    error: str = ""


def _lab_reader() -> Callable[[Settings], Any] | None:
    try:
        from sre_space.lab.launcher import read_lab_state
    except Exception:  # the lab is optional to the cockpit: show "?" rather than fail
        log.exception("cannot import the lab launcher")
        return None
    return read_lab_state


class Feed:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db_path = state.where(settings)  # the home's SQLite file, or the shared state_url
        self._log: IncidentLog | None = None
        self._after = 0
        self._read_lab = _lab_reader()

    def read(self, mind: Any = None) -> Snapshot:
        """Everything new since the last read. Never raises: errors come back in the snapshot."""
        try:
            return self._read(mind)
        except Exception as exc:
            log.exception("reading the incident log")
            return Snapshot(error=f"{type(exc).__name__}: {exc}", lab_up=self._lab_up())

    def _read(self, mind: Any) -> Snapshot:
        lab_up = self._lab_up()
        status = mind.status() if mind is not None else None
        incident_log = self._open()
        if incident_log is None:  # no mind has written a log here yet
            return Snapshot(lab_up=lab_up, mind=status)
        events, skipped = self._new_events(incident_log)
        incidents = incident_log.list(INCIDENT_ROWS)
        open_count = len(incident_log.active())
        return Snapshot(events, skipped, incidents, open_count, lab_up, status)

    def _open(self) -> IncidentLog | None:
        # An observer does not create the log; it waits for the mind to.
        if self._log is None and state.exists(self.db_path):
            self._log = IncidentLog(self.db_path)
        return self._log

    def _new_events(self, incident_log: IncidentLog) -> tuple[list[Event], int]:
        tail: deque[Event] = deque(maxlen=BACKLOG)
        seen = 0
        while True:
            page = incident_log.events(self._after, PAGE)
            if not page:
                break
            self._after = page[-1].seq
            seen += len(page)
            tail.extend(page)
            if len(page) < PAGE:
                break
        return list(tail), seen - len(tail)

    def _lab_up(self) -> bool | None:
        if self._read_lab is None:
            return None
        try:
            return self._read_lab(self.settings) is not None
        except Exception:
            log.exception("reading the lab state")
            return None

    def close(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None
