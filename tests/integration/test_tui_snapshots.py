"""SVG snapshots of the cockpit at a fixed size (pytest-textual-snapshot).

Update after a deliberate change with ``pytest tests/integration/test_tui_snapshots.py
--snapshot-update`` and look at the new SVGs before committing them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable

from sre_space.incidents import AWAITING_APPROVAL, Event
from sre_space.telemetry.model import Span
from sre_space.tui.app import SreSpaceApp
from sre_space.tui.widgets import SquadTerminal, Waterfall
from test_tui_cockpit import (
    INC_DONE,
    INC_WAIT,
    MISSING,
    PARTIAL,
    TRACE,
    checkout_trace,
    incident,
    make_home,
    partial_trace,
    store_with,
)

pytest.importorskip("pytest_textual_snapshot")

SIZE = (120, 34)
NOON = 1_767_268_800.0  # 2026-01-01 12:00 UTC: the squad lines' clock, fixed

SnapCompare = Callable[..., bool]


def cockpit(tmp_path: Path, traces: list[str], spans: list[list[Span]]) -> SreSpaceApp:
    settings, _ = make_home(
        tmp_path,
        incident(INC_DONE, [PARTIAL], "recovered", status="resolved", age_s=600),
        incident(INC_WAIT, traces, AWAITING_APPROVAL, age_s=30),
    )
    store = store_with(*spans)
    return SreSpaceApp(settings, readonly=True, span_source=store.trace)


def settled(
    trace_id: str, keys: tuple[str, ...] = (), shows: str = ""
) -> Callable[[Pilot[Any]], Any]:
    """Wait for the trace (or ``shows`` in the waterfall), then fix the clock-dependent lines."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, SreSpaceApp)
        deadline = time.monotonic() + 15
        while not app.query(Waterfall):  # the cockpit screen composes its panes once running
            assert time.monotonic() < deadline, "the cockpit did not compose"
            await pilot.pause(0.05)
        wf = app.query_one(Waterfall)
        while not (
            app.query_one(DataTable).row_count == 2
            and wf.trace_id == trace_id
            and shows in " ".join(wf.visible_text())
        ):
            assert time.monotonic() < deadline, "the cockpit did not settle"
            await pilot.pause(0.05)
        terminal = app.query_one(SquadTerminal)
        terminal.clear()
        terminal.add_events(
            [
                Event(1, INC_WAIT, NOON, "scout", "step", "error rate 38% on checkout", {}),
                Event(
                    2, INC_WAIT, NOON + 1, "brain", "step", "root cause checkout (saturation)", {}
                ),
                Event(
                    3, INC_WAIT, NOON + 2, "fixer", "step", "awaiting approval: patch_config", {}
                ),
            ]
        )
        if keys:
            await pilot.press(*keys)
        await pilot.pause(0.1)

    return run_before


def test_snapshot_awaiting_approval(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = cockpit(tmp_path, [TRACE], [checkout_trace()])
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(TRACE))


def test_snapshot_failed_span_under_a_collapsed_parent(
    snap_compare: SnapCompare, tmp_path: Path
) -> None:
    app = cockpit(tmp_path, [TRACE], [checkout_trace()])
    # Into the trace, down to db.acquire, fold it: its failed child shows as (!).
    keys = ("enter", "j", "j", "j", "space")
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(TRACE, keys))


def test_snapshot_partial_trace(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = cockpit(tmp_path, [PARTIAL], [partial_trace()])
    assert snap_compare(app, terminal_size=SIZE, run_before=settled(PARTIAL))


def test_snapshot_empty_trace(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = cockpit(tmp_path, [MISSING], [])
    assert snap_compare(app, terminal_size=SIZE, run_before=settled("", shows="not held"))


def test_snapshot_80x24(snap_compare: SnapCompare, tmp_path: Path) -> None:
    app = cockpit(tmp_path, [TRACE], [checkout_trace()])
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled(TRACE))
