"""Alerts in: Prometheus Alertmanager's and Grafana's webhooks (``POST /api/alerts``).

The mind's OTLP/HTTP listener takes the notifications (same port, bind and
bearer-token rules as the trace receiver, see ``telemetry/receiver.py``) and
hands them here:

- :func:`parse` reads one notification: Alertmanager's webhook (``version``
  "4") or Grafana's unified alerting webhook (the same shape with extra
  fields: ``orgId``, ``state``, ``title``, ``message``, and per alert
  ``values``, ``dashboardURL``...). What is neither is :class:`BadAlerts`
  (answered 400: Alertmanager does not retry a 4xx).
- :class:`AlertBox` keeps every alert in ``$SRE_SPACE_HOME/alerts.db``
  (SQLite, WAL), keyed by its fingerprint, status and start: Alertmanager
  sends a group again every ``repeat_interval`` and whenever the group
  changes, and such a repeat is recognised, by a restarted mind too, and
  dropped. The notification is answered once its alerts are stored (202);
  the mind takes them from the box on Scout's thread (:meth:`AlertBox.take`):
  the squad works on them asynchronously, and what a stopped mind left in
  the box is taken by the next one.

What an alert does (the mind's half is ``Lifecycle._alert_owner`` /
``Lifecycle._alert_opened`` in ``squad/lifecycle.py``):

- **firing**, about a service (the first of :data:`SERVICE_LABELS` among its
  labels): it joins the incident that already answers for that service
  (open, diagnosing, mitigating, or still watched after the squad), with an
  ``alert`` step in its audit trail; else it opens one (``source: alert``),
  which goes through the squad like one Scout opened: the Brain on the traces
  the mind has, the Fixer under policy, verify, Jules.
- **resolved**: an ``alert`` step in the audit trail of the incident it
  opened or joined. It does not close the incident: the traces and the
  squad's verification say whether the trouble is over (Scout resolves an
  incident after a quiet spell, a person with ``sre-space resolve``), and an
  alert also resolves for reasons that are not a recovery (a silence's rule
  edited, its series gone, Prometheus restarted).
- An alert that names no service opens nothing (nothing says where to
  look); the squad's event stream says so and which labels would do.

Label and annotation values are outside text: kept as they came in the box
and the incident's JSON, shown through ``safe_text``, never run, and never an
action's target (the Fixer acts on the Brain's root cause from the traces).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sre_space.incidents import IncidentLog
from sre_space.metrics import Metrics
from sre_space.safe_text import NAME_LIMIT, printable

log = logging.getLogger(__name__)

# Where an alert says which service it is about, in this order: the usual
# Prometheus, OpenTelemetry (service.name sanitised), job and Kubernetes labels.
SERVICE_LABELS = ("service", "service_name", "job", "app", "app_kubernetes_io_name", "container")
SOURCES = ("alertmanager", "grafana", "unknown")  # the source label of the metrics
FIRING, RESOLVED = "firing", "resolved"
AGENT = "alerts"  # the agent of alert events in the timeline and of the status it opens

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    source TEXT NOT NULL,
    group_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    service TEXT NOT NULL,
    doc TEXT NOT NULL,
    received_at REAL NOT NULL,
    taken_at REAL,
    incident_id TEXT,
    outcome TEXT
);
CREATE INDEX IF NOT EXISTS alerts_pending ON alerts(taken_at);
CREATE INDEX IF NOT EXISTS alerts_fingerprint ON alerts(fingerprint);
"""


class BadAlerts(ValueError):
    """Not an Alertmanager or Grafana notification: answered 400 with this message."""


@dataclass(frozen=True)
class Alert:
    source: str  # alertmanager | grafana
    group_key: str
    fingerprint: str
    status: str  # firing | resolved
    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: str = ""
    ends_at: str = ""
    generator_url: str = ""

    @property
    def name(self) -> str:
        return self.labels.get("alertname") or "unnamed"

    @property
    def service(self) -> str:
        return service_of(self.labels)

    @property
    def key(self) -> str:
        """One alert's one notification: a repeat has the same key, a new firing a new start."""
        return f"{self.fingerprint}|{self.status}|{self.starts_at}"

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "group_key": self.group_key,
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "generator_url": self.generator_url,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Alert:
        return cls(**{k: doc[k] for k in cls.__dataclass_fields__ if k in doc})


def service_of(labels: dict[str, str]) -> str:
    """The service an alert is about: the first of :data:`SERVICE_LABELS` it carries ("" if none)."""
    for name in SERVICE_LABELS:
        value = labels.get(name, "").strip()
        if value:
            return value
    return ""


