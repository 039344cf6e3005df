"""The outbox: notifications owed, in the incident log's own database (SQLite or PostgreSQL).

Two tables. ``notify_events`` holds each change people may be told about (a
status change, a person's ack or note) with the incident as it was then; the
incident log writes it in the same ``BEGIN IMMEDIATE`` transaction as the
change (:func:`enqueue`), keyed by the incident, the event and its audit
entry's time, so a change is recorded once and never lost to a crash. The
mind's worker fans each event out to the sinks that want it, one
``notify_outbox`` row per (event, sink) (``UNIQUE``: a second fan-out adds
nothing), and marks the event done, so a sink added later does not get old
news. Rows go ``pending`` -> ``sent`` (the sink answered 2xx) or ``failed``
(it refused the message, or a day of retries went by).

Both tables are created with ``CREATE TABLE IF NOT EXISTS`` next to the
incident log's, so an older home takes them on its first open.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sre_space.notify.events import ACKNOWLEDGED, NOTE, Notification
from sre_space.state.db import Db, open_db

if TYPE_CHECKING:
    from sre_space.notify.sinks import Sink

SCHEMA = """
CREATE TABLE IF NOT EXISTS notify_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    incident_id TEXT NOT NULL,
    event TEXT NOT NULL,
    by TEXT NOT NULL DEFAULT '',
    why TEXT NOT NULL DEFAULT '',
    ts REAL NOT NULL,
    doc TEXT NOT NULL,
    fanned_out INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS notify_events_todo ON notify_events(fanned_out);
