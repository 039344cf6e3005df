"""Failover on a shared PostgreSQL: the leader killed (SIGKILL) between `apply` and its verdict.

Each run, in a database of its own on the server (created and dropped here):

1. a leader process takes the lease, runs the squad's graph from the Brain's
   verdict on (a remediation from memory, on an ``exec`` target whose action
   is a real program that appends to a file), applies it and starts
   verifying; it is killed with SIGKILL as soon as the change is recorded;
2. a standby (a real ``Mind`` in this process, its own home, the same state
   URL and targets) takes the lease once the dead leader's term runs out,
   finds the incident ``mitigating`` in the shared log and its checkpoint in
   the shared checkpointer, and verifies again (the service answers well:
   fresh healthy spans), never re-applying.

Measured per run: takeover (from the kill to the standby's ``took the lease``
event), the applies the action program saw (more than one is a double
apply), and whether the incident left ``mitigating`` (else it is stuck).
Floors (issue 25): takeover median <= lease term + 2 s, 0 double applies,
0 stuck. Exit 1 below them.

Usage: ``python benchmarks/failover.py [--runs N] [--state-url URL] [--term S]``
(default: the local PostgreSQL, ``postgresql://postgres@127.0.0.1:5432/postgres``).
Ends with one line: ``failover: N runs, takeover median X s, double applies D, stuck S``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sre_space.config import Settings
from sre_space.errors import UsageError
from sre_space.incidents import Incident, IncidentLog
from sre_space.mind import Mind
from sre_space.state.url import StateUrl
from sre_space.telemetry.model import Span, SpanKind

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
SIGNATURE = "catalog|GET /items/{id}|timeout|ReadTimeout"
DIAGNOSIS: dict[str, Any] = {
    "service": "catalog",
    "operation": "GET /items/{id}",
    "fault_class": "timeout",
    "exception": "ReadTimeout: timed out",
    "signature": SIGNATURE,
    "confidence": 0.9,
}
HIT: dict[str, Any] = {  # memory: this fix verifiably worked here before
    "id": "INC-BEFORE",
    "outcome": "recovered",
    "signature": SIGNATURE,
    "confidence": 0.95,
    "remediation": {"action": "scale_out", "service": "catalog", "params": {"replicas": 3}},
}
ACTION = """
import os, sys
with open(os.environ["ACTIONS_LOG"], "a") as fh:
    fh.write(sys.argv[1] + "\\n")
print("{}")
"""
# The leader, up to the moment it is killed: it holds the lease, and the graph
# runs from the Brain's verdict on, on the shared log and checkpointer.
LEADER = """
import json, sys, threading, time
from pathlib import Path
from sre_space.actuators.targets import TargetActuator
from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.memory.store import MemoryStore
from sre_space.squad.context import SquadContext
from sre_space.squad.graph import build
from sre_space.squad.policy import Policy
from sre_space.state import where
from sre_space.state.checkpoints import open_checkpoints
from sre_space.state.leader import Leadership
from sre_space.state.url import StateUrl
from sre_space.telemetry.store import TraceStore

