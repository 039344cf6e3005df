"""The trace waterfall's layout, without textual: tree, folds, critical path, bars.

The widget (``widgets/waterfall.py``) asks this module what to draw and draws
only the lines on screen; everything here is plain data so it is tested fast
and a 10,000-span trace is laid out once, not per frame.

- :class:`TraceTree` builds the span tree. A span whose parent is not in the
  trace (a partial trace) becomes a root, marked ``orphan``; a cycle in bad
  data is broken the same way. Nothing recurses, so a trace 10,000 spans deep
  is fine.
- :func:`critical_path` finds, per root, the chain of work that decided the
  trace's end (the last-finishing child, then whatever ran before it), as
  segments of each span's time.
- :class:`WaterfallView` flattens the tree into the rows on screen, given the
  folds, the sort (start or latency) and a name filter.
- :func:`bar_cells`, :func:`axis`, :func:`tree_prefix` place things in cells.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from sre_space.safe_text import NAME_LIMIT, printable
from sre_space.telemetry.model import Span

SortKey = Literal["start", "latency"]
SORTS: tuple[SortKey, ...] = ("start", "latency")


@dataclass(slots=True, eq=False)
class Node:
    span: Span
    parent: Node | None = None
    children: list[Node] = field(default_factory=list)
    depth: int = 0
    orphan: bool = False  # it names a parent the trace does not hold
    failed_below: bool = False  # some descendant failed
    # Times clipped into the parent's (clock skew must not draw a child outside it).
    start_ns: int = 0
    end_ns: int = 0

    @property
    def span_id(self) -> str:
        return self.span.span_id

    @property
    def duration_ns(self) -> int:
        return max(0, self.span.end_ns - self.span.start_ns)


class TraceTree:
    """The spans of one trace as a forest (several roots when the trace is partial)."""

    def __init__(self, spans: Iterable[Span]) -> None:
        self.nodes: dict[str, Node] = {}
        for span in spans:
            if span.span_id in self.nodes:  # a duplicate delivery: keep the first
                continue
            self.nodes[span.span_id] = Node(span)
        self.roots: list[Node] = []
        for node in self.nodes.values():
            parent_id = node.span.parent_id
            parent = self.nodes.get(parent_id) if parent_id else None
            if parent is None or parent is node:
                node.orphan = bool(parent_id)
                self.roots.append(node)
            else:
                node.parent = parent
                parent.children.append(node)
        self._break_cycles()
        self.start_ns = min((n.span.start_ns for n in self.nodes.values()), default=0)
        self.end_ns = max((n.span.end_ns for n in self.nodes.values()), default=0)
        self.end_ns = max(self.end_ns, self.start_ns)
        self.services: list[str] = []
        seen: set[str] = set()
        for node in self.walk(self._by_start(self.roots), sort="start"):
            if node.span.service not in seen:
                seen.add(node.span.service)
                self.services.append(node.span.service)
        self.errors = sum(1 for n in self.nodes.values() if n.span.error)
        self.orphans = sum(1 for n in self.roots if n.orphan)  # > 0: a partial trace
        self.max_depth = max((n.depth for n in self.nodes.values()), default=0)

    def __len__(self) -> int:
        return len(self.nodes)

    @property
    def duration_ns(self) -> int:
        return self.end_ns - self.start_ns

    def _break_cycles(self) -> None:
        """Set depths and clipped times top-down; a node not reached from a root is in a cycle."""
        reached: set[int] = set()

        def settle(roots: list[Node]) -> None:
            stack = list(roots)
            for root in roots:
                root.depth = 0
                root.start_ns = root.span.start_ns
                root.end_ns = max(root.span.end_ns, root.span.start_ns)
            while stack:
                node = stack.pop()
                reached.add(id(node))
                for child in node.children:
                    child.depth = node.depth + 1
                    child.start_ns = min(max(child.span.start_ns, node.start_ns), node.end_ns)
                    child.end_ns = max(min(child.span.end_ns, node.end_ns), child.start_ns)
                    stack.append(child)

        settle(self.roots)
        for node in list(self.nodes.values()):
            if id(node) in reached:
                continue
            # In a cycle: cut it above this node and hang the rest from here.
            if node.parent is not None:
                node.parent.children.remove(node)
                node.parent = None
            node.orphan = True
            self.roots.append(node)
            settle([node])
        self._mark_failed_below()

    def _mark_failed_below(self) -> None:
        order: list[Node] = []
        stack = list(self.roots)
        while stack:
            node = stack.pop()
            order.append(node)
            stack.extend(node.children)
        for node in reversed(order):  # children before parents
            node.failed_below = any(c.span.error or c.failed_below for c in node.children)

    @staticmethod
    def _by_start(nodes: Sequence[Node]) -> list[Node]:
        return sorted(nodes, key=lambda n: (n.span.start_ns, n.span.span_id))

    @staticmethod
    def ordered(nodes: Sequence[Node], sort: SortKey) -> list[Node]:
        if sort == "latency":
            return sorted(nodes, key=lambda n: (-n.duration_ns, n.span.start_ns, n.span.span_id))
        return TraceTree._by_start(nodes)

    def walk(self, roots: Sequence[Node], sort: SortKey = "start") -> Iterable[Node]:
        """Depth-first, children in ``sort`` order."""
        stack = list(reversed(self.ordered(roots, sort)))
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(self.ordered(node.children, sort)))


# --- critical path -----------------------------------------------------------------


def critical_path(tree: TraceTree) -> dict[str, list[tuple[int, int]]]:
    """Per span id, the (start, end) segments of its time on the critical path.

    From each root's end, walk back: the child that finished last (before the
    point reached so far) is what the parent waited for; the parent's own
    time between children is its share. Children are clipped to their parent.
    """
    segments: dict[str, list[tuple[int, int]]] = {}

    def add(node: Node, start: int, end: int) -> None:
        if end > start or (end == start and node.duration_ns == 0):
            segments.setdefault(node.span_id, []).append((start, end))

    for root in tree.roots:
        by_end: dict[int, list[Node]] = {}
        cursor: dict[int, int] = {}
        node: Node | None = root
        limit = root.end_ns
        while node is not None:
            key = id(node)
            kids = by_end.get(key)
            if kids is None:
                kids = by_end[key] = sorted(node.children, key=lambda c: c.end_ns, reverse=True)
                cursor[key] = 0
            i = cursor[key]
            # Children ending after the point reached overlap the one chosen: not critical.
            while i < len(kids) and kids[i].end_ns > limit:
                i += 1
            if i < len(kids):
                child = kids[i]
                cursor[key] = i + 1
                add(node, child.end_ns, limit)
                node, limit = child, child.end_ns
                continue
            cursor[key] = i
            add(node, node.start_ns, limit)
            if node is root:
                break
            limit = node.start_ns
            node = node.parent
    for parts in segments.values():
        parts.sort()
    return segments


# --- the rows on screen ------------------------------------------------------------


@dataclass(slots=True, eq=False)
class Row:
    node: Node
    parent_row: int  # index of the parent's row, -1 for a root
    last: bool = True  # the last of its shown siblings (└ rather than ├)
    has_children: bool = False  # children exist (shown or folded away)
    collapsed: bool = False
    hidden_failure: bool = False  # collapsed, and a descendant failed
    matched: bool = True  # false for an ancestor shown only as a match's context

    @property
    def span(self) -> Span:
        return self.node.span


class WaterfallView:
    """What the waterfall shows: the tree with folds, a sort and a name filter."""

    def __init__(self, spans: Iterable[Span] = ()) -> None:
        self.tree = TraceTree(spans)
        self.collapsed: set[str] = set()
        self.sort: SortKey = "start"
        self.filter = ""
        self.critical = critical_path(self.tree)
        self.rows: list[Row] = []
        self._index: dict[str, int] = {}
        self.relayout()

    def __len__(self) -> int:
        return len(self.rows)

    # --- changing the view -------------------------------------------------------

    def relayout(self) -> None:
        needle = self.filter.casefold()
        shown: set[int] | None = None
        if needle:
            shown = set()
            for node in self.tree.nodes.values():
                if needle in node.span.name.casefold():
                    up: Node | None = node
                    while up is not None and id(up) not in shown:
                        shown.add(id(up))
                        up = up.parent
        rows: list[Row] = []
        # (node, parent row index, last among shown siblings)
        stack: list[tuple[Node, int, bool]] = []

        def push(nodes: Sequence[Node], parent_row: int) -> None:
            kids = [
                n for n in self.tree.ordered(nodes, self.sort) if shown is None or id(n) in shown
            ]
            for pos, kid in enumerate(reversed(kids)):
                stack.append((kid, parent_row, pos == 0))

        push(self.tree.roots, -1)
        while stack:
            node, parent_row, last = stack.pop()
            folded = shown is None and node.span_id in self.collapsed and bool(node.children)
            row = Row(
                node,
                parent_row,
                last=last,
                has_children=bool(node.children),
                collapsed=folded,
                hidden_failure=folded and node.failed_below,
                matched=shown is None or needle in node.span.name.casefold(),
            )
            rows.append(row)
            if not folded:
                push(node.children, len(rows) - 1)
        self.rows = rows
        self._index = {row.node.span_id: i for i, row in enumerate(rows)}
        # What the name column needs: the deepest guides and the longest name (+ a flag).
        self.depth_shown = max((r.node.depth for r in rows), default=0)
        self.longest_name = max(
            (
                len(shown_name(r.span)) + (4 if r.span.error or r.hidden_failure else 0)
                for r in rows
            ),
            default=0,
        )

    def index_of(self, span_id: str) -> int | None:
        return self._index.get(span_id)

    def toggle(self, span_id: str) -> None:
        """Fold or unfold one span (one level: its children's own folds are kept)."""
        node = self.tree.nodes.get(span_id)
        if node is None or not node.children:
            return
        if span_id in self.collapsed:
            self.collapsed.discard(span_id)
        else:
            self.collapsed.add(span_id)
        self.relayout()

    def collapse(self, span_id: str) -> bool:
        node = self.tree.nodes.get(span_id)
        if node is None or not node.children or span_id in self.collapsed:
            return False
        self.collapsed.add(span_id)
        self.relayout()
        return True

    def expand(self, span_id: str) -> bool:
        if span_id not in self.collapsed:
            return False
        self.collapsed.discard(span_id)
        self.relayout()
        return True

    def collapse_all(self) -> None:
        """Fold every span with children: only the roots remain."""
        self.collapsed = {sid for sid, n in self.tree.nodes.items() if n.children}
        self.relayout()

    def expand_all(self) -> None:
        self.collapsed.clear()
        self.relayout()

    def set_sort(self, sort: SortKey) -> None:
        self.sort = sort
        self.relayout()

    def next_sort(self) -> SortKey:
        self.set_sort(SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)])
        return self.sort

    def set_filter(self, text: str) -> None:
        self.filter = text.strip()
        self.relayout()

    def on_critical_path(self, span_id: str) -> bool:
        return span_id in self.critical


