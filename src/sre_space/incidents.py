"""The incident log: incidents and squad events in SQLite (WAL).

The acting mind is the only writer; the CLI and the TUI read it from other
processes, which WAL makes safe while the mind writes.
"""

from __future__ import annotations

import builtins
import json
import sqlite3
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sre_space.safe_text import printable

ACTIVE = ("open", "diagnosing", "mitigating")
# mitigated -> degraded: the fix holds but the cause still shows, weaker (the fault
# is still there); either resolves after a quiet period, as an escalated one does.
STATUSES = (*ACTIVE, "mitigated", "degraded", "resolved", "escalated")
WATCHED = ("mitigated", "degraded", "escalated")  # the squad is done; Scout still watches

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

AWAITING_APPROVAL = "awaiting_approval"  # remediation.outcome while policy waits for a human


@dataclass
class Incident:
    id: str
    status: str
    detected_at: float
    signature: str = ""
    root_cause: dict[str, Any] = field(default_factory=dict)
    remediation: dict[str, Any] = field(default_factory=dict)
    memory_hits: list[dict[str, Any]] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    hardening: list[dict[str, Any]] = field(default_factory=list)
    mitigated_at: float | None = None
    resolved_at: float | None = None
    first_error_at: float | None = None
    recurs: str | None = None  # an earlier incident of the same signature
    residual: list[dict[str, Any]] = field(default_factory=list)  # what still shows, degraded

    @property
    def ttd_s(self) -> float | None:
        if self.first_error_at is None:
            return None
        return round(max(0.0, self.detected_at - self.first_error_at), 2)

    @property
    def ttm_s(self) -> float | None:
        if self.mitigated_at is None:
            return None
        return round(self.mitigated_at - self.detected_at, 2)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["ttd_s"] = self.ttd_s
        doc["ttm_s"] = self.ttm_s
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Incident:
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in doc.items() if k in known})


@dataclass(frozen=True)
class Event:
    seq: int
    incident_id: str | None
    ts: float
    agent: str
    kind: str
    message: str
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        when = datetime.fromtimestamp(self.ts, UTC).strftime("%H:%M:%S")
        prefix = f"[{self.incident_id}] " if self.incident_id else ""
        return f"{when} {self.agent:<6} {prefix}{printable(self.message)}"


class IncidentLog:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()

    def close(self) -> None:
        self._db.close()

    def new_id(self, now: float | None = None) -> str:
        day = datetime.fromtimestamp(now or time.time(), UTC).strftime("%Y%m%d")
        with self._lock:
            row = self._db.execute(
                "SELECT COUNT(*) FROM incidents WHERE id LIKE ?", (f"INC-{day}-%",)
            ).fetchone()
        return f"INC-{day}-{int(row[0]) + 1:04d}"

    def save(self, incident: Incident, why: str = "", by: str = "squad") -> None:
        """Store the incident; a change of status goes to its audit trail and the events.

        Every transition, whoever makes it (Scout, the squad, a human), is
        recorded here, once: ``why`` says what caused it, ``by`` who made it.
        """
        with self._lock:
            row = self._db.execute(
                "SELECT status FROM incidents WHERE id=?", (incident.id,)
            ).fetchone()
        before = str(row[0]) if row else None
        if before != incident.status:
            step = {"ts": time.time(), "step": "status", "from": before, "to": incident.status}
            incident.audit.append({**step, "why": why} if why else step)
        self._write(incident)
        if before != incident.status:
            arrow = f"{before} -> {incident.status}" if before else incident.status
            self.emit(
                "scout" if before is None else by,
                f"status {arrow}" + (f": {why}" if why else ""),
                incident_id=incident.id,
                kind="status",
                data={"from": before, "to": incident.status},
            )

    def _write(self, incident: Incident) -> None:
        with self._lock, self._db:
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
            cur = self._db.execute(
                "INSERT INTO events(incident_id, ts, agent, kind, message, data) VALUES (?,?,?,?,?,?)",
                (incident_id, ts, agent, kind, message, payload),
            )
        return Event(int(cur.lastrowid or 0), incident_id, ts, agent, kind, message, data or {})

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
