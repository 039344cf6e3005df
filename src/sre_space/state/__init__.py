"""Where the state that must outlive a mind lives: SQLite under the home, or PostgreSQL.

The incident log, its audit trail and events, the notification outbox, the
squad's LangGraph checkpoints and (with PostgreSQL) the acting mind's lease.
``state_url`` unset: SQLite files under ``$SRE_SPACE_HOME``, as always.
``state_url = "postgresql://..."``: one database that minds and commands on
any machine share (``docs/scaling.md``).

    url          the URL, parsed and checked; printed only redacted
    db           the seam: one small interface both engines implement
    migrations   PostgreSQL's schema, versioned (older upgraded, newer refused)
    checkpoints  the squad's checkpointer on either engine
    lease        one acting mind among those sharing a database
"""

from __future__ import annotations

from pathlib import Path

from sre_space.config import Settings
from sre_space.paths import Paths
from sre_space.state.url import StateUrl

Where = Path | StateUrl  # the incident log's SQLite file, or the shared database


def where(settings: Settings) -> Where:
    """The incident log of these settings: ``state_url`` if set, else the home's SQLite file."""
    if settings.state_url:
        return StateUrl.parse(settings.state_url.get_secret_value())
    return Paths(settings.home).incidents_db


def exists(place: Where) -> bool:
    """Whether there is a log to read (a shared database always is; a file once written)."""
    return isinstance(place, StateUrl) or place.exists()


def describe(place: Where) -> str:
    """For messages: the file, or the URL without its password."""
    return place.redacted if isinstance(place, StateUrl) else str(place)
