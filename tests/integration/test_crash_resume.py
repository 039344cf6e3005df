"""A mind killed with SIGKILL while the Fixer's change is being verified.

The first mind is a real process running the squad's LangGraph graph with its
SQLite checkpoints, the incident log, the memory and an exec target whose
actions are real programs; it is killed during ``verify``. The next mind on the
same home finds the incident and verifies the change again: fresh healthy
spans make it ``verified`` (but ``unclear``: nobody watched while the mind was
down, so the recovery is not credited to the change, and memory learns
nothing), none make it ``undone`` (the target's undo program runs). The audit
trail says which, and both databases pass ``PRAGMA integrity_check``.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.mind import Mind
from sre_space.telemetry.model import Span, SpanKind

from helpers import DIAGNOSIS, MEMORY_HIT, wait_until

HIT = MEMORY_HIT  # a fix that verifiably worked here before
ACTION = """
import os, sys
with open(os.environ["ACTIONS_LOG"], "a") as fh:
    fh.write(sys.argv[1] + "\\n")
print("{}")
"""
# The first mind, up to the moment it is killed: the graph from the Brain's verdict on.
FIRST_MIND = """
import sqlite3, sys, time, json
from pathlib import Path
from sre_space.actuators.targets import TargetActuator
from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.memory.store import MemoryStore
from sre_space.paths import Paths
from sre_space.squad.context import SquadContext
from sre_space.squad.graph import build
from sre_space.squad.policy import Policy
from sre_space.telemetry.store import TraceStore

home = Path(sys.argv[1])
diagnosis, hit = json.loads(sys.argv[2]), json.loads(sys.argv[3])
settings = Settings(home=home, verify_timeout_s=3600)  # verifies until killed
paths = Paths(home).ensure()
log = IncidentLog(paths.incidents_db)
ctx = SquadContext(
    settings, TraceStore(), log, MemoryStore(settings), TargetActuator(settings), Policy()
)
app = build(ctx, sqlite3.connect(paths.checkpoints_db, check_same_thread=False))
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
app.invoke(None, config)
"""


def _span(start_s: float, n: int) -> Span:
    start = int(start_s * 1e9)
    return Span(
        trace_id=f"{n + 1:032x}",
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


def _integrity(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        return str(conn.execute("PRAGMA integrity_check").fetchone()[0])


@pytest.mark.parametrize("healthy", [True, False], ids=["verified", "undone"])
def test_a_mind_killed_while_verifying_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, healthy: bool
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    script = tmp_path / "action.py"
    script.write_text(ACTION)
    actions = tmp_path / "actions.log"
    monkeypatch.setenv("ACTIONS_LOG", str(actions))
    (home / "targets.toml").write_text(
        "[catalog]\n"
        'kind = "exec"\n'
        f'actions.scale_out = ["{sys.executable}", "{script}", "scale-{{replicas}}"]\n'
        f'undo.scale_out = ["{sys.executable}", "{script}", "unscale"]\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_SPACE_")}
    env["SRE_SPACE_HOME"] = str(home)
    first = subprocess.Popen(
        [sys.executable, "-c", FIRST_MIND, str(home), json.dumps(DIAGNOSIS), json.dumps(HIT)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    log = IncidentLog(home / "incidents.db")

    def verifying() -> bool:
        assert first.poll() is None, first.stderr.read() if first.stderr else ""
        found = log.list(limit=5)
        return bool(found) and any(a.get("step") == "applied" for a in found[0].audit)

    try:
        wait_until(verifying, 240, what="the first mind's change applied and being verified")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    incident = log.list(limit=1)[0]
    assert incident.status == "mitigating"
    assert actions.read_text().split() == ["scale-3"]

    mind = Mind(
        Settings(
            home=home,
            otlp_http_port=0,
            otlp_grpc_port=-1,
            verify_timeout_s=5 if not healthy else 120,
        )
    ).start()
    try:
        if healthy:  # the change worked: the service answers well again
            wait_until(
                lambda: any(a.get("step") == "resumed" for a in log.get(incident.id).audit),  # type: ignore[union-attr]
                120,
                what="the next mind resuming the incident",
            )
        sent = itertools.count()

        def verdict() -> Incident | None:
            if healthy:  # live traffic, answered well, until the verdict: not one burst
                now = time.time()
                mind.store.add([_span(now + i * 0.01, next(sent)) for i in range(10)])
            found = log.get(incident.id)
            return found if found is not None and found.status != "mitigating" else None

        done = wait_until(verdict, 180, interval=0.5, what="the resumed verification's verdict")
    finally:
        mind.stop()
    steps = [a["step"] for a in done.audit]
    assert steps[steps.index("applied") :][:3] == ["applied", "resumed", "verified"]
    verdict = done.audit[steps.index("verified")]
    if healthy:
        assert verdict["recovered"] is True and done.status in ("mitigated", "resolved")
        assert done.remediation["outcome"] == "unclear"
        assert any("restarted while verifying" in why for why in verdict["unclear"])
        assert actions.read_text().split() == ["scale-3"]
    else:
        assert verdict["recovered"] is False and done.status == "escalated"
        assert "undone" in steps and done.remediation["outcome"] == "undone"
        assert actions.read_text().split() == ["scale-3", "unscale"]
    for db in (home / "incidents.db", home / "checkpoints.db"):
        assert _integrity(db) == "ok", db


def test_a_change_cut_off_before_its_record_is_escalated_not_guessed(tmp_path: Path) -> None:
    """Killed inside the call (no ``applied`` step): nobody knows if it happened; a human checks."""
    from sre_space.actuators.targets import TargetActuator
    from sre_space.incidents import AWAITING_APPROVAL, Incident
    from sre_space.squad.context import SquadContext
    from sre_space.squad.graph import build
    from sre_space.squad.policy import Policy
    from sre_space.squad.resume import resume_interrupted
    from sre_space.telemetry.store import TraceStore

    settings = Settings(home=tmp_path)
    log = IncidentLog(tmp_path / "incidents.db")
    # No node runs here: the memory is never asked (the graph is only read and written).
    ctx = SquadContext(
        settings,
        TraceStore(),
        log,
        None,
        TargetActuator(settings),
        Policy(),  # type: ignore[arg-type]
    )
    checkpoints = sqlite3.connect(tmp_path / "checkpoints.db", check_same_thread=False)
    app = build(ctx, checkpoints)
    cut = Incident(id=log.new_id(), status="mitigating", detected_at=time.time())
    cut.remediation = {"action": "restart", "service": "catalog", "outcome": "pending"}
    log.save(cut)  # before the next id is drawn
    waiting = Incident(id=log.new_id(), status="mitigating", detected_at=time.time())
    waiting.remediation = {"action": "restart", "service": "catalog", "outcome": AWAITING_APPROVAL}
    log.save(waiting)
    assert resume_interrupted(app, log) == []
    saved = log.get(cut.id)
    assert saved is not None and saved.status == "escalated"
    (cut_off,) = [a for a in saved.audit if a["step"] == "interrupted"]
    assert "unknown" in cut_off["reason"]
    untouched = log.get(waiting.id)  # paused for a human: the approval path resumes it
    assert untouched is not None and untouched.status == "mitigating"
    checkpoints.close()
