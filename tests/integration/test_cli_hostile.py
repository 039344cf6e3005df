"""The CLI shows hostile text literally and harmlessly; its JSON stays the data it was.

Incidents and memory entries carry Rich markup, a route template, ESC and
OSC 8 sequences, a bidi override and a zero-width space. Every human output
(`incidents`, `memory search/show/list/stats`, `review --md`) is checked for
the escaped text and for the absence of anything a terminal acts on; the
Markdown is parsed by a real Markdown parser. Real CLI subprocesses, a real
incident log and a real memory store under a temporary home.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

from sre_space.incidents import Incident, IncidentLog
from sre_space.paths import Paths
from sre_space.safe_text import printable

import helpers

BOLD = "cart[bold]"
LINK = "[link=https://evil.example]pay[/link]"
ROUTE = "GET /items/[id]"
CLOSE = "stock[/]x"
ESC = "db\x1b[31mred\x1b]0;owned\x07"
OSC8 = "\x1b]8;;https://evil.example\x1b\\click\x1b]8;;\x1b\\"
BIDI = "pay\u202egnp.exe"
ZERO = "zero\u200bwidth"
NEVER = ("\x1b", "\x07", "\x9b", "\u202e", "\u200b")
ENTRIES = helpers.FIXTURES / "memory" / "entries.jsonl"
MEMORY_ID = "INC-20260101-0099"


def sre(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return helpers.sre(home, *args, check=True)


def assert_harmless(text: str) -> None:
    for bad in NEVER:
        assert bad not in text, repr(bad)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    log = IncidentLog(Paths(tmp_path).ensure().incidents_db)
    log.save(
        Incident(
            id="INC-20260101-0001",
            status="resolved",
            detected_at=time.time() - 60,
            signature=f"{BOLD}|{ROUTE}|error|`tick`",
            root_cause={"service": BOLD, "operation": ROUTE, "fault_class": "error"},
            remediation={"action": "restart", "params": {"why": ESC}, "outcome": LINK},
            hardening=[
                {
                    "status": "open",
                    "title": f"raise {CLOSE}",
                    "why": [BIDI, "*emphasis* <b>html</b>"],
                    "changes": [{"service": BOLD, "key": ZERO, "from": 1, "to": OSC8}],
                    "reasoning": [f"because {LINK}"],
                }
            ],
        )
    )
    log.save(
        Incident(
            id="INC-20260101-0002",
            status="resolved",
            detected_at=time.time() - 30,
            signature=f"{BOLD}|{ROUTE}|error|`tick`",
        )
    )
    log.close()
    return tmp_path


def test_incidents_text_is_escaped_and_json_is_the_data(home: Path) -> None:
    text = sre(home, "incidents").stdout
    assert_harmless(text)
    assert f"{BOLD} {ROUTE}" in text and LINK in text
    doc = json.loads(sre(home, "incidents", "--json").stdout)
    first = next(i for i in doc if i["id"] == "INC-20260101-0001")
    assert first["root_cause"]["service"] == BOLD  # JSON keeps the text as it came
    assert first["remediation"]["params"]["why"] == ESC
    view = sre(home, "incidents", "INC-20260101-0001").stdout
    assert_harmless(view)
    assert BOLD in view
    one = json.loads(sre(home, "incidents", "INC-20260101-0001", "--json").stdout)
    assert one["hardening"][0]["changes"][0]["to"] == OSC8


def test_review_markdown_renders_outside_text_as_text(home: Path) -> None:
    md = sre(home, "review", "--md").stdout
    assert_harmless(md)
    parser = MarkdownIt("commonmark").enable("table")
    tokens = [t for block in parser.parse(md) for t in (block.children or [block])]
    kinds = {t.type for t in tokens}
    assert not kinds & {"link_open", "em_open", "strong_open", "html_inline", "html_block"}
    html = parser.render(md)
    for shown in (BOLD, ROUTE, LINK, f"raise {CLOSE}", printable(BIDI), printable(OSC8)):
        assert shown.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;") in html, shown
    row = next(line for line in md.splitlines() if line.startswith("| INC-20260101-0001"))
    assert row.count(" | ") == 6  # seven cells: nothing in the text split a cell
    assert "<code>" in html and "`tick`" in html  # the signature, a code span holding backticks


def test_memory_output_is_escaped_and_json_is_the_data(tmp_path: Path) -> None:
    entry = json.loads(ENTRIES.read_text().splitlines()[0])
    entry.update(
        id=MEMORY_ID,
        service=BOLD,
        operation=ROUTE,
        summary=f"{LINK} {BIDI} {ZERO} {ESC}",
        diagnosis=OSC8,
        exception=f"{CLOSE}\x1b[2J",
        remediation={"action": "restart", "service": BOLD, "params": {"k": LINK}},
    )
    source = tmp_path / "hostile.jsonl"
    source.write_text(json.dumps(entry) + "\n")
    home = tmp_path / "home"
    sre(home, "memory", "import", str(source))

    search = sre(home, "memory", "search", "pay", "--k", "1").stdout
    show = sre(home, "memory", "show", MEMORY_ID).stdout
    listed = sre(home, "memory", "list").stdout
    stats = sre(home, "memory", "stats").stdout
    for out in (search, show, listed, stats):
        assert_harmless(out)
    assert f"{BOLD} {ROUTE}" in search and f"restart {BOLD} k={LINK}" in search
    assert f"{LINK} {printable(BIDI)} {printable(ZERO)} {printable(ESC)}" in search
    assert printable(OSC8) in show and CLOSE in show  # (the exception is stored as a template)
    assert BOLD in listed and BOLD in stats

    hits = json.loads(sre(home, "memory", "search", "pay", "--k", "1", "--json").stdout)
    assert hits[0]["summary"] == entry["summary"]
    shown = json.loads(sre(home, "memory", "show", MEMORY_ID, "--json").stdout)
    assert shown["diagnosis"] == OSC8 and shown["service"] == BOLD


def test_analyze_prints_hostile_services_escaped(tmp_path: Path) -> None:
    from rca_synth import Fault, to_otlp_json, window

    hostile = f"{BOLD}{ESC}{BIDI}"
    spans = window(120, Fault(error="payments"), seed=2)
    for trace in spans:
        for span in trace:
            if span.service == "payments":
                span.service, span.name = hostile, LINK
    path = tmp_path / "hostile.otlp.json"
    path.write_text(json.dumps(to_otlp_json(spans)))
    text = sre(tmp_path, "analyze", str(path)).stdout
    assert_harmless(text)
    assert printable(hostile) in text
    doc = json.loads(sre(tmp_path, "analyze", str(path), "--json").stdout)
    assert hostile in {c["service"] for c in doc["candidates"]}
