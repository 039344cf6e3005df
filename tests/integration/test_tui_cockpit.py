"""The cockpit's panes and actions driven by Textual's Pilot, against real stores.

Traces come from a real TraceStore (through the app's span-source hook, a
hosted mind's store, or a real loopback API like the mind's); decisions land
in a real IncidentLog. No fixed sleeps: every wait has a condition and a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.command import CommandPalette
from textual.pilot import Pilot

from sre_space.config import Settings
from sre_space.incidents import AWAITING_APPROVAL, Incident, IncidentLog
from sre_space.lab.control import LabClient
from sre_space.lab.launcher import start_lab, stop_lab
from sre_space.localapi import LocalApi
from sre_space.mind import MindLock, span_json
from sre_space.paths import Paths
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.telemetry.store import TraceStore
from sre_space.tui.app import SreSpaceApp
from sre_space.tui.commands import commands
from sre_space.tui.keys import DIALOG_KEYS, KEYS, key_label
from sre_space.tui.screens import ConfirmScreen, FaultScreen, HelpScreen
from sre_space.tui.screens.help import key_table
from sre_space.tui.widgets import (
    IncidentTable,
    MemoryHits,
    SpanDetails,
    SquadTerminal,
    StatusBar,
    Waterfall,
)
from sre_space.tui.widgets.plain import plain_text
from tui_helpers import home_with, run, until

from helpers import free_port

MS = 1_000_000
T0 = 1_767_225_600 * 1_000_000_000  # 2026-01-01, fixed so screens are reproducible
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARTIAL = "00f067aa0ba902b700f067aa0ba902b7"
BIG = "b16b16b16b16b16b16b16b16b16b16b1"
MISSING = "deadbeefdeadbeefdeadbeefdeadbeef"
INC_WAIT = "INC-20260101-0002"
INC_DONE = "INC-20260101-0001"
INC_NEW = "INC-20260101-0003"
SIZE = (120, 36)


def span(
    trace: str,
    sid: str,
    parent: str | None,
    start_ms: float,
    end_ms: float,
    name: str,
    service: str,
    error: bool = False,
) -> Span:
    return Span(
        trace,
        sid,
        parent,
        service,
        name,
        T0 + int(start_ms * MS),
        T0 + int(end_ms * MS),
        SpanKind.SERVER if parent is None else SpanKind.CLIENT,
        error,
        "pool exhausted" if error else "",
        {"http.route": name} if parent is None else {},
        [SpanEvent("exception", T0 + int(end_ms * MS), {"exception.message": "timeout"})]
        if error
        else [],
        {"service.name": service},
    )


def checkout_trace() -> list[Span]:
    return [
        span(TRACE, "a000000000000001", None, 0, 100, "GET /checkout", "frontend"),
        span(TRACE, "a000000000000002", "a000000000000001", 5, 95, "POST /checkout", "checkout"),
        span(TRACE, "a000000000000003", "a000000000000002", 10, 40, "reserve stock", "inventory"),
        span(TRACE, "a000000000000004", "a000000000000002", 30, 92, "db.acquire", "checkout"),
        span(TRACE, "a000000000000005", "a000000000000004", 31, 91, "SELECT orders", "db", True),
    ]


def partial_trace() -> list[Span]:
    """The root and the payments span never arrived: two spans name a missing parent."""
    return [
        span(PARTIAL, "b000000000000002", "b000000000000001", 0, 40, "POST /charge", "payments"),
        span(PARTIAL, "b000000000000003", "b000000000000002", 2, 38, "INSERT charge", "db", True),
        span(PARTIAL, "b000000000000004", "b0000000000000ff", 10, 20, "GET /stock", "inventory"),
    ]


def big_trace(n: int = 10_000) -> list[Span]:
    spans = [span(BIG, "c" + "0" * 15, None, 0, 10_000, "GET /batch", "frontend")]
    for i in range(1, n):
        parent = "c" + f"{(i - 1) // 10:015x}"  # ten children each: a real tree
        start = (i % 1000) * 9.0
        spans.append(
            span(BIG, "c" + f"{i:015x}", parent, start, start + 8.0, f"op {i}", f"svc{i % 7}")
        )
    return spans


def store_with(*traces: list[Span]) -> TraceStore:
    store = TraceStore()
    for trace in traces:
        store.add(trace)
    return store


def incident(
    incident_id: str, traces: list[str], outcome: str, status: str = "mitigating", age_s: float = 0
) -> Incident:
    return Incident(
        id=incident_id,
        status=status,
        detected_at=time.time() - age_s,
        first_error_at=time.time() - age_s - 2.5,
        signature="checkout:POST /checkout:saturation",
        root_cause={
            "service": "checkout",
            "operation": "POST /checkout",
            "fault_class": "saturation",
            "confidence": 0.87,
            "evidence": {"exemplar_trace_ids": traces},
        },
        remediation={
            "action": "patch_config",
            "service": "checkout",
            "params": {"pool_size": 40},
            "source": "memory",
            "outcome": outcome,
        },
        memory_hits=[
            {
                "id": "INC-20251201-0007",
                "score": 0.93,
                "summary": "checkout pool saturated under db latency",
                "service": "checkout",
                "remediation": {"action": "patch_config", "params": {"pool_size": 40}},
                "outcome": "recovered",
            },
            {
                "id": "INC-20251115-0002",
                "score": 0.71,
                "summary": "checkout restarts did not help",
                "service": "checkout",
                "remediation": {"action": "restart", "params": {}},
                "outcome": "undone",
            },
        ],
    )


def make_home(tmp_path: Path, *incidents: Incident) -> tuple[Settings, IncidentLog]:
    settings, log = home_with(tmp_path, *incidents)
    log.emit("brain", "root cause checkout POST /checkout (saturation)", incident_id=INC_WAIT)
    return settings, log


@pytest.fixture
def home(tmp_path: Path) -> tuple[Settings, IncidentLog]:
    return make_home(
        tmp_path,
        incident(INC_DONE, [PARTIAL], "recovered", status="resolved", age_s=600),
        incident(INC_WAIT, [TRACE, PARTIAL, MISSING], AWAITING_APPROVAL, age_s=30),
    )


def rows(app: SreSpaceApp) -> list[str]:
    """The span names on screen, in order (the name column without guides and flags)."""
    wf = app.query_one(Waterfall)
    return [row.span.name for row in wf.view.rows]


def screen_lines(app: SreSpaceApp) -> list[str]:
    return app.query_one(Waterfall).visible_text()


_SHOWN: dict[int, list[str]] = {}  # every notice each app was asked to show


@pytest.fixture(autouse=True)
def _keep_every_notice(monkeypatch: pytest.MonkeyPatch) -> None:
    """A notice leaves the screen after seconds; on a loaded machine a check can come later."""
    _SHOWN.clear()
    original = SreSpaceApp.notify

    def keep(self: SreSpaceApp, message: str, *args: Any, **kwargs: Any) -> None:
        _SHOWN.setdefault(id(self), []).append(str(message))
        original(self, message, *args, **kwargs)

    monkeypatch.setattr(SreSpaceApp, "notify", keep)


def notices(app: SreSpaceApp) -> str:
    """Every notice the app has shown so far, expired or not."""
    return " | ".join(_SHOWN.get(id(app), []))


async def trace_shown(pilot: Pilot[Any], app: SreSpaceApp, trace_id: str) -> None:
    await until(pilot, lambda: app.query_one(Waterfall).trace_id == trace_id)


# --- drilling in: Enter selects an incident, the waterfall shows its trace ---------------


def test_enter_selects_an_incident_and_shows_its_trace_and_memory(
    home: tuple[Settings, IncidentLog],
) -> None:
    settings, _ = home
    store = store_with(checkout_trace(), partial_trace())
    app = SreSpaceApp(settings, readonly=True, span_source=store.trace)

    async def scenario(pilot: Pilot[Any]) -> None:
        table = app.query_one(IncidentTable)
        await until(pilot, lambda: table.row_count == 2)
        # On first sight the cockpit shows the incident awaiting approval.
        await trace_shown(pilot, app, TRACE)
        assert app.selected_id == INC_WAIT
        # Down to the older incident, Enter: its trace (a partial one) replaces the first.
        await pilot.press("j")
        assert table.selected_id == INC_DONE
        await pilot.press("enter")
        await trace_shown(pilot, app, PARTIAL)
        assert app.selected_id == INC_DONE
        assert isinstance(app.focused, Waterfall)
        # Esc goes back to the incidents; k and Enter drill into the other one.
        await pilot.press("escape")
        assert isinstance(app.focused, IncidentTable)
        await pilot.press("k", "enter")
        await trace_shown(pilot, app, TRACE)
        lines = screen_lines(app)
        assert lines[0].split()[:2] == ["5", "spans"] and "100ms" in lines[0]  # the time axis
        assert rows(app) == [
            "GET /checkout",
            "POST /checkout",
            "reserve stock",
            "db.acquire",
            "SELECT orders",
        ]
        assert "[!] SELECT orders" in lines[5]
        assert lines[5].lstrip().startswith("└─")  # tree guides
        assert "━" in lines[1]  # the critical path over the root's bar
        assert "━" not in lines[3]  # reserve stock overlaps db.acquire: not critical
        wf = app.query_one(Waterfall)
        assert "trace 1/3" in str(wf.border_title)
        assert "1 failed" in str(wf.border_subtitle)

        memory = app.query_one(MemoryHits).text
        assert "0.93" in memory and "INC-20251201-0007" in memory
        assert "patch_config pool_size=40" in memory and "recovered" in memory
        assert "undone" in memory

        # The side panel follows the cursor: attributes, events, resource.
        await pilot.press("e")  # next failed span
        assert wf.selected_row is not None and wf.selected_row.span.name == "SELECT orders"
        details = app.query_one(SpanDetails)
        await until(pilot, lambda: "SELECT orders" in details.text)
        assert "ERROR" in details.text and "timeout" in details.text
        assert "service.name" in details.text
        await pilot.press("enter")  # into the span's details; Esc back to the list
        assert isinstance(app.focused, SpanDetails)
        await pilot.press("escape")
        assert isinstance(app.focused, Waterfall)

        # t: the next exemplar trace (partial), then one the mind no longer holds.
        await pilot.press("t")
        await trace_shown(pilot, app, PARTIAL)
        await pilot.press("t")
        await until(pilot, lambda: "not held" in " ".join(screen_lines(app)))
        assert rows(app) == []
        await pilot.press("j", "k", "space", "z", "Z", "s", "e", "G", "g")  # empty: no crash
        await pilot.press("q")

    run(app, scenario, SIZE)


def test_fold_sort_filter_change_the_visible_rows(home: tuple[Settings, IncidentLog]) -> None:
    settings, _ = home
    store = store_with(checkout_trace())
    app = SreSpaceApp(settings, readonly=True, span_source=store.trace)

    async def scenario(pilot: Pilot[Any]) -> None:
        await trace_shown(pilot, app, TRACE)
        await pilot.press("enter")  # the table's cursor is on the selected incident
        wf = app.query_one(Waterfall)
        assert isinstance(app.focused, Waterfall) and len(rows(app)) == 5

        await pilot.press("j", "space")  # fold POST /checkout: one level
        assert rows(app) == ["GET /checkout", "POST /checkout"]
        assert "(!) POST /checkout" in screen_lines(app)[2]  # a failure hides under the fold
        assert "▸" in screen_lines(app)[2]
        await pilot.press("space")
        assert len(rows(app)) == 5
        await pilot.press("z")  # fold all
        assert rows(app) == ["GET /checkout"]
        assert "(!)" in screen_lines(app)[1]
        await pilot.press("Z")  # unfold all
        assert len(rows(app)) == 5

        # h folds, or goes to the parent from a leaf; l unfolds.
        await pilot.press("G")
        assert wf.selected_row is not None and wf.selected_row.span.name == "SELECT orders"
        await pilot.press("h")
        assert wf.selected_row.span.name == "db.acquire"
        await pilot.press("h")
        assert rows(app)[-1] == "db.acquire"
        await pilot.press("l")
        assert rows(app)[-1] == "SELECT orders"

        # s: sort siblings by latency (db.acquire 62ms before reserve stock 30ms).
        await pilot.press("s")
        assert rows(app)[2:] == ["db.acquire", "SELECT orders", "reserve stock"]
        assert "by latency" in screen_lines(app)[0]
        await pilot.press("s")
        assert rows(app)[2] == "reserve stock"

        # /: filter by name as you type; Enter keeps it, Esc in the list clears it.
        await pilot.press("slash")
        assert app.focused is not None and app.focused.id == "filter"
        await pilot.press(*"select")
        assert rows(app) == ["GET /checkout", "POST /checkout", "db.acquire", "SELECT orders"]
        await pilot.press("enter")
        assert isinstance(app.focused, Waterfall)
        assert wf.selected_row is not None and wf.selected_row.span.name == "SELECT orders"
        assert "/select" in str(wf.border_subtitle)
        await pilot.press("escape")
        assert len(rows(app)) == 5
        # Esc while typing puts the filter back as it was.
        await pilot.press("slash", "x", "y", "z")
        assert rows(app) == []
        await pilot.press("escape")
        assert len(rows(app)) == 5 and isinstance(app.focused, Waterfall)
        await pilot.press("q")

    run(app, scenario, SIZE)


def test_ten_thousand_spans_scroll_by_drawing_only_what_is_visible(
    tmp_path: Path,
) -> None:
    settings, _ = make_home(tmp_path, incident(INC_WAIT, [BIG], "recovered"))
    store = store_with(big_trace())
    app = SreSpaceApp(settings, readonly=True, span_source=store.trace)

    async def scenario(pilot: Pilot[Any]) -> None:
        await trace_shown(pilot, app, BIG)
        await pilot.press("enter")
        wf = app.query_one(Waterfall)
        assert len(wf.view.rows) == 10_000
        drawn: list[int] = []
        render_line = wf.render_line

        def counting(y: int) -> Any:
            drawn.append(y)
            return render_line(y)

        wf.render_line = counting  # type: ignore[method-assign]
        await pilot.press("G")
        await until(pilot, lambda: bool(drawn))
        await pilot.pause()
        assert wf.cursor == 9_999
        assert max(drawn) < wf.size.height  # screen lines, never the 10,000 rows
        assert len(drawn) < 5 * wf.size.height
        last = wf.view.rows[-1].span.name  # depth-first: the last subtree's last leaf
        assert f" {last} " in wf.visible_text()[-1]
        await pilot.press("ctrl+u", "ctrl+u", "k")
        assert 9_999 - 2 * wf.size.height <= wf.cursor < 9_999
        await pilot.press("z")
        assert len(wf.view.rows) == 1
        await pilot.press("q")

    run(app, scenario, SIZE)


def test_panes_keep_following_the_log_under_a_dialog(home: tuple[Settings, IncidentLog]) -> None:
    """Events and incidents that arrive while a dialog is open are shown, not dropped."""
    settings, log = home
    app = SreSpaceApp(settings, readonly=True, span_source=lambda _: [])

    async def scenario(pilot: Pilot[Any]) -> None:
        table = app.query_one(IncidentTable)
        terminal = app.query_one(SquadTerminal)
        await until(pilot, lambda: table.row_count == 2 and "root cause checkout" in terminal.text)
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        log.emit("fixer", "said while the help was open", incident_id=INC_NEW)
        log.save(incident(INC_NEW, [], "recovered", status="resolved"))
        await until(pilot, lambda: "said while the help was open" in terminal.text)
        await until(pilot, lambda: table.row_count == 3)
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape", "q")

    run(app, scenario, SIZE)


# --- traces from the mind: hosted store, or the acting mind's API ----------------------------


class HostedMind:
    """A hosted mind as far as the cockpit can tell: a real store and a real log."""

    def __init__(self, settings: Settings) -> None:
        self.store = store_with(checkout_trace())
        self.log = IncidentLog(Paths(settings.home).incidents_db)

    def start(self) -> HostedMind:
        return self

    def stop(self) -> None:
        self.log.close()

    def status(self) -> dict[str, Any]:
        return {"policy": "approve", "store": {"spans_per_s": 250.0}}


def test_hosting_reads_the_minds_store_and_approves_through_its_log(
    home: tuple[Settings, IncidentLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, log = home
    monkeypatch.setattr("sre_space.mind.Mind", HostedMind)
    app = SreSpaceApp(settings)

    async def scenario(pilot: Pilot[Any]) -> None:
        status = app.query_one(StatusBar)
        await until(pilot, lambda: "hosting" in str(status.render()))
        await trace_shown(pilot, app, TRACE)
        assert len(rows(app)) == 5
        await until(pilot, lambda: "250 spans/s" in str(status.render()))
        text = str(status.render())
        assert "policy approve" in text and f"awaiting approval {INC_WAIT}" in text
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "patch_config checkout pool_size=40" in app.screen.question
        await pilot.press("y")
        await until(pilot, lambda: log.decision(INC_WAIT) == "approve")
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)

    run(app, scenario, SIZE)


def test_observing_reads_traces_from_the_acting_minds_api(
    home: tuple[Settings, IncidentLog],
) -> None:
    settings, _ = home
    paths = Paths(settings.home)
    store = store_with(checkout_trace())
    # The routes and the state file the acting mind serves and writes.
    api = LocalApi(
        {
            "/trace": lambda p: [span_json(s) for s in store.trace(p["id"])],
            "/status": lambda _: {"policy": "auto", "store": {"spans_per_s": 42.0}},
        },
        paths.mind_token,
    ).start()
    paths.mind_state.write_text(json.dumps({"pid": os.getpid(), "api_port": api.port}))
    lock = MindLock(paths)
    lock.acquire()  # another process's mind, as far as the flock can tell
    try:
        app = SreSpaceApp(settings)

        async def scenario(pilot: Pilot[Any]) -> None:
            status = app.query_one(StatusBar)
            await until(pilot, lambda: "observing" in str(status.render()), timeout=30)
            await trace_shown(pilot, app, TRACE)
            assert len(rows(app)) == 5
            assert app.query_one(Waterfall).view.tree.nodes["a000000000000005"].span.error
            await until(pilot, lambda: "42 spans/s" in str(status.render()))
            assert "policy auto" in str(status.render())
            await pilot.press("q")

        run(app, scenario, SIZE)
    finally:
        lock.release()
        api.stop()


# --- acting: approve, deny, chaos, revert; readonly refuses -----------------------------------


def test_observer_approves_and_denies_into_the_real_incident_log(tmp_path: Path) -> None:
    other = incident(INC_NEW, [TRACE], AWAITING_APPROVAL, age_s=5)
    settings, log = make_home(
        tmp_path,
        incident(INC_DONE, [TRACE], "recovered", status="resolved", age_s=600),
        incident(INC_WAIT, [TRACE], AWAITING_APPROVAL, age_s=30),
        other,
    )
    lock = MindLock(Paths(settings.home))
    lock.acquire()
    try:
        app = SreSpaceApp(settings, span_source=lambda _: [])

        async def scenario(pilot: Pilot[Any]) -> None:
            table = app.query_one(IncidentTable)
            await until(pilot, lambda: app.host.mode == "observing", timeout=30)
            await until(pilot, lambda: table.row_count == 3 and app.selected_id is not None)
            assert app.selected_id == INC_NEW  # newest awaiting approval first

            # Cancel changes nothing.
            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert log.decision(INC_NEW) is None

            await pilot.press("a")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: log.decision(INC_NEW) == "approve")
            await until(pilot, lambda: f"approve recorded for {INC_NEW}" in notices(app))

            # Select the other one with Enter, deny it.
            await pilot.press("j")
            assert table.selected_id == INC_WAIT
            await pilot.press("enter")
            assert app.selected_id == INC_WAIT
            await pilot.press("d")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert f"Deny patch_config checkout pool_size=40 for {INC_WAIT}?" in app.screen.question
            await pilot.press("y")
            await until(pilot, lambda: log.decision(INC_WAIT) == "deny")
            assert log.decision(INC_NEW) == "approve"

            # Nothing awaits on a resolved incident: a notice, no dialog, no decision.
            await pilot.press("escape", "j", "enter", "a")
            assert app.selected_id == INC_DONE
            await until(pilot, lambda: "not awaiting approval" in notices(app))
            assert not isinstance(app.screen, ConfirmScreen)
            assert log.decision(INC_DONE) is None
            await pilot.press("q")

        run(app, scenario, SIZE)
    finally:
        lock.release()


def test_ack_and_resolve_the_selected_incident_into_the_real_incident_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A acknowledges at once; R asks first, then resolves as $USER; a resolved one is refused."""
    monkeypatch.setenv("USER", "dana")
    settings, log = make_home(
        tmp_path,
        incident(INC_DONE, [TRACE], "recovered", status="resolved", age_s=600),
        incident(INC_WAIT, [TRACE], "recovered", status="mitigated", age_s=30),
    )
    lock = MindLock(Paths(settings.home))
    lock.acquire()  # another mind acts: this cockpit observes and writes the log itself
    try:
        app = SreSpaceApp(settings, span_source=lambda _: [])

        def stored() -> Incident:
            found = log.get(INC_WAIT)
            assert found is not None
            return found

        async def scenario(pilot: Pilot[Any]) -> None:
            await until(pilot, lambda: app.host.mode == "observing", timeout=30)
            await until(pilot, lambda: app.selected_id == INC_WAIT)
            await pilot.press("A")
            await until(pilot, lambda: stored().acknowledged_by == "dana")
            await until(pilot, lambda: f"{INC_WAIT} acknowledged by dana" in notices(app))
            assert stored().status == "mitigated"
            await until(pilot, lambda: "acknowledged by dana" in app.query_one(SquadTerminal).text)

            await pilot.press("R")  # cancelled: nothing changes
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            assert f"Resolve {INC_WAIT} (mitigated) as dana?" in app.screen.question
            await pilot.press("n")
            await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
            assert stored().status == "mitigated"

            await pilot.press("R")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: stored().status == "resolved")
            assert stored().resolved_by == "dana"
            await until(pilot, lambda: f"{INC_WAIT} resolved by dana" in notices(app))
            await until(pilot, lambda: app.cockpit.incidents.selected is not None
                        and app.cockpit.incidents.selected.status == "resolved")
            await pilot.press("R")  # resolved already: a notice, no dialog
            await until(pilot, lambda: f"{INC_WAIT} is already resolved" in notices(app))
            assert not isinstance(app.screen, ConfirmScreen)
            await pilot.press("q")

        run(app, scenario, SIZE)
    finally:
        lock.release()
    steps = [(a["step"], a.get("by")) for a in stored().audit if a.get("by") == "dana"]
    assert steps == [("ack", "dana"), ("status", "dana")]


