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
    """``{"before": {v: [n, errors]}, "after": {...}, "bad": v?, "good": v?}`` for ``service``.

    ``before``/``after`` count around ``onset_ns`` (for the record); which
    release is bad does not hang on the onset's exact place: it is the newest
    failing release (the latest to first appear) that came after another one,
    and the good one is a release that served without failing before it came.
    """
    counts: dict[str, dict[str, list[int]]] = {"before": {}, "after": {}}
    seen: dict[str, list[int]] = {}  # version -> [first start_ns, requests, errors]
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
        total = seen.setdefault(version, [span.start_ns, 0, 0])
        total[0] = min(total[0], span.start_ns)
        total[1] += 1
        total[2] += int(span.error)
    history = list(history)
    failing = {v for v, (_, n, errors) in seen.items() if n and errors / n > error_rate}
    failing |= {str(h.get("release")) for h in history if h.get("bad")}
    newest = str(history[0].get("release") or "") if history else ""
    first = {v: t[0] for v, t in seen.items()}
    arrived = [
        (first[v], v)
        for v in failing & set(seen)
        if any(first[o] < first[v] for o in seen if o != v) or v == newest
    ]
    bad = max(arrived)[1] if arrived else None
    good: str | None = None
    if bad is not None:
        healthy = [(seen[v][1], v) for v in seen if v not in failing and first[v] < first[bad]]
        good = max(healthy)[1] if healthy else None
        if good is None:  # no span of an earlier release: the platform's newest good one
            known = [str(h.get("release")) for h in history if h.get("release")]
            good = next((r for r in known if r not in failing and r != bad), None)
    return {"before": counts["before"], "after": counts["after"], "bad": bad, "good": good}
