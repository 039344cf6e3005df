"""Every pane of the cockpit shows hostile names literally, with no markup and no escapes.

Spans, services, memory hits, squad events and a trace id carry Rich markup,
a route template with brackets, a stray ``[/]``, ESC and OSC 8 sequences, a
bidi override and a zero-width space. Driven by Textual's Pilot against a real
incident log and trace store; what is checked is the screen the compositor
draws: the literal text is there, no segment carries a link, no control or
invisible character reaches the terminal.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import Static

from sre_space.incidents import AWAITING_APPROVAL, Incident
from sre_space.safe_text import printable
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.telemetry.store import TraceStore
from sre_space.tui.app import SreSpaceApp
from sre_space.tui.screens import ConfirmScreen
from sre_space.tui.widgets import (
    IncidentTable,
    MemoryHits,
    SpanDetails,
    SquadTerminal,
    StatusBar,
    Waterfall,
)
from tui_helpers import home_with, run, until

BOLD = "cart[bold]"
LINK = "[link=https://evil.example]pay[/link]"
ROUTE = "GET /items/[id]"
CLOSE = "stock[/]x"
ESC = "db\x1b[31mred\x1b[0m"
OSC8 = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
BIDI = "pay\u202egnp.exe"
ZERO = "zero\u200bwidth"
HOSTILE = [BOLD, LINK, ROUTE, CLOSE, ESC, OSC8, BIDI, ZERO]
# Shown as: markup literally, ESC as ?, invisibles as <U+XXXX>.
assert printable(ESC) == "db?[31mred?[0m" and printable(BIDI) == "pay<U+202E>gnp.exe"

MS = 1_000_000
T0 = 1_767_225_600 * 1_000_000_000
TRACE = "[b]4bf92f\x1b[2J35"  # a trace id from a mind's API is outside text too
WAIT = "INC-[bold]0002\u202e"  # an id from an imported log is outside text too
DONE = "INC-20260101-0001"
NEVER_ON_SCREEN = ("\x1b", "\x9b", "\x9d", "\x07", "\u202e", "\u200b")


def spans() -> list[Span]:
    def span(sid: int, parent: int | None, name: str, service: str, error: bool = False) -> Span:
        return Span(
            TRACE,
            f"{sid:016x}",
            f"{parent:016x}" if parent is not None else None,
            service,
            name,
            T0 + sid * MS,
            T0 + (100 - sid) * MS,
            SpanKind.SERVER,
            error,
            f"failed: {LINK} {ESC}" if error else "",
            {f"{BOLD}.key": f"{LINK} {BIDI}", "http.route": ROUTE},
            [SpanEvent(f"exception {CLOSE}", T0 + 50 * MS, {"exception.message": OSC8})],
            {"service.name": service},
        )

    return [
        span(1, None, LINK, BOLD),
        span(2, 1, ROUTE, CLOSE),
        span(3, 2, ESC, BOLD),
        span(4, 2, OSC8, CLOSE, error=True),
        span(5, 1, BIDI, BOLD),
        span(6, 1, ZERO, CLOSE),
    ]


def hostile_incident(incident_id: str, outcome: str, status: str) -> Incident:
    return Incident(
        id=incident_id,
        status=status,
        detected_at=time.time() - (10 if incident_id == WAIT else 600),
        signature="sig",
        root_cause={
            "service": BOLD,
            "operation": ROUTE,
            "fault_class": "saturation",
            "evidence": {"exemplar_trace_ids": [TRACE]},
        },
        remediation={
            "action": "restart",
            "service": CLOSE,
            "params": {"[b]why": ESC},
            "source": "memory",
            "outcome": outcome,
        },
        memory_hits=[
            {
                "id": LINK,
                "score": 0.9,
                "summary": f"{BIDI} {ZERO} {OSC8}",
                "service": BOLD,
                "remediation": {"action": CLOSE, "params": {"k": ROUTE}},
                "outcome": "recovered",
            }
        ],
    )


def rendered(app: SreSpaceApp) -> tuple[str, list[Any]]:
    """The whole screen as the terminal gets it: its text and its segments."""
    strips = app.screen._compositor.render_strips()
    segments = [seg for strip in strips for seg in strip]
    return "\n".join(strip.text for strip in strips), segments


def assert_clean(app: SreSpaceApp) -> str:
    text, segments = rendered(app)
    for bad in NEVER_ON_SCREEN:
        assert bad not in text, repr(bad)
    linked = [seg.text for seg in segments if seg.style is not None and seg.style.link]
    assert not linked, linked  # no markup became a hyperlink
    return text


def test_every_pane_shows_hostile_names_literally(tmp_path: Path) -> None:
    settings, log = home_with(
        tmp_path,
        hostile_incident(DONE, LINK, "resolved"),
        hostile_incident(WAIT, AWAITING_APPROVAL, "mitigating"),
    )
    for name in HOSTILE:
        log.emit("brain", f"root cause {name}", incident_id=WAIT)
    store = TraceStore()
    store.add(spans())
    app = SreSpaceApp(settings, readonly=False, span_source=store.trace)
    app.host.readonly = True  # observe: no mind of our own, but the approve dialog works

    async def scenario(pilot: Pilot[Any]) -> None:
        table = app.query_one(IncidentTable)
        waterfall = app.query_one(Waterfall)
        await until(pilot, lambda: table.row_count == 2 and waterfall.trace_id == TRACE)

        # The incidents: cells are Text, literal, with no style from the text itself.
        cause = table.get_cell(WAIT, "cause")
        assert isinstance(cause, Text) and cause.plain == f"{BOLD} {ROUTE}" and not cause.spans
        assert table.get_cell(WAIT, "fix").plain == f"restart [b]why={printable(ESC)}"

        # The waterfall: every span name, as drawn on screen; its title shows the trace id.
        screen = "\n".join(waterfall.visible_text())
        for name in (LINK, ROUTE, ESC, OSC8, BIDI, ZERO):  # the span names
            assert printable(name) in screen, printable(name)
        assert waterfall._border_title is not None
        assert waterfall._border_title.plain.startswith(f"trace {printable(TRACE[:12])}")

        # The side panel: the failed span's attributes, events and message; its title.
        await pilot.press("enter")  # into the waterfall (the table posts its selection)
        await until(pilot, lambda: isinstance(app.focused, Waterfall))
        await pilot.press("e")  # to the failed span
        details = app.query_one(SpanDetails)
        await until(pilot, lambda: f"failed: {LINK}" in details.text)
        for shown in (f"{BOLD}.key", LINK, printable(BIDI), ROUTE, f"exception {CLOSE}", CLOSE):
            assert shown in details.text, shown
        assert details._border_title is not None
        assert details._border_title.plain == f"span {printable(OSC8)}"

        # Memory hits and the squad terminal.
        memory = app.query_one(MemoryHits).text
        for shown in (LINK, BOLD, printable(BIDI), printable(ZERO), CLOSE, f"k={ROUTE}"):
            assert shown in memory, shown
        terminal = app.query_one(SquadTerminal)
        await until(pilot, lambda: printable(ZERO) in terminal.text)
        for name in HOSTILE:
            assert f"root cause {printable(name)}" in terminal.text
        # The status line and the memory pane's title name the waiting incident literally.
        assert f"awaiting approval {printable(WAIT)}" in str(app.query_one(StatusBar).content)
        assert app.query_one(MemoryHits)._border_title is not None
        assert app.query_one(MemoryHits)._border_title.plain == f"memory · {printable(WAIT)}"
        text = assert_clean(app)
        assert BOLD in text and LINK in text and ROUTE in text and CLOSE in text
        assert printable(WAIT) in text

        # The approve dialog quotes the plan literally.
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        question = app.screen.query_one("#question", Static)
        assert f"restart {CLOSE} [b]why={printable(ESC)}" in str(question.render())
        assert CLOSE in assert_clean(app)
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmScreen))

        # A notification quoting the log (the other incident's outcome) shows it literally.
        await pilot.press("escape", "escape", "j", "enter")
        await until(pilot, lambda: app.selected_id == DONE)
        await pilot.press("a")
        await until(pilot, lambda: any(LINK in n.message for n in app._notifications))
        await pilot.pause(0.1)
        assert LINK in assert_clean(app)
        await pilot.press("q")

    run(app, scenario, (200, 50))
    log.close()