def test_chaos_and_revert_ask_first_and_report_a_missing_lab(
    home: tuple[Settings, IncidentLog], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, _ = home
    monkeypatch.setattr("sre_space.mind.Mind", HostedMind)
    app = SreSpaceApp(settings)

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.host.mode == "hosting")
        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, FaultScreen))
        assert "db-timeout" in app.screen.faults
        await pilot.press("escape")  # close: nothing injected
        await until(pilot, lambda: not isinstance(app.screen, FaultScreen))

        await pilot.press("c")
        await until(pilot, lambda: isinstance(app.screen, FaultScreen))
        await pilot.press("enter")  # the first fault
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Inject db-timeout into db?" in app.screen.question
        await pilot.press("y")
        # No lab runs in this home: the lab client's own message, on screen, no crash.
        await until(pilot, lambda: "no lab is running" in notices(app))

        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))
        assert notices(app).count("no lab is running") == 1  # cancelled: nothing was tried
        await pilot.press("r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("y")
        await until(pilot, lambda: notices(app).count("no lab is running") == 2)
        await pilot.press("q")
        await until(pilot, lambda: not app.is_running)

    run(app, scenario, SIZE)


@pytest.mark.lab
def test_chaos_injects_into_and_reverts_a_real_lab(tmp_path: Path) -> None:
    """c, Enter, y: the lab runs the fault (the status line says so); r, y: it is gone."""
    home = tmp_path / "home"
    make_home(home, incident(INC_WAIT, [TRACE], AWAITING_APPROVAL, age_s=30))
    settings = Settings(home=home, otlp_http_port=free_port(), otlp_grpc_port=free_port())
    start_lab(settings)
    lock = MindLock(Paths(home))
    lock.acquire()  # observe: the cockpit acts on the lab without hosting a mind
    try:
        client = LabClient.from_settings(settings)
        app = SreSpaceApp(settings, span_source=lambda _: [])

        async def scenario(pilot: Pilot[Any]) -> None:
            status = app.query_one(StatusBar)
            await until(pilot, lambda: "lab up" in str(status.render()), timeout=30)
            await pilot.press("c")
            await until(pilot, lambda: isinstance(app.screen, FaultScreen))
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: "injected db-timeout db" in notices(app), timeout=30)
            assert [f["fault"] for f in client.chaos_status()] == ["db-timeout"]
            await until(pilot, lambda: "chaos db-timeout" in str(status.render()), timeout=30)

            await pilot.press("r")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
            await pilot.press("y")
            await until(pilot, lambda: "reverted db-timeout" in notices(app), timeout=30)
            assert client.chaos_status() == []
            await until(pilot, lambda: "chaos" not in str(status.render()), timeout=30)
            await pilot.press("q")

        run(app, scenario, SIZE)
    finally:
        lock.release()
        with contextlib.suppress(Exception):
            LabClient.from_settings(settings).revert(None)
        stop_lab(settings)