# --- cells ----------------------------------------------------------------------------


def tree_prefix(rows: Sequence[Row], index: int, max_levels: int) -> str:
    """The guides before a row's name: ``│ `` per open ancestor, then ``├─``/``└─``.

    Only the deepest ``max_levels`` levels are drawn (a ``…`` stands for the
    rest), so a very deep trace costs the same per line as a flat one.
    """
    row = rows[index]
    if row.parent_row < 0:
        return ""
    parts = ["└─" if row.last else "├─"]
    up = row.parent_row
    levels = 1
    while up >= 0 and rows[up].parent_row >= 0:
        if levels >= max_levels:
            parts.append("…")
            break
        parts.append("  " if rows[up].last else "│ ")
        up = rows[up].parent_row
        levels += 1
    return "".join(reversed(parts))


def bar_cells(start_ns: int, end_ns: int, t0: int, total_ns: int, width: int) -> tuple[int, int]:
    """Columns [first, last) of a bar placed by time in ``width`` cells (at least one cell)."""
    if width <= 0:
        return 0, 0
    total = max(total_ns, 1)
    first = math.floor((start_ns - t0) * width / total)
    last = math.ceil((end_ns - t0) * width / total)
    first = min(max(first, 0), width - 1)
    last = min(max(last, first + 1), width)
    return first, last


