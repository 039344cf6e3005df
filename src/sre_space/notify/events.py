"""What a notification is about: one change to one incident, for one sink.

Kept free of the rest of sre-space so the incident log can import the
outbox (which needs this) without an import cycle.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

# Besides the statuses an incident moves to: a person's ack, a person's note.
ACKNOWLEDGED, NOTE = "acknowledged", "note"
TEST_EVENT = "test"  # `sre-space notify test`


@dataclass(frozen=True)
class Notification:
    """One message: the incident as it was when the change happened."""

    key: str  # unique per (incident, change, sink): the webhook's notification id
    event: str  # the status it moved to, acknowledged, note, or test
    incident: dict[str, Any]  # the incident JSON (``sre-space incidents ID --json``)
    by: str = ""
    why: str = ""
    ts: float = field(default_factory=time.time)

    @property
    def incident_id(self) -> str:
        return str(self.incident.get("id") or "")