def test_readonly_refuses_every_action(home: tuple[Settings, IncidentLog]) -> None:
    settings, log = home
    app = SreSpaceApp(settings, readonly=True, span_source=lambda _: [])

    async def scenario(pilot: Pilot[Any]) -> None:
        await until(pilot, lambda: app.selected_id == INC_WAIT)
        for key, action in (
            ("a", "approve"), ("d", "deny"), ("A", "ack"), ("R", "resolve"), ("c", "chaos"),
            ("r", "revert"),
        ):
            await pilot.press(key)
            await until(pilot, lambda a=action: f"readonly: {a} is disabled" in notices(app))
            assert not isinstance(app.screen, ConfirmScreen | FaultScreen)
        assert log.decision(INC_WAIT) is None

        # / in the incidents pane filters the incidents; Esc there clears it.
        table = app.query_one(IncidentTable)
        assert isinstance(app.focused, IncidentTable) and table.row_count == 2
        await pilot.press("slash", *"resolved", "enter")
        assert table.row_count == 1 and table.selected_id == INC_DONE
        assert isinstance(app.focused, IncidentTable)
        log.emit("scout", "a later poll")  # a poll after the filter keeps it
        await until(pilot, lambda: "a later poll" in app.query_one(SquadTerminal).text)
        assert table.row_count == 1
        await pilot.press("escape")
        assert table.row_count == 2
        await pilot.press("q")

    run(app, scenario, SIZE)


