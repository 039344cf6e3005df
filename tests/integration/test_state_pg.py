"""Shared state in a real PostgreSQL: migrations, the incident log and outbox, across processes.

Each test has a database of its own (pg_helpers); without a server they skip.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pg_helpers import pg_url
from sre_space.incidents import Incident, IncidentLog
from sre_space.notify.outbox import Outbox
from sre_space.state.db import PgDb
from sre_space.state.migrations import LATEST, migrate, version
from sre_space.state.url import StateUrl, redact

__all__ = ["pg_url"]  # the fixture, used by name

CLI = [sys.executable, "-m", "sre_space"]


def sre(home: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SRE_SPACE_HOME": str(home), "SRE_SPACE_STATE_URL": url}
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def an_incident(n: int, status: str = "mitigated") -> Incident:
    return Incident(
        id=f"INC-20260101-{n:04d}",
        status=status,  # type: ignore[arg-type]
        detected_at=time.time() - 60 + n,
        signature=f"checkout|POST /checkout|saturation|{n}",
        root_cause={"service": "checkout", "fault_class": "saturation"},
    )


def test_a_fresh_database_is_migrated_to_the_latest_schema(pg_url: StateUrl) -> None:
    log = IncidentLog(pg_url)
    try:
        log.save(an_incident(1, "open"), why="test", by="scout")
        db = PgDb(pg_url)
        assert version(db) == LATEST
        db.close()
        got = log.get("INC-20260101-0001")
        assert got is not None and got.audit[-1]["to"] == "open"
        assert log.counts() == [("open", "saturation", 1)]  # json_extract, as in SQLite
    finally:
        log.close()


def test_an_older_schema_is_upgraded_and_keeps_its_incidents(pg_url: StateUrl) -> None:
    db = PgDb(pg_url)
    assert migrate(db, upto=1) == 1  # a database from before the outbox and the lease
    doc = an_incident(7).to_json()
    import json

    db.execute(
        "INSERT INTO incidents(id, status, signature, detected_at, doc) VALUES (?,?,?,?,?)",
        (doc["id"], doc["status"], doc["signature"], doc["detected_at"], json.dumps(doc)),
    )
    db.close()
    log = IncidentLog(pg_url)  # opening migrates 1 -> LATEST
    try:
        found = log.get("INC-20260101-0007")
        assert found is not None and found.status == "mitigated"
        found.status = "resolved"
        log.save(found, why="quiet", by="scout")  # the outbox (migration 2) takes the change
    finally:
        log.close()
    check = PgDb(pg_url)
    try:
        assert version(check) == LATEST
        rows = check.execute("SELECT event FROM notify_events").fetchall()
        assert [r[0] for r in rows] == ["resolved"]
    finally:
        check.close()


def test_a_newer_schema_is_refused_in_one_line(pg_url: StateUrl, tmp_path: Path) -> None:
    db = PgDb(pg_url)
    migrate(db)
    db.execute(
        "INSERT INTO sre_space_schema(version, description) VALUES (?, ?)",
        (LATEST + 1, "from a newer sre-space"),
    )
    db.close()
    secret = pg_url.url.replace("postgres@", "postgres:hunter2@", 1)
    done = sre(tmp_path, secret, "incidents")
    assert done.returncode == 3, done.stderr
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"schema version {LATEST + 1}, newer than this sre-space knows ({LATEST})" in done.stderr
    assert "hunter2" not in done.stderr and "postgres:***@" in done.stderr


def test_incidents_written_by_one_process_are_read_by_another(
    pg_url: StateUrl, tmp_path: Path
) -> None:
    writer = (
        "import sys, time\n"
        "from sre_space.incidents import Incident, IncidentLog\n"
        "from sre_space.state.url import StateUrl\n"
        "log = IncidentLog(StateUrl.parse(sys.argv[1]))\n"
        "for n in (1, 2):\n"
        "    i = Incident(id=f'INC-20260101-000{n}', status='open', detected_at=time.time() + n)\n"
        "    log.save(i, why='anomalous since checkout', by='scout')\n"
        "log.emit('brain', 'root cause checkout', incident_id='INC-20260101-0002')\n"
    )
    home_a, home_b = tmp_path / "machine-a", tmp_path / "machine-b"
    env = {**os.environ, "SRE_SPACE_HOME": str(home_a)}
    subprocess.run([sys.executable, "-c", writer, pg_url.url], env=env, check=True, timeout=60)
    listed = sre(home_b, pg_url.url, "incidents", "--json")
    assert listed.returncode == 0, listed.stderr
    import json

    ids = [i["id"] for i in json.loads(listed.stdout)]
    assert ids == ["INC-20260101-0002", "INC-20260101-0001"]
    shown = sre(home_b, pg_url.url, "incidents", "INC-20260101-0002")
    assert shown.returncode == 0 and "root cause checkout" in shown.stdout, shown
    # A person answers from a third home; the writer's log sees it.
    acked = sre(tmp_path / "laptop", pg_url.url, "ack", "INC-20260101-0001", "--by", "alice")
    assert acked.returncode == 0, acked.stderr
    log = IncidentLog(pg_url)
    try:
        got = log.get("INC-20260101-0001")
        assert got is not None and got.acknowledged_by == "alice"
    finally:
        log.close()
    assert not (home_b / "incidents.db").exists()  # nothing fell back to SQLite


def test_the_outbox_fans_out_once_in_postgres(pg_url: StateUrl) -> None:
    from sre_space.notify.events import Notification

    class Everything:
        def takes(self, n: Notification, earlier: set[str]) -> bool:
            return True

    log = IncidentLog(pg_url)
    try:
        incident = an_incident(3, "open")
        log.save(incident, why="opened", by="scout")
        incident.status = "diagnosing"
        log.save(incident)
    finally:
        log.close()
    box, other = Outbox(pg_url), Outbox(pg_url)
    try:
        sinks = {"pager": Everything()}
        now = time.time()
        assert box.fan_out(sinks, now, 3600.0) == 2  # type: ignore[arg-type]
        assert other.fan_out(sinks, now, 3600.0) == 0  # type: ignore[arg-type]
        due = box.due(now + 1)
        assert [r.notification.event for r in due] == ["open"]  # one at a time per incident
        box.settle(due[0].id, "sent", "202", now)
        assert other.counts() == {"pager": {"pending": 1, "sent": 1, "failed": 0}}
    finally:
        box.close()
        other.close()


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u:pa55@db.example:5432/sre",
        "postgresql://db.example/sre?user=u&password=pa55",
    ],
)
def test_a_state_url_is_never_printed_with_its_password(text: str) -> None:
    url = StateUrl.parse(text)
    for shown in (url.redacted, str(url), repr(url), redact(text)):
        assert "pa55" not in shown


def test_bad_state_urls_get_one_line_and_their_exit_code(tmp_path: Path) -> None:
    bad = sre(tmp_path, "mysql://root:pa55@127.0.0.1/sre", "incidents")
    assert bad.returncode == 2 and "not a PostgreSQL URL" in bad.stderr
    assert "pa55" not in bad.stderr and bad.stderr.strip().count("\n") == 0
    port = 1  # nothing listens on port 1
    down = sre(tmp_path, f"postgresql://u:pa55@127.0.0.1:{port}/sre", "incidents")
    assert down.returncode == 3 and "cannot reach the state database" in down.stderr
    assert "pa55" not in down.stderr and down.stderr.strip().count("\n") == 0
    flag = subprocess.run(
        [*CLI, "--state-url", "postgresql:///", "incidents"],
        env={**os.environ, "SRE_SPACE_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert flag.returncode == 2 and "names no database" in flag.stderr
