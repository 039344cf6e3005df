"""The incident log: incidents and squad events in SQLite (WAL), or PostgreSQL (``state_url``).

The acting mind writes the squad's work; people answer from other processes
(the CLI's ``ack``, ``resolve`` and ``note``, the cockpit). Every write of an
incident reads the stored one and writes it back in one ``BEGIN IMMEDIATE``
transaction, so neither loses the other's: the audit trail only grows, and
a person's answers (``acknowledged_*``, ``resolved_by``, ``resolution_note``,
a resolve) are kept when the mind saves a copy it read before them.

This module holds :class:`IncidentLog` (the tables, the writes, the reads and
people's answers); the records it stores, :class:`Incident` and
:class:`Event`, and :func:`keep_people` are in :mod:`sre_space.incident_record`,
re-exported here.

Over 300 lines on purpose: ``IncidentLog`` is the one door to the log's
tables. Every write of an incident goes through one transaction rule
(``_immediate``, ``_answer``); split into a reader and a writer, that rule
would have two homes.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sre_space.errors import UsageError
from sre_space.incident_record import PEOPLE_FIELDS as PEOPLE_FIELDS
from sre_space.incident_record import Event as Event
from sre_space.incident_record import Incident as Incident
from sre_space.incident_record import keep_people as keep_people
from sre_space.notify import outbox as notify_outbox
from sre_space.safe_text import NAME_LIMIT, TEXT_LIMIT
from sre_space.state.db import open_db
from sre_space.state.url import StateUrl

# Re-exported for scripts and tests that read them here; the words are the vocabulary's.
from sre_space.vocabulary import ACTIVE as ACTIVE
from sre_space.vocabulary import AWAITING_APPROVAL as AWAITING_APPROVAL
from sre_space.vocabulary import RESOLVED
from sre_space.vocabulary import STATUSES as STATUSES

if TYPE_CHECKING:
    from sre_space.metrics import Metrics

_SCHEMA = """
CREATE TABLE IF NOT EXISTS incidents (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    signature TEXT NOT NULL DEFAULT '',
    detected_at REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    incident_id TEXT,
    ts REAL NOT NULL,
    agent TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_incident ON events(incident_id);
CREATE TABLE IF NOT EXISTS decisions (
    incident_id TEXT PRIMARY KEY,
    decision TEXT NOT NULL,
    by TEXT NOT NULL,
    ts REAL NOT NULL
);
"""

PERSON = "human"  # the agent of a person's events in the timeline (the name is in the message)


class IncidentLog:
    """The incident table and its event log, through one connection and one lock.

    Over 300 lines on purpose: a status change and the event that tells it are
    one transaction (SQLite or PostgreSQL), and so are people's answers (ack,
    note, resolve); split into readers and writers, each half would need the
    other's lock and connection.
    """

    def close(self) -> None:
        self._db.close()

    def new_id(self, now: float | None = None) -> str:
        day = datetime.fromtimestamp(now or time.time(), UTC).strftime("%Y%m%d")
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM incidents WHERE id LIKE ?", (f"INC-{day}-%",)
            ).fetchone()
        return f"INC-{day}-{int(row[0]) + 1:04d}"

    def __init__(self, path: Path | StateUrl, metrics: Metrics | None = None) -> None:
        # A SQLite file (notifications owed beside the changes), or the shared
        # PostgreSQL database (state/: its schema migrated to the same tables).
        self._db = open_db(path, (_SCHEMA, notify_outbox.SCHEMA))
        self._lock = threading.Lock()
        self.metrics = metrics  # the hosting mind's, counted as incidents are saved
        self.notified: Callable[[], None] | None = None  # the mind's notifier, woken on a change

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[None]:
        """One write transaction that starts by taking SQLite's write lock (other
        processes wait), so what is read in it is still what is stored when it writes."""
        with self._lock, self._db.immediate():
            yield

    def _stored(self, incident_id: str) -> Incident | None:
        row = self._db.execute("SELECT doc FROM incidents WHERE id=?", (incident_id,)).fetchone()
        return Incident.from_json(json.loads(row[0])) if row else None

    def save(self, incident: Incident, why: str = "", by: str = "squad") -> None:
        """Store the incident; a change of status goes to its audit trail and the events.

        Every transition, whoever makes it (Scout, the squad, a human), is
        recorded here, once: ``why`` says what caused it, ``by`` who made it.
        What people did meanwhile is kept (see :func:`keep_people`), and
        ``incident`` is updated with it, so its holder sees it too.
        """
        with self._immediate():
            stored = self._stored(incident.id)
            if stored is not None:
                keep_people(incident, stored)
            before = stored.status if stored else None
            step: dict[str, Any] | None = None
            if before != incident.status:
                step = {
                    "ts": time.time(),
                    "step": "status",
                    "from": before,
                    "to": incident.status,
                    "by": by,
                }
                step = {**step, "why": why} if why else step
                incident.audit.append(step)
            self._write(incident)
            if step is not None:  # in the same transaction: the change and its notification
                notify_outbox.enqueue(self._db, incident.to_json(), step)
        if step is not None and self.notified is not None:
            self.notified()
        if self.metrics is not None:
            self._count(stored, incident)
        if before != incident.status:
            arrow = f"{before} -> {incident.status}" if before else incident.status
            self.emit(
                "scout" if before is None else by,
                f"status {arrow}" + (f": {why}" if why else ""),
                incident_id=incident.id,
                kind="status",
                data={"from": before, "to": incident.status},
            )

    def _count(self, before: Incident | None, after: Incident) -> None:
        """What this save recorded for the first time: TTD, TTM, an action's outcome."""
        metrics = self.metrics
        assert metrics is not None
        if after.ttd_s is not None and (before is None or before.ttd_s is None):
            metrics.detected(after.ttd_s)
        if after.ttm_s is not None and (before is None or before.ttm_s is None):
            metrics.mitigated(after.ttm_s)
        outcome = str(after.remediation.get("outcome") or "")
        if outcome != str((before.remediation if before else {}).get("outcome") or ""):
            metrics.outcome(str(after.remediation.get("action") or ""), outcome)

    def _write(self, incident: Incident) -> None:
        """Write the incident (the caller holds ``_immediate``)."""
        self._db.execute(
            "INSERT INTO incidents(id, status, signature, detected_at, doc) VALUES (?,?,?,?,?) "
            "ON CONFLICT(id) DO UPDATE SET status=excluded.status, "
            "signature=excluded.signature, doc=excluded.doc",
            (
                incident.id,
                incident.status,
                incident.signature,
                incident.detected_at,
                json.dumps(incident.to_json()),
            ),
        )

    # --- people's answers --------------------------------------------------------

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        """A person has the incident. The first one is ``acknowledged_by``; every one is audited.

        :class:`UsageError` for an unknown incident or a resolved one.
        """
        by = _person(by)

        def ack(incident: Incident, now: float) -> str:
            if incident.status == RESOLVED:
                raise UsageError(f"{incident.id} is already resolved{_by(incident)}")
            if incident.acknowledged_by is None:
                incident.acknowledged_by, incident.acknowledged_at = by, now
            incident.audit.append({"ts": now, "step": "ack", "by": by})
            return f"acknowledged by {by}"

        return self._answer(incident_id, by, ack)

    def note(self, incident_id: str, text: str, by: str) -> Incident:
        """A person's note in the audit trail (resolved incidents take notes too)."""
        by, text = _person(by), _note_text(text, required=True)

        def add(incident: Incident, now: float) -> str:
            incident.audit.append({"ts": now, "step": "note", "by": by, "text": text})
            return f"note by {by}: {text}"

        return self._answer(incident_id, by, add)

    def resolve(self, incident_id: str, by: str, note: str = "") -> Incident:
        """A person resolves the incident: status ``resolved``, ``resolved_by``, the note kept.

        Final: the mind's later saves keep it (:func:`keep_people`), and Scout
        stops watching it. :class:`UsageError` if it is already resolved.
        """
        by, note = _person(by), _note_text(note, required=False)

        def close(incident: Incident, now: float) -> str:
            if incident.status == RESOLVED:
                raise UsageError(f"{incident.id} is already resolved{_by(incident)}")
            before = incident.status
            incident.status = RESOLVED
            incident.resolved_at = now
            incident.resolved_by = by
            incident.resolution_note = note or None
            step: dict[str, Any] = {
                "ts": now,
                "step": "status",
                "from": before,
                "to": RESOLVED,
                "by": by,
            }
            incident.audit.append({**step, "why": note} if note else step)
            return f"status {before} -> resolved by {by}" + (f": {note}" if note else "")

        return self._answer(incident_id, by, close, kind="status", data={"to": RESOLVED, "by": by})

    def _answer(
        self,
        incident_id: str,
        by: str,
        change: Callable[[Incident, float], str],
        kind: str = "human",
        data: dict[str, Any] | None = None,
    ) -> Incident:
        with self._immediate():
            incident = self._stored(incident_id)
            if incident is None:
                raise UsageError(f"no incident {incident_id!r}")
            before = incident.status
            message = change(incident, time.time())
            self._write(incident)
            notify_outbox.enqueue(self._db, incident.to_json(), incident.audit[-1])
        if self.notified is not None:
            self.notified()
        extra = {"from": before, **data} if data else {"by": by}
        self.emit(PERSON, message, incident_id=incident_id, kind=kind, data=extra)
        return incident

    def annotate(self, incident_id: str, entry: dict[str, Any], key: str = "") -> Incident | None:
        """Add ``entry`` to an incident's audit trail, in one transaction, nothing else changed.

        For steps from outside the squad (an alert): the status and fields
        are the stored ones, not those of a copy read earlier. An entry with a
        ``key`` the trail already has is not added twice. None if no such incident.
        """
        with self._immediate():
            incident = self._stored(incident_id)
            if incident is None:
                return None
            if not key or all(a.get("key") != key for a in incident.audit):
                incident.audit.append(entry)
                self._write(incident)
        return incident

    def resolved_by_people(self, incident_ids: builtins.list[str]) -> set[str]:
        """Which of these incidents a person resolved (the mind stops watching them)."""
        if not incident_ids:
            return set()
        marks = ",".join("?" for _ in incident_ids)
        with self._lock:
            rows = self._db.execute(
                f"SELECT id FROM incidents WHERE status='resolved' AND id IN ({marks}) "
                "AND json_extract(doc, '$.resolved_by') IS NOT NULL",
                tuple(incident_ids),
            ).fetchall()
        return {str(r[0]) for r in rows}

    def counts(self) -> builtins.list[tuple[str, str, int]]:
        """(status, fault class, how many) over the whole log, for the metrics."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status, COALESCE(json_extract(doc, '$.root_cause.fault_class'), ''), "
                "COUNT(*) FROM incidents GROUP BY 1, 2"
            ).fetchall()
        return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]

    def get(self, incident_id: str) -> Incident | None:
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM incidents WHERE id=?", (incident_id,)
            ).fetchone()
        return Incident.from_json(json.loads(row[0])) if row else None

    def list(self, limit: int = 50, status: str | None = None) -> builtins.list[Incident]:
        query = "SELECT doc FROM incidents"
        args: tuple[Any, ...] = ()
        if status:
            query += " WHERE status=?"
            args = (status,)
        query += " ORDER BY detected_at DESC LIMIT ?"
        with self._lock:
            rows = self._db.execute(query, (*args, limit)).fetchall()
        return [Incident.from_json(json.loads(r[0])) for r in rows]

    def active(self) -> builtins.list[Incident]:
        marks = ",".join("?" for _ in ACTIVE)
        with self._lock:
            rows = self._db.execute(
                f"SELECT doc FROM incidents WHERE status IN ({marks}) ORDER BY detected_at", ACTIVE
            ).fetchall()
        return [Incident.from_json(json.loads(r[0])) for r in rows]

    def emit(
        self,
        agent: str,
        message: str,
        *,
        incident_id: str | None = None,
        kind: str = "step",
        data: dict[str, Any] | None = None,
    ) -> Event:
        ts = time.time()
        payload = json.dumps(data or {}, default=str)
        with self._lock, self._db:
            row = self._db.execute(
                "INSERT INTO events(incident_id, ts, agent, kind, message, data) "
                "VALUES (?,?,?,?,?,?) RETURNING seq",
                (incident_id, ts, agent, kind, message, payload),
            ).fetchone()
        return Event(int(row[0]), incident_id, ts, agent, kind, message, data or {})

    def decide(self, incident_id: str, decision: str, by: str = "cli") -> None:
        """Record a human's answer to a pending remediation (approve or deny)."""
        if decision not in ("approve", "deny"):
            raise ValueError(f"decision must be approve or deny, not {decision!r}")
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO decisions(incident_id, decision, by, ts) VALUES (?,?,?,?) "
                "ON CONFLICT(incident_id) DO UPDATE SET decision=excluded.decision, "
                "by=excluded.by, ts=excluded.ts",
                (incident_id, decision, by, time.time()),
            )

    def decision(self, incident_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT decision FROM decisions WHERE incident_id=?", (incident_id,)
            ).fetchone()
        return str(row[0]) if row else None

    def awaiting_approval(self) -> builtins.list[Incident]:
        return [i for i in self.active() if i.remediation.get("outcome") == AWAITING_APPROVAL]

    def earlier(self, incident: Incident) -> Incident | None:
        """The latest incident before this one with the same signature, if any."""
        if not incident.signature:
            return None
        with self._lock:
            row = self._db.execute(
                "SELECT doc FROM incidents WHERE signature=? AND id<>? AND detected_at<? "
                "ORDER BY detected_at DESC LIMIT 1",
                (incident.signature, incident.id, incident.detected_at),
            ).fetchone()
        return Incident.from_json(json.loads(row[0])) if row else None

    def events_of(self, incident_id: str) -> builtins.list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, incident_id, ts, agent, kind, message, data FROM events "
                "WHERE incident_id=? ORDER BY seq",
                (incident_id,),
            ).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]

    def since(self, ts: float) -> builtins.list[Incident]:
        with self._lock:
            rows = self._db.execute(
                "SELECT doc FROM incidents WHERE detected_at >= ? ORDER BY detected_at", (ts,)
            ).fetchall()
        return [Incident.from_json(json.loads(r[0])) for r in rows]

    def events(self, after: int = 0, limit: int = 1000) -> builtins.list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, incident_id, ts, agent, kind, message, data FROM events "
                "WHERE seq > ? ORDER BY seq LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Event(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6])) for r in rows]


def person_from_env() -> str:
    """Who answers when nobody says: the login name (``$USER``), else "cli"."""
    return os.environ.get("USER") or "cli"


def _person(by: str) -> str:
    name = (by or "").strip()
    if not name:
        raise UsageError("--by needs a name")
    if len(name) > NAME_LIMIT:
        raise UsageError(f"--by is at most {NAME_LIMIT} characters")
    return name


def _note_text(text: str, *, required: bool) -> str:
    text = (text or "").strip()
    if required and not text:
        raise UsageError("a note needs some text")
    if len(text) > TEXT_LIMIT:
        raise UsageError(f"a note is at most {TEXT_LIMIT} characters (got {len(text)})")
    return text


def _by(incident: Incident) -> str:
    return f" (by {incident.resolved_by})" if incident.resolved_by else ""
