"""Rank services by how well each explains the anomalous traces.

Errors are attributed to the span where they originate: a failed span none of
whose children failed. A failed CLIENT span with no child server span means the
callee never answered, so the callee is blamed. Latency is attributed to the
span that added it (largest self time), and a client span that grew while its
server child did not points at the callee's queue or the network.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from sre_space.telemetry.model import Span, SpanKind

# A failed request is stronger evidence than a slow one: when a fault shows
# both (a saturated pool makes requests queue, then time out), the place where
# the failures originate outranks the place where time was spent.
LATENCY_VOTE = 0.25

_SATURATION = re.compile(r"pool|exhaust|saturat|queue full|too many|timed? ?out|timeout", re.I)
_UNREACHABLE = re.compile(r"refused|unreachable|reset by peer|no route|connection closed", re.I)
_MASKS = [
    (
        re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I),
        "<uuid>",
    ),
    (re.compile(r"\b[0-9a-f]{16,}\b", re.I), "<id>"),
    (re.compile(r"\d+(\.\d+)?"), "<n>"),
]


def message_template(message: str) -> str:
    """The message with ids and numbers masked, so recurrences share a signature."""
    for pattern, mask in _MASKS:
        message = pattern.sub(mask, message)
    return message[:300]


@dataclass
class Candidate:
    service: str
    operation: str
    score: float
    fault_class: str
    evidence: dict[str, Any] = field(default_factory=dict)

    @property
    def exception(self) -> str:
        return str(self.evidence.get("exception", ""))

    @property
    def signature(self) -> str:
        exc_type = self.exception.split(":", 1)[0] if ":" in self.exception else ""
        return "|".join((self.service, self.operation, self.fault_class, exc_type))

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "operation": self.operation,
            "score": round(self.score, 4),
            "fault_class": self.fault_class,
            "evidence": self.evidence,
        }


@dataclass
class _Votes:
    weight: float = 0.0
    traces: list[str] = field(default_factory=list)
    messages: Counter[str] = field(default_factory=Counter)
    classes: Counter[str] = field(default_factory=Counter)
    durations: list[float] = field(default_factory=list)


def _owning_operation(span: Span, by_id: dict[str, Span]) -> str:
    """The server operation inside which a span ran, in the span's own service."""
    cur: Span | None = span
    while cur is not None:
        if cur.kind == SpanKind.SERVER and cur.service == span.service:
            return cur.name
        cur = by_id.get(cur.parent_id) if cur.parent_id else None
    return span.name


def _self_time_ms(span: Span, children: list[Span]) -> float:
    covered = 0
    intervals = sorted(
        (max(c.start_ns, span.start_ns), min(c.end_ns, span.end_ns)) for c in children
    )
    cur_start, cur_end = -1, -1
    for start, end in intervals:
        if end <= start:
            continue
        if start > cur_end:
            covered += max(0, cur_end - cur_start)
            cur_start, cur_end = start, end
        else:
            cur_end = max(cur_end, end)
    covered += max(0, cur_end - cur_start)
    return max(0, (span.end_ns - span.start_ns) - covered) / 1e6


def _classify(message: str) -> str:
    if _UNREACHABLE.search(message):
        return "crash"
    if _SATURATION.search(message):
        return "saturation"
    return "error"


def localize(
    traces: list[list[Span]], latency_threshold_ms: float = 800.0, top: int = 5
) -> list[Candidate]:
    votes: dict[tuple[str, str], _Votes] = defaultdict(_Votes)
    anomalous = 0
    for trace in traces:
        if not trace:
            continue
        by_id = {s.span_id: s for s in trace}
        children: dict[str, list[Span]] = defaultdict(list)
        for s in trace:
            if s.parent_id:
                children[s.parent_id].append(s)
        roots = [s for s in trace if not s.parent_id or s.parent_id not in by_id]
        slow_root = any(r.duration_ms > latency_threshold_ms for r in roots)
        origins = [s for s in trace if s.error and not any(c.error for c in children[s.span_id])]
        if not origins and not slow_root:
            continue
        anomalous += 1
        trace_id = trace[0].trace_id
        if origins:
            share = 1.0 / len(origins)
            for s in origins:
                message = s.exception_message or (
                    f"HTTP {s.http_status}" if s.http_status else s.status_message
                )
                service = s.service
                operation = _owning_operation(s, by_id)
                fault = _classify(message)
                if s.kind == SpanKind.CLIENT and not children[s.span_id]:
                    # The callee never answered: it is the suspect, not the caller.
                    peer = s.attributes.get("peer.service")
                    if peer:
                        service, operation, fault = str(peer), s.name, "crash"
                v = votes[(service, operation)]
                v.weight += share
                v.traces.append(trace_id)
                v.messages[message_template(message)] += 1
                v.classes[fault] += 1
        else:
            # Latency: blame the span that added the most time on its own.
            worst = max(trace, key=lambda s: _self_time_ms(s, children[s.span_id]))
            service, operation = worst.service, _owning_operation(worst, by_id)
            if worst.kind == SpanKind.CLIENT and worst.attributes.get("peer.service"):
                service, operation = str(worst.attributes["peer.service"]), worst.name
            v = votes[(service, operation)]
            v.weight += LATENCY_VOTE
            v.traces.append(trace_id)
            v.classes["latency"] += 1
            v.durations.append(_self_time_ms(worst, children[worst.span_id]))
    if not anomalous:
        return []
    total = sum(v.weight for v in votes.values()) or 1.0
    ranked = sorted(votes.items(), key=lambda kv: kv[1].weight, reverse=True)[:top]
    out: list[Candidate] = []
    for (service, operation), v in ranked:
        message = v.messages.most_common(1)[0][0] if v.messages else ""
        evidence: dict[str, Any] = {
            "anomalous_traces": anomalous,
            "explained_traces": len(set(v.traces)),
            "exemplar_trace_ids": list(dict.fromkeys(v.traces))[:3],
        }
        if message:
            evidence["exception"] = message
        if v.durations:
            evidence["self_time_ms_max"] = round(max(v.durations), 1)
        out.append(
            Candidate(
                service=service,
                operation=operation,
                score=v.weight / total,
                fault_class=v.classes.most_common(1)[0][0],
                evidence=evidence,
            )
        )
    return out