CREATE TABLE IF NOT EXISTS notify_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_seq INTEGER NOT NULL,
    sink TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    event TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    next_at REAL NOT NULL,
    done_at REAL,
    answer TEXT NOT NULL DEFAULT '',
    UNIQUE(event_seq, sink)
);
CREATE INDEX IF NOT EXISTS notify_outbox_due ON notify_outbox(state, next_at);
"""

PENDING, SENT, FAILED = "pending", "sent", "failed"
STATES = (PENDING, SENT, FAILED)
KEEP_S = 30 * 86400.0  # delivered and failed rows are kept a month, for `notify list`


def event_of(step: dict[str, Any]) -> tuple[str, str] | None:
    """(event, why) for an audit entry people may be told about, else None."""
    kind = step.get("step")
    if kind == "status" and step.get("to"):
        return str(step["to"]), str(step.get("why") or "")
    if kind == "ack":
        return ACKNOWLEDGED, ""
    if kind == "note":
        return NOTE, str(step.get("text") or "")
    return None


def enqueue(db: Db, incident: dict[str, Any], step: dict[str, Any]) -> None:
    """Record the change ``step`` made to ``incident`` (inside the caller's transaction).

    Idempotent: the same audit entry of the same incident is recorded once.
    """
    found = event_of(step)
    if found is None:
        return
    event, why = found
    key = f"{incident['id']}|{event}|{step.get('ts')!r}"
    db.execute(
        "INSERT INTO notify_events(key, incident_id, event, by, why, ts, doc) "
        "VALUES (?,?,?,?,?,?,?) ON CONFLICT DO NOTHING",
        (
            key,
            incident["id"],
            event,
            str(step.get("by") or ""),
            why,
            float(step.get("ts") or time.time()),
            json.dumps(incident, default=str),
        ),
    )


@dataclass(frozen=True)
class Row:
    id: int
    sink: str
    attempts: int
    created_at: float
    notification: Notification


class Outbox:
    """The worker's and ``notify list``'s view of the two tables (its own connection)."""

    def __init__(self, path: Any) -> None:
        self._db = open_db(path, (SCHEMA,))  # a SQLite file, or the shared state's StateUrl

    def close(self) -> None:
        self._db.close()

    def fan_out(self, sinks: dict[str, Sink], now: float, max_age_s: float) -> int:
        """One row per (event, sink) that the sink ``takes``; how many rows were added.

        Events older than ``max_age_s`` go to nobody: a day-old page helps no one.
        """
        added = 0
        # A plain read first: most looks find nothing, and need not take the write lock.
        if self._db.execute("SELECT 1 FROM notify_events WHERE fanned_out=0 LIMIT 1").fetchone() is None:
            return 0
        with self._db.immediate():
            todo = self._db.execute(
                "SELECT seq, key, incident_id, event, by, why, ts, doc FROM notify_events "
                "WHERE fanned_out=0 ORDER BY seq"
            ).fetchall()
            for seq, key, incident_id, event, by, why, ts, doc in todo:
                if now - float(ts) <= max_age_s:
                    n = Notification(key, event, json.loads(doc), by, why, float(ts))
                    for sink, integration in sinks.items():
                        earlier = {
                            str(r[0])
                            for r in self._db.execute(
                                "SELECT event FROM notify_outbox WHERE sink=? AND incident_id=?",
                                (sink, incident_id),
                            )
                        }
                        if integration.takes(n, earlier):
                            cur = self._db.execute(
                                "INSERT INTO notify_outbox(event_seq, sink, incident_id, "
                                "event, created_at, next_at) VALUES (?,?,?,?,?,?) "
                                "ON CONFLICT DO NOTHING",
                                (seq, sink, incident_id, event, now, now),
                            )
                            added += cur.rowcount
                self._db.execute("UPDATE notify_events SET fanned_out=1 WHERE seq=?", (seq,))
        return added

    def due(self, now: float, limit: int = 100) -> list[Row]:
        """Pending rows whose time has come, each the oldest pending one of its (incident, sink):
        a resolve never overtakes the trigger it closes."""
        rows = self._db.execute(
            "SELECT o.id, o.sink, o.attempts, o.created_at, e.key, e.event, e.doc, e.by, e.why, e.ts "
            "FROM notify_outbox o JOIN notify_events e ON e.seq = o.event_seq "
            "WHERE o.state='pending' AND o.next_at <= ? AND o.id = ("
            "  SELECT MIN(p.id) FROM notify_outbox p WHERE p.state='pending' "
            "  AND p.sink=o.sink AND p.incident_id=o.incident_id) "
            "ORDER BY o.id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [
            Row(
                int(r[0]),
                str(r[1]),
                int(r[2]),
                float(r[3]),
                Notification(f"{r[4]}|{r[1]}", str(r[5]), json.loads(r[6]), str(r[7]), str(r[8]), float(r[9])),
            )
            for r in rows
        ]

    def settle(self, row_id: int, state: str, answer: str, now: float, next_at: float = 0.0) -> None:
        """After an attempt: sent, failed, or pending again until ``next_at``."""
        with self._db:
            self._db.execute(
                "UPDATE notify_outbox SET state=?, attempts=attempts+1, answer=?, next_at=?, "
                "done_at=? WHERE id=? AND state='pending'",
                (state, answer, next_at or now, None if state == PENDING else now, row_id),
            )

    def counts(self) -> dict[str, dict[str, int]]:
        """{sink: {pending, sent, failed}} over the outbox."""
        found: dict[str, dict[str, int]] = {}
        for sink, state, n in self._db.execute(
            "SELECT sink, state, COUNT(*) FROM notify_outbox GROUP BY 1, 2"
        ):
            found.setdefault(str(sink), dict.fromkeys(STATES, 0))[str(state)] = int(n)
        return found

    def rows(self, limit: int = 20) -> list[dict[str, Any]]:
        """The latest rows, newest first (their answers are redacted when written)."""
        cur = self._db.execute(
            "SELECT id, sink, incident_id, event, state, attempts, created_at, done_at, answer "
            "FROM notify_outbox ORDER BY id DESC LIMIT ?",
            (limit,),
        )
        names = [d[0] for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def prune(self, now: float) -> None:
        with self._db:
            self._db.execute(
                "DELETE FROM notify_outbox WHERE state<>'pending' AND done_at < ?", (now - KEEP_S,)
            )
            self._db.execute(
                "DELETE FROM notify_events WHERE fanned_out=1 AND ts < ? AND seq NOT IN "
                "(SELECT event_seq FROM notify_outbox)",
                (now - KEEP_S,),
            )
