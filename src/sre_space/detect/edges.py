"""The calls between services, learned from a sample of whole traces.

One trace in 16 (by its id) is followed span by span: a span whose parent
was seen in another service is a call from that service, and its operation
is an entry (so an INTERNAL span there counts as a request). A call first
seen after the warm-up, and taken again and again, is a change of structure
(see :mod:`sre_space.detect.window`).
"""

from __future__ import annotations

from sre_space.detect.operation import Signal

NEW_EDGE_MIN_SEEN = 3  # followed traces in which a new call must show to be a change


class CallEdges:
    """Call edges and entry operations; the detector calls it under its own lock."""

    def __init__(self) -> None:
        self.entries: set[tuple[str, str]] = set()
        # (caller, callee) -> (first seen, last seen, times seen in followed traces)
        self.edges: dict[tuple[str, str], tuple[float, float, int]] = {}
        self._recent: dict[str, str] = {}  # span id -> service, this second and the last
        self._older: dict[str, str] = {}
        self._pending: dict[str, list[tuple[str, str]]] = {}  # parent id -> child keys
        self._older_pending: dict[str, list[tuple[str, str]]] = {}
        self._generation = 0

    def roll(self, second: int) -> None:
        """Keep the span ids (and orphans) of this second and the last only."""
        if second != self._generation:
            self._older, self._recent = self._recent, {}
            self._older_pending, self._pending = self._pending, {}
            self._generation = second

    def track(self, span_id: str, parent: str | None, key: tuple[str, str], now: float) -> None:
        """Learn call edges and entry operations from a span of a followed trace."""
        service = key[0]
        if parent:
            caller = self._recent.get(parent) or self._older.get(parent)
            if caller is None:
                self._pending.setdefault(parent, []).append(key)
            elif caller != service:
                self._edge(caller, service, key, now)
        self._recent[span_id] = service
        waiting = self._pending.pop(span_id, None) or self._older_pending.pop(span_id, None)
        for child in waiting or ():
            if child[0] != service:
                self._edge(service, child[0], child, now)

    def _edge(self, caller: str, callee: str, entry: tuple[str, str], now: float) -> None:
        self.entries.add(entry)
        first, _, seen = self.edges.get((caller, callee), (now, now, 0))
        self.edges[(caller, callee)] = (first, now, seen + 1)

    def new_edges(
        self, now: float, started: float, warmup_s: float, window_s: float
    ) -> list[Signal]:
        """A ``structure`` signal for each call first seen in the window after the warm-up."""
        if now - started < warmup_s:
            return []
        out = []
        for (caller, callee), (first, last, seen) in self.edges.items():
            fresh = first >= now - window_s and first > started + warmup_s
            # A path taken once is an odd request; taken again and again, a new behaviour.
            if fresh and last >= now - window_s and seen >= NEW_EDGE_MIN_SEEN:
                out.append(
                    Signal(
                        callee,
                        f"called by {caller}",
                        0,
                        0,
                        0,
                        0.0,
                        first,
                        "structure",
                        f"{caller} started calling {callee}",
                    )
                )
        return out