def format_duration(ns: int | float) -> str:
    ns = max(0.0, float(ns))
    if ns < 1_000:
        return f"{ns:.0f}ns"
    if ns < 1_000_000:
        return f"{ns / 1e3:.0f}µs"
    if ns < 10_000_000:
        return f"{ns / 1e6:.2f}ms"
    if ns < 1_000_000_000:
        return f"{ns / 1e6:.0f}ms" if ns >= 100_000_000 else f"{ns / 1e6:.1f}ms"
    if ns < 60_000_000_000:
        return f"{ns / 1e9:.2f}s"
    return f"{ns / 6e10:.1f}m"


def axis(total_ns: int, width: int, ticks: int = 4) -> str:
    """A time axis ``width`` cells wide: tick labels from 0 to the trace's duration.

    The end label is placed first so it always shows; a middle label that
    would touch another is left out.
    """
    if width <= 0:
        return ""
    cells = [" "] * width
    steps = max(1, min(ticks, width // 12))
    order = [steps, *range(steps)]  # the end first, then 0, 1, ...
    for k in order:
        label = "0" if k == 0 else format_duration(total_ns * k / steps)
        if len(label) > width:
            continue
        col = round(k * (width - 1) / steps)
        at = col if k < steps else width - len(label)
        at = max(0, min(at - (len(label) // 2 if 0 < k < steps else 0), width - len(label)))
        if any(c != " " for c in cells[max(0, at - 1) : at + len(label) + 1]):
            continue
        cells[at : at + len(label)] = label
    return "".join(cells)


def shown_name(span: Span) -> str:
    """The span's name as the waterfall draws it: escaped and capped (safe_text)."""
    return printable(span.name, NAME_LIMIT)


def span_details(
    span: Span, trace_start_ns: int, parent_missing: bool = False
) -> list[tuple[str, list[tuple[str, str]]]]:
    """The side panel's sections: (title, [(key, value)]) for one span."""
    summary = [
        ("service", span.service),
        ("name", span.name),
        ("kind", span.kind.name.lower() if hasattr(span.kind, "name") else str(span.kind)),
        ("duration", format_duration(span.end_ns - span.start_ns)),
        ("start", f"+{format_duration(span.start_ns - trace_start_ns)}"),
        ("status", "ERROR" if span.error else "ok"),
    ]
    if span.error and span.exception_message:
        summary.append(("error", span.exception_message))
    summary += [("span", span.span_id), ("parent", span.parent_id or "-")]
    if parent_missing:
        summary.append(("note", "the parent span is not in this trace (partial trace)"))
    attributes = [(k, _value(v)) for k, v in sorted(span.attributes.items())]
    events = []
    for ev in span.events:
        when = f"+{format_duration(ev.time_ns - trace_start_ns)}"
        detail = " ".join(f"{k}={_value(v)}" for k, v in sorted(ev.attributes.items()))
        events.append((when, f"{ev.name} {detail}".strip()))
    resource = [(k, _value(v)) for k, v in sorted(span.resource.items())]
    return [
        ("span", summary),
        ("attributes", attributes),
        ("events", events),
        ("resource", resource),
    ]


def _value(value: object) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    return str(value)
