"""The class read again once the change is made: hung, or alive and starved of CPU?

A shop, frontend -> checkout -> inventory, 30 s of normal, then checkout's
requests take 3 s of its own work while frontend gives up after 2 s. On the
first look none of checkout's slow requests has ended (a span arrives when
its request does): its callers timed out on it, and nothing says whether it
is hung. By the change, the requests started before it have ended, and say.
"""

from __future__ import annotations

import random
from pathlib import Path

from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.squad.brain import failures_first, reread_class
from sre_space.squad.context import SquadContext
from sre_space.squad.policy import Policy
from sre_space.squad.state import SquadState
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.telemetry.store import TraceStore

from helpers import span

T0 = 1.7e9  # seconds
STEP_S = 0.1
NORMAL, STARVED = 300, 60
ONSET_S = T0 + NORMAL * STEP_S
SIGNALS = [{"service": "frontend", "operation": "POST /api/checkout", "kind": k} for k in ("error", "latency")]  # fmt: skip


def _trace(i: int, rng: random.Random, starved: bool, ended: bool) -> list[Span]:
    """One checkout; ``starved``: checkout's own work takes 3 s; ``ended``: its spans are in."""
    t = T0 + i * STEP_S
    own = 3000.0 if starved else 20.0 * rng.uniform(0.8, 1.2)
    inv = 3.0 * rng.uniform(0.8, 1.2)
    co_start = t + 0.0013
    co_ms = own + inv + 0.6
    wait_ms = 2000.0 if starved else co_ms + 0.6  # the caller's 2 s timeout
    fe = [
        span("frontend", "POST /api/checkout", t, wait_ms + 2, error=starved, trace=i, n=1),
        span("frontend", "POST", t + 0.001, wait_ms, error=starved, trace=i, n=2, parent=1,
             kind=SpanKind.CLIENT),
    ]  # fmt: skip
    if starved:
        attrs = {"exception.type": "httpx.ReadTimeout", "exception.message": "timed out"}
        fe[1].events.append(SpanEvent("exception", 0, attrs))
    if starved and not ended:
        return fe
    call_at = co_start + own / 2 / 1e3
    return [
        *fe,
        span("checkout", "POST /checkout", co_start, co_ms, trace=i, n=3, parent=2),
        span("checkout", "GET", call_at, inv + 0.6, trace=i, n=4, parent=3,
             kind=SpanKind.CLIENT),
        span("inventory", "GET /reserve", call_at + 0.0003, inv, trace=i, n=5, parent=4),
    ]  # fmt: skip


def _traces(ended: bool) -> list[list[Span]]:
    rng = random.Random(7)
    return [_trace(i, rng, i >= NORMAL, ended) for i in range(NORMAL + STARVED)]


def _squad(tmp_path: Path, traces: list[list[Span]]) -> tuple[SquadContext, SquadState]:
    store = TraceStore()
    store.add([s for t in traces for s in t])
    log = IncidentLog(tmp_path / "incidents.db")
    incident = Incident(id=log.new_id(), status="mitigating", detected_at=ONSET_S + 2)
    incident.first_error_at = ONSET_S + 2
    incident.root_cause = {"service": "checkout", "fault_class": "timeout"}
    log.save(incident)
    ctx = SquadContext(Settings(home=tmp_path), store, log, None, None, Policy())  # type: ignore[arg-type]
    change = ONSET_S + STARVED * STEP_S + 4  # after the last request started, and ended
    state: SquadState = {
        "incident_id": incident.id,
        "window_start_ns": int((ONSET_S - 5) * 1e9),
        "signals": SIGNALS,
        "diagnosis": {
            "service": "checkout",
            "operation": "POST /checkout",
            "fault_class": "timeout",
            "signature": "checkout|POST /checkout|timeout|",
        },
        "applied": {"ts": change + 2, "started": change},
    }
    return ctx, state


def test_the_first_look_cannot_tell_a_starved_service_from_a_hung_one() -> None:
    """The precondition: on what the first look has, checkout is blamed, as timeout."""
    top = failures_first(_traces(ended=False), 800.0, int((ONSET_S - 1) * 1e9), SIGNALS)[0]
    assert (top.service, top.fault_class) == ("checkout", "timeout")


def test_a_starved_service_is_cpu_once_its_requests_before_the_change_ended(
    tmp_path: Path,
) -> None:
    ctx, state = _squad(tmp_path, _traces(ended=True))
    out = reread_class(ctx, state)
    assert out["diagnosis"]["fault_class"] == "cpu"
    assert out["diagnosis"]["signature"] == "checkout|POST /checkout|cpu|"
    incident = ctx.log.get(state["incident_id"])
    assert incident is not None and incident.root_cause["fault_class"] == "cpu"
    assert incident.signature == "checkout|POST /checkout|cpu|"
    assert next(a for a in incident.audit if a["step"] == "reclassified")["from"] == "timeout"
    # A mind that resumes the verification (after a restart, or a standby) has none
    # of those requests in its store: the incident's word stands, written once.
    resumed = SquadContext(ctx.settings, TraceStore(), ctx.log, None, None, Policy())  # type: ignore[arg-type]
    assert reread_class(resumed, state)["diagnosis"]["signature"] == "checkout|POST /checkout|cpu|"
    incident = ctx.log.get(state["incident_id"])
    assert incident is not None
    assert [a["step"] for a in incident.audit].count("reclassified") == 1
    ctx.log.close()


def test_a_service_that_finished_nothing_stays_timeout(tmp_path: Path) -> None:
    ctx, state = _squad(tmp_path, _traces(ended=False))  # hung: nothing of it ever ends
    assert reread_class(ctx, state) == {}
    incident = ctx.log.get(state["incident_id"])
    assert incident is not None and incident.root_cause["fault_class"] == "timeout"
    assert not [a for a in incident.audit if a["step"] == "reclassified"]
    ctx.log.close()


def test_only_timeout_is_read_again(tmp_path: Path) -> None:
    ctx, state = _squad(tmp_path, _traces(ended=True))
    state["diagnosis"] = {**state["diagnosis"], "fault_class": "saturation"}
    assert reread_class(ctx, state) == {}
    ctx.log.close()
