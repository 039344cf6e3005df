"""One acting mind on a shared PostgreSQL: the lease, real mind processes, a cut connection.

Minds run as `sre-space run` processes, each in a home of its own (as on two
machines), on one test database; the lease term is short so that the waits
are too. Every wait has a deadline; nothing counts on a duration.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pg_helpers import pg_url, terminate
from sre_space.state.db import PgDb
from sre_space.state.leader import Leadership, LeaseLost
from sre_space.state.lease import Lease
from sre_space.state.migrations import migrate
from sre_space.state.url import StateUrl

from helpers import wait_until

__all__ = ["pg_url"]

CLI = [sys.executable, "-m", "sre_space"]
TERM_S = 3.0
START_S = 120.0  # a mind's start (Chroma, LangGraph) on a loaded 2-core machine


class Mind:
    def __init__(self, home: Path, url: StateUrl, config: str = "") -> None:
        self.home = home
        if config:
            home.mkdir(parents=True, exist_ok=True)
            (home / "config.toml").write_text(config)
        self.env = {
            **os.environ,
            "SRE_SPACE_HOME": str(home),
            "SRE_SPACE_STATE_URL": url.url,
            "SRE_SPACE_LEASE_TERM_S": str(TERM_S),
            "SRE_SPACE_OTLP_GRPC_PORT": "-1",
        }
        home.mkdir(parents=True, exist_ok=True)
        self.err = home.parent / f"{home.name}.stderr"  # a file: a pipe left unread could fill
        with self.err.open("w") as err:
            self.proc = subprocess.Popen(
                [*CLI, "run", "--otlp-port", "0"],
                env=self.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def leadership(self) -> dict[str, Any]:
        done = subprocess.run(
            [*CLI, "status", "--json"], env=self.env, capture_output=True, text=True, timeout=60
        )
        mind = json.loads(done.stdout or "{}").get("mind") or {}
        return dict(mind.get("leadership") or {})

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


@pytest.fixture
def minds(pg_url: StateUrl, tmp_path: Path) -> Iterator[list[Mind]]:
    started = [Mind(tmp_path / name, pg_url) for name in ("a", "b")]
    try:
        yield started
    finally:
        for mind in started:
            mind.stop()


def roles(minds: list[Mind]) -> list[str] | None:
    found = [str(m.leadership().get("role", "")) for m in minds]
    return found if sorted(found) == ["leader", "standby"] else None


def settled(minds: list[Mind]) -> tuple[Mind, Mind]:
    """(leader, standby), once the two minds agree on them."""
    found = wait_until(lambda: roles(minds), START_S, interval=0.5, what="a leader and a standby")
    return (minds[0], minds[1]) if found[0] == "leader" else (minds[1], minds[0])


def leads(mind: Mind) -> dict[str, Any] | None:
    doc = mind.leadership()
    return doc if doc.get("role") == "leader" else None


def test_two_minds_one_leads_the_other_watches_and_says_so(minds: list[Mind]) -> None:
    leader, standby = settled(minds)
    doc = standby.leadership()
    assert doc["leader"]["holder"].split(":")[1] == str(leader.proc.pid)
    assert doc["holder"] != doc["leader"]["holder"]


def test_a_cut_leader_stops_before_its_lease_ends_and_the_standby_takes_over(
    minds: list[Mind], pg_url: StateUrl
) -> None:
    leader, standby = settled(minds)
    db = PgDb(pg_url)
    try:
        epoch, ends = db.execute(
            "SELECT epoch, EXTRACT(EPOCH FROM expires_at) FROM mind_lease"
        ).fetchone()
        # The network cut: every connection of the leader closed from the server's side.
        assert terminate(pg_url, f"sre-space % {leader.proc.pid}") >= 1
        leader.proc.wait(timeout=60)
        stopped = time.time()
        assert leader.proc.returncode == 3
        err = leader.err.read_text()
        assert "lost the lease" in err, err
        # Its line in the shared log, when its last connection could still write
        # it; the process's end always (both clocks are this machine's).
        lost = db.execute(
            "SELECT ts FROM events WHERE message LIKE 'lost the lease%' ORDER BY seq"
        ).fetchall()
        when = float(lost[0][0]) if lost else stopped
        assert when < float(ends), (lost, stopped, ends)  # before its term ran out
        after = wait_until(
            lambda: leads(standby),
            TERM_S * 3 + 30,
            interval=0.3,
            what="the standby to take the lease",
        )
        assert after["epoch"] == int(epoch) + 1
    finally:
        db.close()


def test_kill_9_of_the_leader_hands_the_lease_to_the_standby(minds: list[Mind]) -> None:
    leader, standby = settled(minds)
    leader.proc.kill()
    leader.proc.wait(timeout=30)
    wait_until(
        lambda: standby.leadership().get("role") == "leader",
        TERM_S * 3 + 30,
        interval=0.3,
        what="the standby to take the lease after kill -9",
    )


def test_only_the_leader_sends_notifications_each_once(pg_url: StateUrl, tmp_path: Path) -> None:
    from notify_helpers import recorder
    from sre_space.incidents import Incident, IncidentLog

    with recorder() as hook:
        config = (
            f'[notify.hook]\nkind = "webhook"\nurl = "{hook.url}/in"\n'
            'statuses = ["escalated", "resolved"]\n'
        )
        minds = [Mind(tmp_path / name, pg_url, config) for name in ("a", "b")]
        log = IncidentLog(pg_url)
        try:
            settled(minds)
            for n, status in enumerate(["escalated", "resolved", "escalated"]):
                incident = Incident(id=f"INC-20260101-{n:04d}", status="open", detected_at=time.time())
                log.save(incident, why="test", by="scout")
                incident.status = status  # type: ignore[assignment]
                log.save(incident, why="test", by="squad")
                wait_until(lambda n=n: len(hook.got()) >= n + 1, 90, what=f"notification {n + 1}")
            got = [(r.json().get("id"), r.json().get("event")) for r in hook.got()]
            assert len(got) == 3 and len(set(got)) == 3, got  # each sent once, by one mind
        finally:
            log.close()
            for mind in minds:
                mind.stop()


class Hands:
    """The Fixer's hands as the guard sees them: what was asked of them is recorded."""

    def __init__(self) -> None:
        self.applied: list[str] = []

    def apply(self, action: str, service: str, params: dict[str, Any]) -> dict[str, Any]:
        self.applied.append(f"{action} {service}")
        return {"previous": {}}

    def undo(self, action: str, service: str, applied: dict[str, Any]) -> None:
        self.applied.append(f"undo {action} {service}")