home, url, term = Path(sys.argv[1]), StateUrl.parse(sys.argv[2]), float(sys.argv[3])
diagnosis, hit, mode = json.loads(sys.argv[4]), json.loads(sys.argv[5]), sys.argv[6]
settings = Settings(home=home, state_url=url.url, lease_term_s=term, verify_timeout_s=3600)
leader = Leadership(url, term)
leader.acquire()
assert leader.wait_leading(threading.Event())
log = IncidentLog(where(settings))
hands = leader.guard(TargetActuator(settings))
ctx = SquadContext(
    settings, TraceStore(), log, MemoryStore(settings), hands, Policy(mode=mode)
)
app = build(ctx, open_checkpoints(settings).saver)
incident = Incident(id=log.new_id(), status="diagnosing", detected_at=time.time())
log.save(incident)
config = {"configurable": {"thread_id": incident.id}}
state = {
    "incident_id": incident.id,
    "diagnosis": diagnosis,
    "recall": [hit],
    "signals": [],
    "window_start_ns": time.time_ns(),
}
app.update_state(config, state, as_node="brain")
app.invoke(None, config)  # verifies until killed (or, under approve, waits for a person)
"""


@dataclass
class Run:
    takeover_s: float | None  # None: the standby never took the lease
    applies: int
    status: str
    steps: list[str]
    outcome: str
    epochs: list[int]  # the lease epoch beside each applied change

    @property
    def stuck(self) -> bool:
        return self.status == "mitigating" or self.takeover_s is None


def admin(url: StateUrl) -> Any:
    import psycopg

    return psycopg.connect(url.url, autocommit=True, connect_timeout=5)


def _targets(home: Path, script: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "targets.toml").write_text(
        "[catalog]\n"
        'kind = "exec"\n'
        f'actions.scale_out = ["{sys.executable}", "{script}", "scale-{{replicas}}"]\n'
        f'undo.scale_out = ["{sys.executable}", "{script}", "unscale"]\n'
    )


def _span(start_s: float, n: int) -> Span:
    start = int(start_s * 1e9)
    return Span(
        trace_id=uuid.uuid4().hex,
        span_id=f"{n + 1:016x}",
        parent_id=None,
        service="catalog",
        name="GET /items/{id}",
        start_ns=start,
        end_ns=start + 20_000_000,
        kind=SpanKind.SERVER,
        error=False,
        resource={"service.name": "catalog"},
    )


def _wait(predicate: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def one_run(
    url: StateUrl, work: Path, term_s: float, *, healthy: bool = True, policy: str = "auto"
) -> Run:
    """One failover in database ``url`` (already empty), homes and files under ``work``.

    ``policy="approve"``: the leader is killed while the change waits for a person;
    the approval is given after the standby took over, which applies it.
    """
    script, actions = work / "action.py", work / "actions.log"
    script.write_text(ACTION)
    first_home, standby_home = work / "leader", work / "standby"
    _targets(first_home, script)
    _targets(standby_home, script)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_SPACE_")}
    env.update(SRE_SPACE_HOME=str(first_home), ACTIONS_LOG=str(actions))
    os.environ["ACTIONS_LOG"] = str(actions)  # the standby's undo program writes there too
    errors = work / "leader.stderr"  # a file: a pipe left unread could fill and stall it
    with errors.open("w") as err:
        leader = subprocess.Popen(
            [
                sys.executable,
                "-c",
                LEADER,
                str(first_home),
                url.url,
                str(term_s),
                json.dumps(DIAGNOSIS),
                json.dumps(HIT),
                policy,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    log = IncidentLog(url)
    mind: Mind | None = None
    try:

        def alive() -> None:
            if leader.poll() is not None:
                raise RuntimeError(f"the leader exited early: {errors.read_text()[-2000:]}")

        def held() -> bool:
            alive()
            return bool(
                log._db.execute("SELECT 1 FROM mind_lease WHERE expires_at > now()").fetchall()
            )

        _wait(held, 180, "the leader to take the lease")
        settings = Settings(
            home=standby_home,
            state_url=url.url,
            lease_term_s=term_s,
            otlp_http_port=0,
            otlp_grpc_port=-1,
            verify_timeout_s=120 if healthy else 5,
            policy=policy,
        )
        mind = Mind(settings).start()  # a standby: the lease is the leader's

        def applied() -> Incident | None:
            alive()
            found = log.list(limit=1)
            if found and policy == "approve":
                return (
                    found[0] if found[0].remediation.get("outcome") == "awaiting_approval" else None
                )
            ok = found and any(a.get("step") == "applied" for a in found[0].audit)
            return found[0] if ok else None

        incident = _wait(applied, 240, "the leader's change applied (or awaiting approval)")
        leader.send_signal(signal.SIGKILL)
        killed = time.time()
        leader.wait(30)

        def took() -> float | None:
            rows = log._db.execute(
                "SELECT ts FROM events WHERE message LIKE 'took the lease%' AND ts > ? "
                "ORDER BY seq LIMIT 1",
                (killed,),
            ).fetchall()
            return float(rows[0][0]) if rows else None

        took_at = _wait(took, term_s * 3 + 60, "the standby to take the lease")
        if policy == "approve":  # a person answers once the old leader is gone
            log.decide(incident.id, "approve", by="failover")
        sent = itertools.count()

        def verdict() -> Incident | None:
            if healthy:  # live traffic, answered well, until the verdict
                now = time.time()
                mind.store.add([_span(now + i * 0.01, next(sent)) for i in range(10)])  # type: ignore[union-attr]
            found = log.get(incident.id)
            return found if found is not None and found.status != "mitigating" else None

        try:
            done = _wait(verdict, 180, "the standby's verdict", interval=0.5)
        except TimeoutError:
            done = log.get(incident.id)
        assert done is not None
        applies = sum(1 for line in actions.read_text().split() if line.startswith("scale-"))
        return Run(
            round(took_at - killed, 2),
            applies,
            done.status,
            [str(a.get("step")) for a in done.audit],
            str(done.remediation.get("outcome") or ""),
            [
                int((a.get("result") or {}).get("lease_epoch") or 0)
                for a in done.audit
                if a.get("step") == "applied"
            ],
        )
    finally:
        if leader.poll() is None:
            leader.kill()
            leader.wait(30)
        if mind is not None:
            mind.stop()
        log.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument(
        "--state-url",
        default=os.environ.get("SRE_SPACE_STATE_URL", DEFAULT_URL),
        help="a server to create the runs' databases on (its database is not touched)",
    )
    parser.add_argument("--term", type=float, default=3.0, help="the lease term, seconds")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    try:
        server = StateUrl.parse(args.state_url)
    except UsageError as exc:
        print(f"failover: {exc}", file=sys.stderr)
        return 2
    try:
        conn = admin(server)
    except Exception as exc:
        print(
            f"failover: no PostgreSQL at {server.redacted}: {server.hide(str(exc).splitlines()[0])}",
            file=sys.stderr,
        )
        return 3
    runs: list[Run] = []
    try:
        for n in range(args.runs):
            name = f"sre_failover_{uuid.uuid4().hex[:10]}"
            conn.execute(f'CREATE DATABASE "{name}"')
            try:
                with tempfile.TemporaryDirectory(prefix="failover-") as work:
                    run = one_run(server.with_database(name), Path(work), args.term)
            finally:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            runs.append(run)
            print(
                f"run {n + 1}: takeover {run.takeover_s} s, applies {run.applies}, "
                f"{run.status} ({run.outcome}), steps {' '.join(run.steps)}",
                file=sys.stderr,
                flush=True,
            )
    finally:
        conn.close()
    takeovers = [r.takeover_s for r in runs if r.takeover_s is not None]
    median = statistics.median(takeovers) if takeovers else float("nan")
    double = sum(1 for r in runs if r.applies > 1)
    stuck = sum(1 for r in runs if r.stuck)
    if args.json:
        print(json.dumps({"runs": [r.__dict__ for r in runs], "takeover_median_s": median}))
    print(
        f"failover: {len(runs)} runs, takeover median {median:.2f} s, "
        f"double applies {double}, stuck {stuck}"
    )
    ok = median <= args.term + 2.0 and double == 0 and stuck == 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
