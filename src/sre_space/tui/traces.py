"""Where the waterfall's spans come from (no textual; called from worker threads).

A cockpit that hosts the mind reads its trace store; one that observes asks
the acting mind's loopback API (``/trace?id=``). Tests give the app their own
``SpanSource``: any callable from a trace id to spans.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sre_space.config import Settings
from sre_space.incidents import Incident
from sre_space.paths import Paths
from sre_space.telemetry.model import Span, SpanEvent, SpanKind

log = logging.getLogger(__name__)

SpanSource = Callable[[str], list[Span]]


def exemplar_trace_ids(incident: Incident | None) -> list[str]:
    """The traces the Brain named as evidence for this incident's root cause."""
    if incident is None:
        return []
    evidence = incident.root_cause.get("evidence")
    if not isinstance(evidence, dict):
        return []
    ids = evidence.get("exemplar_trace_ids")
    if not isinstance(ids, list):
        return []
    return [str(i) for i in ids if i]


def span_from_json(doc: dict[str, Any]) -> Span:
    """A span from the mind API's ``span_json`` document."""
    try:
        kind = SpanKind(int(doc.get("kind", 1)))
    except ValueError:
        kind = SpanKind.UNSPECIFIED
    return Span(
        str(doc["trace_id"]),
        str(doc["span_id"]),
        str(doc["parent_id"]) if doc.get("parent_id") else None,
        str(doc.get("service", "?")),
        str(doc.get("name", "?")),
        int(doc.get("start_ns", 0)),
        int(doc.get("end_ns", 0)),
        kind,
        bool(doc.get("error", False)),
        str(doc.get("status_message") or ""),
        dict(doc.get("attributes") or {}),
        [
            SpanEvent(
                str(e.get("name", "")), int(e.get("time_ns", 0)), dict(e.get("attributes") or {})
            )
            for e in doc.get("events") or []
        ],
        dict(doc.get("resource") or {}),
    )


class MindTraces:
    """Spans from the hosted mind's store, else from the acting mind's API."""

    def __init__(self, settings: Settings, hosted_mind: Callable[[], Any]) -> None:
        self.paths = Paths(settings.home)
        self._hosted_mind = hosted_mind

    def __call__(self, trace_id: str) -> list[Span]:
        mind = self._hosted_mind()
        if mind is not None:
            return list(mind.store.trace(trace_id))
        from sre_space.localapi import get, mind_port

        port = mind_port(self.paths)
        if port is None:
            return []
        docs = get(port, self.paths.mind_token, "/trace", {"id": trace_id})
        return [span_from_json(d) for d in docs if isinstance(d, dict)]