def test_a_paused_leader_wakes_to_a_taken_lease_and_applies_nothing(pg_url: StateUrl) -> None:
    db = PgDb(pg_url)
    migrate(db)
    db.close()
    lost: list[str] = []
    leader = Leadership(pg_url, TERM_S, on_lost=lost.append)
    leader.acquire()
    try:
        stop = threading.Event()
        assert leader.wait_leading(stop) if wait_until(leader.leading, 30, what="lead") else False
        hands = Hands()
        guarded = leader.guard(hands)
        assert guarded.apply("restart", "checkout", {})["lease_epoch"] == 1
        # The pause: the leader's renewals stop (its lease thread frozen) past its term.
        leader._stop.set()
        assert leader._thread is not None
        leader._thread.join(timeout=30)
        other = Lease(pg_url, TERM_S)
        try:
            wait_until(other.try_acquire, TERM_S * 3 + 10, interval=0.2, what="the lease to expire")
            with pytest.raises(LeaseLost):
                guarded.apply("restart", "checkout", {})
            with pytest.raises(LeaseLost):
                guarded.undo("restart", "checkout", {})
            assert hands.applied == ["restart checkout"]
            assert lost  # the mind was told
            assert other.check() and other.epoch == 2
        finally:
            other.close()
    finally:
        leader.release()


def test_the_check_before_apply_fails_once_the_lease_connection_is_cut(pg_url: StateUrl) -> None:
    db = PgDb(pg_url)
    migrate(db)
    db.close()
    lost: list[str] = []
    leader = Leadership(pg_url, 30.0, on_lost=lost.append)  # a long term: the cut alone must do
    leader.acquire()
    try:
        wait_until(leader.leading, 30, what="lead")
        hands = Hands()
        terminate(pg_url, f"sre-space lease {os.getpid()}")
        started = time.monotonic()
        with pytest.raises(LeaseLost):
            leader.guard(hands).apply("scale_out", "payments", {"replicas": 3})
        assert time.monotonic() - started < 30.0 and hands.applied == []
        assert lost and "connection" in lost[0]
    finally:
        leader.release()
