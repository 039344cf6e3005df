"""The waterfall's layout (no textual): tree, folds, filter, sort, critical path, cells."""

from __future__ import annotations

import json
import subprocess
import sys

from sre_space.incidents import Incident
from sre_space.mind import span_json
from sre_space.telemetry.model import Span, SpanEvent, SpanKind
from sre_space.tui.traces import exemplar_trace_ids, span_from_json
from sre_space.tui.waterfall_model import (
    TraceTree,
    WaterfallView,
    axis,
    bar_cells,
    critical_path,
    format_duration,
    span_details,
    tree_prefix,
)

MS = 1_000_000
T0 = 1_700_000_000 * 1_000_000_000
TRACE = "ab" * 16


def span(
    sid: str,
    parent: str | None,
    start_ms: float,
    end_ms: float,
    name: str | None = None,
    service: str = "frontend",
    error: bool = False,
) -> Span:
    return Span(
        TRACE,
        sid,
        parent,
        service,
        name or f"op-{sid}",
        T0 + int(start_ms * MS),
        T0 + int(end_ms * MS),
        error=error,
    )


def checkout_trace() -> list[Span]:
    # root 0-100 ─┬ a 10-40 ── a1 12-20 (failed)
    #             └ b 30-90 ─┬ b1 31-50
    #                        └ b2 50-88
    return [
        span("root", None, 0, 100, "GET /checkout"),
        span("a", "root", 10, 40, "inventory.check", "inventory"),
        span("a1", "a", 12, 20, "SELECT stock", "db", error=True),
        span("b", "root", 30, 90, "POST /charge", "payments"),
        span("b1", "b", 31, 50, "auth", "payments"),
        span("b2", "b", 50, 88, "INSERT charge", "db"),
    ]


def names(view: WaterfallView) -> list[str]:
    return [row.span.span_id for row in view.rows]


def test_empty_trace_lays_out_nothing_and_never_divides_by_zero() -> None:
    view = WaterfallView([])
    assert view.rows == [] and len(view.tree) == 0
    assert view.critical == {}
    assert view.tree.duration_ns == 0
    view.collapse_all()
    view.expand_all()
    view.set_filter("anything")
    view.next_sort()
    assert view.rows == []
    assert bar_cells(0, 0, 0, 0, 40) == (0, 1)
    assert axis(0, 40).startswith("0")


def test_tree_in_start_order_with_guides() -> None:
    view = WaterfallView(reversed(checkout_trace()))  # arrival order must not matter
    assert names(view) == ["root", "a", "a1", "b", "b1", "b2"]
    prefixes = [tree_prefix(view.rows, i, 20) for i in range(len(view.rows))]
    assert prefixes == ["", "├─", "│ └─", "└─", "  ├─", "  └─"]
    assert view.tree.services == ["frontend", "inventory", "db", "payments"]
    assert view.tree.errors == 1 and view.tree.max_depth == 2
    assert view.tree.nodes["root"].failed_below and view.tree.nodes["a"].failed_below
    assert not view.tree.nodes["b"].failed_below


def test_partial_trace_missing_parent_becomes_a_root() -> None:
    spans = [s for s in checkout_trace() if s.span_id != "b"]  # b never arrived
    view = WaterfallView(spans)
    roots = [row.span.span_id for row in view.rows if row.parent_row < 0]
    assert roots == ["root", "b1", "b2"]
    assert view.tree.nodes["b1"].orphan and not view.tree.nodes["root"].orphan
    assert "b1" in view.critical or "root" in view.critical


def test_cycles_and_duplicates_do_not_hang() -> None:
    spans = [
        span("x", "y", 0, 10),
        span("y", "x", 1, 5),
        span("x", "y", 0, 10),
        span("s", "s", 2, 3),
    ]
    view = WaterfallView(spans)
    assert sorted(names(view)) == ["s", "x", "y"]
    assert len(view.rows) == 3


def test_fold_one_level_keeps_inner_folds_and_marks_hidden_failures() -> None:
    view = WaterfallView(checkout_trace())
    view.toggle("a")  # a's child a1 failed
    assert names(view) == ["root", "a", "b", "b1", "b2"]
    row_a = view.rows[view.index_of("a") or 0]
    assert row_a.collapsed and row_a.hidden_failure
    view.toggle("b")
    assert names(view) == ["root", "a", "b"]
    b = view.rows[2]
    assert b.collapsed and not b.hidden_failure  # nothing failed under b
    view.toggle("root")
    assert names(view) == ["root"]
    assert view.rows[0].hidden_failure
    view.toggle("root")  # unfold one level: a and b stay folded
    assert names(view) == ["root", "a", "b"]
    view.expand_all()
    assert len(view.rows) == 6
    view.collapse_all()
    assert names(view) == ["root"]
    assert not view.collapse("a1")  # a leaf has nothing to fold
    view.toggle("a1")
    assert names(view) == ["root"]


def test_sort_by_latency_puts_the_slowest_sibling_first() -> None:
    view = WaterfallView(checkout_trace())
    assert view.next_sort() == "latency"
    assert names(view) == ["root", "b", "b2", "b1", "a", "a1"]
    assert view.next_sort() == "start"
    assert names(view) == ["root", "a", "a1", "b", "b1", "b2"]


def test_filter_by_name_keeps_ancestors_as_context() -> None:
    view = WaterfallView(checkout_trace())
    view.collapse_all()  # a filter shows matches even under folds
    view.set_filter("  insert ")
    assert names(view) == ["root", "b", "b2"]
    assert [r.matched for r in view.rows] == [False, False, True]
    view.set_filter("nothing matches")
    assert view.rows == []
    view.set_filter("")
    assert names(view) == ["root"]  # folds come back with the filter cleared