# --- keys: help, palette, layout ------------------------------------------------------------


def test_help_and_the_command_palette_come_from_the_one_key_table(
    home: tuple[Settings, IncidentLog],
) -> None:
    settings, _ = home
    app = SreSpaceApp(settings, readonly=True, span_source=lambda _: [])
    offered = {description for description, _, _ in commands()}
    assert {"Fold all", "Approve", "Chaos", "Revert", "Filter", "Help"} <= offered

    async def scenario(pilot: Pilot[Any]) -> None:
        await pilot.press("question_mark")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        text = plain_text(key_table(), 100)
        for binding in (*KEYS, *DIALOG_KEYS):
            assert binding.description in text and key_label(binding) in text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))

        await pilot.press("ctrl+p")
        await until(pilot, lambda: isinstance(app.screen, CommandPalette))
        await pilot.press(*"help")
        await pilot.pause(0.3)  # the palette searches in a task; enter picks the best hit
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape", "q")

    run(app, scenario, SIZE)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_panes_fit_small_and_use_large_terminals(
    home: tuple[Settings, IncidentLog], size: tuple[int, int]
) -> None:
    settings, _ = home
    store = store_with(checkout_trace(), partial_trace())
    app = SreSpaceApp(settings, readonly=True, span_source=store.trace)

    async def scenario(pilot: Pilot[Any]) -> None:
        await trace_shown(pilot, app, TRACE)
        table, wf = app.query_one(IncidentTable), app.query_one(Waterfall)
        squad, status = app.query_one(SquadTerminal), app.query_one(StatusBar)
        assert table.region.bottom <= wf.region.y < wf.region.bottom <= squad.region.y
        assert squad.region.bottom <= status.region.y and status.region.bottom <= size[1]
        assert wf.size.height >= 6  # axis and five spans
        memory, details = app.query_one(MemoryHits), app.query_one(SpanDetails)
        if size[0] < 120:
            assert not memory.display or memory.region.width == 0
            assert wf.region.width == size[0]
            await pilot.press("i")  # side panels on demand
            await until(pilot, lambda: memory.region.width > 0 and details.region.width > 0)
        else:
            assert memory.region.width > 0 and details.region.width > 0
            assert wf.size.height >= 20 and table.region.height >= 10
            assert details.region.x >= wf.region.right
        await pilot.press("q")

    run(app, scenario, size)


