"""Jules's hardening proposals and the daily review, on known numbers."""

from __future__ import annotations

import time
from pathlib import Path

from sre_space import review
from sre_space.config import Settings
from sre_space.incidents import Incident, IncidentLog
from sre_space.squad import hardening


def _state(**extra: object) -> dict[str, object]:
    state: dict[str, object] = {
        "diagnosis": {
            "service": "checkout",
            "fault_class": "saturation",
            "signature": "checkout|POST /checkout|saturation|DatabaseTimeout",
        },
        "signals": [{"service": "checkout"}, {"service": "frontend"}],
        "recall": [],
        "verification": {
            "before": {"requests": 500, "p95_ms": 900.0, "error_rate": 0.4},
            "after": {"requests": 300, "p95_ms": 650.0, "error_rate": 0.0},
        },
    }
    state.update(extra)
    return state


def test_pool_size_follows_littles_law() -> None:
    # 50 req/s each holding a connection 0.9 s: 45 in use, x1.5 headroom.
    assert hardening.pool_size(50, 0.9) == 68


def test_cascade_gets_a_proposal_with_reasoned_changes() -> None:
    config = {"pool_size": 20, "pool_timeout_ms": 250}  # knobs, as a target reports them
    proposal = hardening.propose(_state(), config, "recovered", window_s=10.0)
    assert proposal is not None
    assert any("2 services" in why for why in proposal["why"])
    changes = {c["key"]: c for c in proposal["changes"]}
    assert changes["pool_size"] == {
        "service": "checkout",
        "key": "pool_size",
        "from": 20,
        "to": 68,
    }
    assert changes["pool_timeout_ms"]["to"] == 450
    assert "checkout.pool_size: 20 -> 68" in proposal["diff"]
    assert any("Little's law" in r for r in proposal["reasoning"])


def test_a_single_service_fixed_first_time_is_not_systemic() -> None:
    state = _state(signals=[{"service": "checkout"}])
    assert hardening.propose(state, {"pool_size": 20}, "recovered", 10.0) is None


def test_recurrence_and_failed_fixes_are_systemic() -> None:
    sig = "checkout|POST /checkout|saturation|DatabaseTimeout"
    state = _state(signals=[{"service": "checkout"}], recall=[{"id": "INC-1", "signature": sig}])
    reasons = hardening.systemic_reasons(state, "undone")
    assert any("INC-1" in r for r in reasons) and any("undone" in r for r in reasons)


def test_review_counts_and_recurring_signatures(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "incidents.db")
    now = time.time()
    for n, (status, sig) in enumerate(
        [
            ("resolved", "a|x|saturation|T"),
            ("mitigated", "a|x|saturation|T"),
            ("escalated", "b|y|error|"),
        ]
    ):
        log.save(
            Incident(
                id=f"INC-{n}",
                status=status,
                detected_at=now - 60 * (n + 1),
                signature=sig,
                first_error_at=now - 60 * (n + 1) - 2,
                mitigated_at=now - 60 * (n + 1) + 8 if status != "escalated" else None,
                hardening=[
                    {"title": "t", "why": ["w"], "changes": [], "reasoning": [], "status": "open"}
                ]
                if n == 1
                else [],
            )
        )
    log.save(Incident(id="OLD", status="resolved", detected_at=now - 3 * 86400))
    doc = review.build(log, 86400, now=now)
    assert doc["incidents"] == 3
    assert doc["by_status"] == {"resolved": 1, "mitigated": 1, "escalated": 1}
    assert doc["ttd_s"]["p50"] == 2.0 and doc["ttm_s"]["max"] == 8.0
    assert doc["recurring"] == [{"signature": "a|x|saturation|T", "count": 2}]
    assert [p["incident"] for p in doc["open_proposals"]] == ["INC-1"]
    assert "## Recurring signatures" in review.markdown(doc)


def test_review_runs_daily_at_0930_kolkata() -> None:
    # 2026-11-26 21:00 UTC is 02:30 IST on the 27th: next run 09:30 IST = 04:00 UTC.
    base = 1795726800.0
    assert review.next_run("09:30", "Asia/Kolkata", now=base) == base + 7 * 3600


def test_the_daily_review_is_written_once_when_due_and_then_waits_a_day(tmp_path: Path) -> None:
    log = IncidentLog(tmp_path / "incidents.db")
    daily = review.DailyReview(Settings(home=tmp_path), log, tmp_path / "reports")
    daily.write_if_due()
    assert not (tmp_path / "reports").exists()  # not due yet: next 09:30
    daily.due = time.time() - 1
    daily.write_if_due()
    [written] = (tmp_path / "reports").glob("review-*.md")
    assert "# " in written.read_text()
    assert daily.due > time.time()  # the next one, not again at once
    assert any(e.message.startswith("daily review written") for e in log.events(limit=10))


def test_a_memory_failure_gets_a_memory_limit() -> None:
    state = _state(
        diagnosis={
            "service": "inventory",
            "fault_class": "memory",
            "exception": "MemoryError",
            "signature": "inventory|GET /reserve|memory|MemoryError",
        },
        signals=[{"service": "inventory"}, {"service": "checkout"}],
    )
    proposal = hardening.propose(state, {"release": "v1"}, "recovered", window_s=10.0)
    assert proposal is not None
    changes = {c["key"]: c for c in proposal["changes"]}
    assert changes["memory_limit_mb"] == {
        "service": "inventory",
        "key": "memory_limit_mb",
        "from": None,
        "to": 256,
    }
    assert "inventory.memory_limit_mb: None -> 256" in proposal["diff"]
    assert any("memory limit" in r for r in proposal["reasoning"])
    # Only knobs a platform has: no watchdog setting nothing reads.
    assert set(changes) <= {"memory_limit_mb", "breaker_error_threshold", "retry_budget"}
    with_limit = hardening.propose(state, {"memory_limit_mb": 512}, "recovered", 10.0)
    assert with_limit is not None
    assert {c["key"]: c["to"] for c in with_limit["changes"]}["memory_limit_mb"] == 512