def test_critical_path_follows_the_last_finishing_child() -> None:
    path = critical_path(TraceTree(checkout_trace()))
    ms = {sid: [((a - T0) / MS, (b - T0) / MS) for a, b in parts] for sid, parts in path.items()}
    # root waits for b (ends 90), b for b2 then b1; a overlaps b and is not critical.
    assert ms["root"] == [(0, 30), (90, 100)]
    assert ms["b"] == [(30, 31), (88, 90)]
    assert ms["b2"] == [(50, 88)]
    assert ms["b1"] == [(31, 50)]
    assert "a" not in ms and "a1" not in ms


def test_children_outside_their_parent_are_clipped() -> None:
    spans = [span("p", None, 10, 20), span("c", "p", 5, 30)]  # clock skew
    tree = TraceTree(spans)
    c = tree.nodes["c"]
    assert (c.start_ns - T0, c.end_ns - T0) == (10 * MS, 20 * MS)
    path = critical_path(tree)
    assert path["c"] == [(T0 + 10 * MS, T0 + 20 * MS)]


def test_zero_duration_spans_terminate() -> None:
    spans = [span("p", None, 0, 10)] + [span(f"z{i}", "p", 5, 5) for i in range(50)]
    view = WaterfallView(spans)
    assert len(view.rows) == 51
    assert "p" in view.critical


def test_bars_are_placed_by_time() -> None:
    assert bar_cells(T0, T0 + 100, T0, 100, 50) == (0, 50)
    assert bar_cells(T0 + 50, T0 + 75, T0, 100, 40) == (20, 30)
    assert bar_cells(T0 + 99, T0 + 99, T0, 100, 10) == (9, 10)  # at least one cell
    assert bar_cells(T0 + 100, T0 + 100, T0, 100, 10) == (9, 10)  # never past the edge
    assert bar_cells(T0, T0 + 1, T0, 100, 0) == (0, 0)


def test_axis_and_durations() -> None:
    line = axis(100 * MS, 60)
    assert len(line) == 60 and line.startswith("0") and line.rstrip().endswith("100ms")
    assert "50.0ms" in line
    assert len(axis(100 * MS, 5)) == 5
    assert format_duration(850) == "850ns"
    assert format_duration(12_345) == "12µs"
    assert format_duration(1_234_567) == "1.23ms"
    assert format_duration(1_500_000_000) == "1.50s"


def test_span_details_sections() -> None:
    s = span("a1", "a", 12, 20, "SELECT stock", "db", error=True)
    s.attributes = {"db.system": "sqlite", "rows": [1, 2]}
    s.events = [SpanEvent("exception", T0 + 15 * MS, {"exception.message": "timeout"})]
    s.resource = {"service.name": "db"}
    sections = dict(span_details(s, T0))
    assert ("status", "ERROR") in sections["span"]
    assert ("error", "timeout") in sections["span"]
    assert ("rows", "[1, 2]") in sections["attributes"]
    assert sections["events"] == [("+15.0ms", "exception exception.message=timeout")]
    assert sections["resource"] == [("service.name", "db")]


def test_ten_thousand_spans_deep_and_wide_lay_out() -> None:
    """Deep and wide trees lay out without recursion; how fast is benchmarks/tui.py's figure."""
    chain = [span("c0", None, 0, 10_000)]
    chain += [span(f"c{i}", f"c{i - 1}", i * 0.1, 10_000 - i * 0.1) for i in range(1, 10_000)]
    view = WaterfallView(chain)
    assert len(view.rows) == 10_000 and view.tree.max_depth == 9_999
    assert len(view.critical) == 10_000
    deep = tree_prefix(view.rows, 9_999, 12)
    assert deep.startswith("…") and len(deep) < 30
    view.collapse_all()
    assert len(view.rows) == 1
    wide = [span("r", None, 0, 1000)] + [
        span(f"w{i}", "r", i % 997, i % 997 + 3) for i in range(9_999)
    ]
    view = WaterfallView(wide)
    view.next_sort()
    assert len(view.rows) == 10_000
    assert sys.getrecursionlimit() < 10_000  # nothing above relied on recursion


def test_layout_and_trace_source_do_not_import_textual() -> None:
    code = (
        "import sys, sre_space.tui.waterfall_model, sre_space.tui.traces; "
        "assert 'textual' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_spans_round_trip_through_the_mind_api_json() -> None:
    s = span("a1", "a", 12, 20, "SELECT stock", "db", error=True)
    s.attributes = {"db.system": "sqlite"}
    s.events = [SpanEvent("exception", T0 + 15 * MS, {"exception.message": "timeout"})]
    s.resource = {"service.name": "db"}
    doc = json.loads(json.dumps(span_json(s)))  # what /trace?id= sends
    assert span_from_json(doc) == s
    root = span_from_json({**doc, "parent_id": None, "kind": 99})
    assert root.parent_id is None and root.kind == SpanKind.UNSPECIFIED


def test_exemplar_trace_ids_tolerate_a_diagnosis_in_progress() -> None:
    def inc(root_cause: dict[str, object]) -> Incident:
        return Incident(id="INC-1", status="open", detected_at=0.0, root_cause=root_cause)

    assert exemplar_trace_ids(None) == []
    assert exemplar_trace_ids(inc({})) == []
    assert exemplar_trace_ids(inc({"evidence": "?"})) == []
    assert exemplar_trace_ids(inc({"evidence": {"exemplar_trace_ids": "x"}})) == []
    assert exemplar_trace_ids(inc({"evidence": {"exemplar_trace_ids": ["t1", "", "t2"]}})) == [
        "t1",
        "t2",
    ]