def fingerprint_of(labels: dict[str, str]) -> str:
    """A fingerprint for an alert that comes without one: a hash of its sorted labels."""
    raw = json.dumps(sorted(labels.items()), ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def source_of(doc: dict[str, Any]) -> str:
    """Grafana's notification has ``orgId``/``state``/``title`` and version "1"; else Alertmanager's."""
    if "orgId" in doc or "state" in doc or str(doc.get("version", "")) == "1":
        return "grafana"
    return "alertmanager"


def _strings(value: Any, what: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadAlerts(f"{what} must be an object of strings")
    for k, v in value.items():
        if not isinstance(v, str):
            raise BadAlerts(f"{what}[{printable(k, 60)!r}] must be a string")
    return dict(value)


def _text(doc: dict[str, Any], key: str, where: str) -> str:
    value = doc.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise BadAlerts(f"{where}{key} must be a string")
    return value


def parse(body: bytes) -> list[Alert]:
    """The alerts of one notification; :class:`BadAlerts` if it is not one."""
    try:
        doc = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadAlerts(f"not JSON: {str(exc).splitlines()[0][:200]}") from None
    if not isinstance(doc, dict):
        raise BadAlerts("a notification is a JSON object")
    version = doc.get("version")
    if version is not None and str(version) not in ("4", "1"):
        raise BadAlerts(
            f"unknown webhook version {printable(version, 20)!r}: Alertmanager's is 4, Grafana's 1"
        )
    raw = doc.get("alerts")
    if not isinstance(raw, list):
        raise BadAlerts("no alerts list: not an Alertmanager or Grafana webhook notification")
    source = source_of(doc)
    group_key = _text(doc, "groupKey", "")
    alerts = []
    for i, item in enumerate(raw):
        where = f"alerts[{i}]."
        if not isinstance(item, dict):
            raise BadAlerts(f"alerts[{i}] must be an object")
        status = item.get("status") or doc.get("status")
        if status not in (FIRING, RESOLVED):
            raise BadAlerts(f"{where}status must be firing or resolved")
        labels = _strings(item.get("labels"), f"{where}labels")
        if not labels:
            raise BadAlerts(f"{where}labels are missing")
        alerts.append(
            Alert(
                source=source,
                group_key=group_key,
                fingerprint=_text(item, "fingerprint", where) or fingerprint_of(labels),
                status=str(status),
                labels=labels,
                annotations=_strings(item.get("annotations"), f"{where}annotations"),
                starts_at=_text(item, "startsAt", where),
                ends_at=_text(item, "endsAt", where),
                generator_url=_text(item, "generatorURL", where),
            )
        )
    return alerts


def _label_text(labels: dict[str, str], limit: int = 300) -> str:
    return printable(", ".join(f"{k}={v}" for k, v in sorted(labels.items())), limit)


def describe(alert: Alert) -> str:
    """One line about the alert (escaped): "alert X firing from alertmanager"."""
    verb = "firing from" if alert.status == FIRING else "resolved at"
    return f"alert {printable(alert.name, NAME_LIMIT)} {verb} {alert.source}"


def audit_step(alert: Alert, what: str) -> dict[str, Any]:
    """The ``alert`` step an incident's audit trail gets (the data as it came)."""
    return {
        "ts": time.time(),
        "step": "alert",
        "alert": alert.name,
        "status": alert.status,
        "source": alert.source,
        "service": alert.service,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": alert.starts_at,
        "fingerprint": alert.fingerprint,
        "group_key": alert.group_key,
        "key": alert.key,
        "reason": f"{describe(alert)}: {what}",
    }


# The mind's part: who answers for a service (an incident id or None), and open one.
Owner = Callable[[str], str | None]
Opener = Callable[[Alert, str, float], str]  # (alert, why, now) -> the new incident's id


class AlertBox:
    """The alerts received, in SQLite: what the mind has taken, and what it has not yet."""

    def __init__(self, path: Path, metrics: Metrics | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=10.0)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        self._lock = threading.Lock()
        self.metrics = metrics
        self.arrived = threading.Event()  # set when new alerts are stored

    def close(self) -> None:
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._db:
            yield self._db

    def _count(self, source: str, outcome: str, n: int = 1) -> None:
        if self.metrics is not None and n:
            self.metrics.alert(source, outcome, n)

    # --- the receiver's side ----------------------------------------------------

    def receive(self, body: bytes) -> tuple[int, dict[str, Any]]:
        """A notification's body: the HTTP status and the JSON to answer with.

        202 once stored (the squad works afterwards); 400 for what is not a
        notification; 500 when it could not be stored (Alertmanager retries).
        """
        try:
            alerts = parse(body)
        except BadAlerts as exc:
            self._count("unknown", "refused")
            return 400, {"error": str(exc)}
        source = alerts[0].source if alerts else "unknown"
        try:
            new = self.store(alerts)
        except sqlite3.Error as exc:
            log.error("alerts: could not store a notification: %s", exc)
            self._count(source, "failed", len(alerts))
            return 500, {"error": "the alerts could not be stored; retry"}
        self._count(source, "accepted", new)
        self._count(source, "repeat", len(alerts) - new)
        if new:
            self.arrived.set()
        return 202, {"status": "accepted", "alerts": len(alerts), "new": new}

    def store(self, alerts: list[Alert]) -> int:
        """Keep the alerts not seen before (by key); how many were new."""
        now = time.time()
        new = 0
        with self._tx() as db:
            for alert in alerts:
                cur = db.execute(
                    "INSERT OR IGNORE INTO alerts(key, source, group_key, fingerprint, status, "
                    "name, service, doc, received_at) VALUES (?,?,?,?,?,?,?,?,?)",
                    (
                        alert.key,
                        alert.source,
                        alert.group_key,
                        alert.fingerprint,
                        alert.status,
                        alert.name,
                        alert.service,
                        json.dumps(alert.to_json()),
                        now,
                    ),
                )
                new += cur.rowcount
        return new

    # --- the mind's side ----------------------------------------------------------

    def pending(self) -> list[tuple[int, Alert]]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, doc FROM alerts WHERE taken_at IS NULL ORDER BY seq"
            ).fetchall()
        return [(int(r[0]), Alert.from_json(json.loads(r[1]))) for r in rows]

    def _taken(self, seq: int, incident_id: str | None, outcome: str) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE alerts SET taken_at=?, incident_id=?, outcome=? WHERE seq=?",
                (time.time(), incident_id, outcome, seq),
            )

    def incident_of(self, fingerprint: str) -> str | None:
        """The incident the latest firing of this alert opened or joined."""
        with self._lock:
            row = self._db.execute(
                "SELECT incident_id FROM alerts WHERE fingerprint=? AND status=? "
                "AND incident_id IS NOT NULL ORDER BY seq DESC LIMIT 1",
                (fingerprint, FIRING),
            ).fetchone()
        return str(row[0]) if row else None

    def outcomes(self) -> list[dict[str, Any]]:
        """Every alert kept, oldest first, with what the mind made of it (tests, inspection)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT key, status, name, service, incident_id, outcome FROM alerts ORDER BY seq"
            ).fetchall()
        keys = ("key", "status", "name", "service", "incident_id", "outcome")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def take(self, incidents: IncidentLog, owner: Owner, opener: Opener, now: float) -> int:
        """Act on the alerts not taken yet (Scout's thread, ``now`` its clock); how many."""
        self.arrived.clear()
        pending = self.pending()
        for seq, alert in pending:
            ref, outcome = self._act(alert, incidents, owner, opener, now)
            self._taken(seq, ref, outcome)
        return len(pending)

    def _act(
        self, alert: Alert, incidents: IncidentLog, owner: Owner, opener: Opener, now: float
    ) -> tuple[str | None, str]:
        service = alert.service
        if alert.status == RESOLVED:
            ref = self.incident_of(alert.fingerprint) or (owner(service) if service else None)
            if ref is None:
                incidents.emit(AGENT, f"{describe(alert)}: no incident of it is open")
                return None, "unmatched"
            what = "noted; the incident stays as the traces and the squad judge it"
            if incidents.annotate(ref, audit_step(alert, what), key=alert.key) is None:
                return None, "unmatched"
            incidents.emit(AGENT, f"{describe(alert)}: {what}", incident_id=ref)
            return ref, "noted"
        if not service:
            incidents.emit(
                AGENT,
                f"{describe(alert)} names no service ({_label_text(alert.labels)}): "
                f"no incident opened; label it with one of {', '.join(SERVICE_LABELS)}",
            )
            return None, "no-service"
        shown = printable(service, NAME_LIMIT)
        ref = owner(service)
        if ref is not None:
            what = f"about {shown}, part of this incident"
            if incidents.annotate(ref, audit_step(alert, what), key=alert.key) is not None:
                incidents.emit(AGENT, f"{describe(alert)} {what}", incident_id=ref)
                return ref, "joined"
        ref = opener(alert, f"{describe(alert)} about {shown}", now)
        incidents.annotate(
            ref, audit_step(alert, f"opened this incident about {shown}"), key=alert.key
        )
        incidents.emit(
            AGENT,
            f"{describe(alert)} opened this incident about {shown} "
            f"({_label_text(alert.labels)})",
            incident_id=ref,
        )
        return ref, "opened"


__all__ = ["SERVICE_LABELS", "Alert", "AlertBox", "BadAlerts", "parse"]