# --- the real command in a real terminal -------------------------------------------------------


def test_watch_readonly_in_tmux(tmp_path: Path) -> None:
    """`sre-space watch --readonly` in tmux: the screen shows the log; q leaves cleanly."""
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    home = tmp_path / "home"
    make_home(home, incident(INC_WAIT, [TRACE], AWAITING_APPROVAL, age_s=30))
    # A server of its own, on a socket in the test's directory: no other tmux is touched.
    tmux = ["tmux", "-S", str(tmp_path / "tmux.sock"), "-f", "/dev/null"]
    watch = " ".join(
        [
            "env",
            f"SRE_SPACE_HOME={shlex.quote(str(home))}",
            "TERM=xterm-256color",
            shlex.quote(sys.executable),
            "-m",
            "sre_space",
            "watch",
            "--readonly",
        ]
    )
    # The shell prints the exit code once the screen is restored (tmux's own record of it
    # races with the pane closing).
    command = shlex.quote(f'{watch}; echo "watch exited $?"; sleep 60')
    command = f"sh -c {command}"

    def tmux_out(*args: str) -> str:
        return subprocess.run([*tmux, *args], capture_output=True, text=True, timeout=20).stdout

    def screen() -> str:
        return tmux_out("capture-pane", "-p", "-t", "watch")

    def wait_for(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not seen within {timeout:.0f}s:\n{screen()}")
            time.sleep(0.1)

    subprocess.run(
        [*tmux, "new-session", "-d", "-s", "watch", "-x", "100", "-y", "30", command],
        check=True,
        timeout=20,
    )
    try:
        wait_for(lambda: INC_WAIT in screen() and "readonly" in screen(), "the incident")
        wait_for(lambda: "GET /checkout" not in screen() and "not held" in screen(), "no trace")
        text = screen()
        assert "awaiting approval" in text and "squad" in text and "trace" in text
        assert "Traceback" not in text
        subprocess.run([*tmux, "send-keys", "-t", "watch", "a"], timeout=20)
        wait_for(lambda: "readonly: approve is disabled" in screen(), "the readonly notice")
        subprocess.run([*tmux, "send-keys", "-t", "watch", "q"], timeout=20)
        wait_for(lambda: "watch exited" in screen(), "the exit")
        assert "watch exited 0" in screen()
        assert "Traceback" not in screen()
        assert (home / "logs" / "watch.log").exists()
        assert IncidentLog(Paths(home).incidents_db).decision(INC_WAIT) is None
    finally:
        subprocess.run([*tmux, "kill-server"], capture_output=True, timeout=20)
