"""Which release a service ran before an incident's onset and which it runs since.

From telemetry alone: ``service.version`` (an OpenTelemetry resource attribute,
or a span attribute where a service sets it there) on the service's SERVER
spans, counted before and after the onset, with their error rates. A release
that fails is *bad*; the release to go back to is one that served before the
onset without failing. A release the platform's history marks bad, or one that
failed anywhere in the spans, is never a rollback target.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sre_space.telemetry.model import Span, SpanKind

VERSION = "service.version"


def version_of(span: Span) -> str:
    return str(span.resource.get(VERSION) or span.attributes.get(VERSION) or "")


def evidence(
    spans: Iterable[Span],
    service: str,
    onset_ns: int,
    error_rate: float = 0.05,
    history: Iterable[dict[str, Any]] = (),  # the platform's, newest first
) -> dict[str, Any]:
    """``{"before": {v: [n, errors]}, "after": {...}, "bad": v?, "good": v?}`` for ``service``."""
    counts: dict[str, dict[str, list[int]]] = {"before": {}, "after": {}}
    for span in spans:
        if span.service != service or span.kind != SpanKind.SERVER:
            continue
        version = version_of(span)
        if not version:
            continue
        side = counts["before" if span.start_ns < onset_ns else "after"]
        entry = side.setdefault(version, [0, 0])
        entry[0] += 1
        entry[1] += int(span.error)

    def rate(entry: list[int]) -> float:
        return entry[1] / entry[0] if entry[0] else 0.0

    failing = {
        version
        for side in counts.values()
        for version, entry in side.items()
        if rate(entry) > error_rate
    }
    history = list(history)
    failing |= {str(h.get("release")) for h in history if h.get("bad")}
    newest = str(history[0].get("release") or "") if history else ""
    # Bad: a failing release that came in at the onset: not serving before it
    # (which only spans from before the onset can show), or the platform's newest.
    arrived = [
        (entry[1], version)
        for version, entry in counts["after"].items()
        if version in failing
        and ((counts["before"] and version not in counts["before"]) or version == newest)
    ]
    bad = max(arrived)[1] if arrived else None
    healthy = [
        (entry[0], version) for version, entry in counts["before"].items() if version not in failing
    ]
    known = [str(h.get("release")) for h in history if h.get("release") and not h.get("bad")]
    good = max(healthy)[1] if healthy else None
    if good is None and bad is not None:
        # No span from before the onset: the newest release the platform ran that is not bad.
        good = next((r for r in known if r not in failing and r != bad), None)
    return {
        "before": counts["before"],
        "after": counts["after"],
        "bad": bad,
        "good": good if bad else None,
    }
