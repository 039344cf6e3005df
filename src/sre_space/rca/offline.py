"""The Brain offline: root cause from recorded trace files (``sre-space analyze``).

Files are read by :mod:`sre_space.telemetry.files` (OTLP JSON or protobuf,
Jaeger JSON, plain or gzip, ``-`` for stdin). Without a baseline the window's
own change point splits it into before and after.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sre_space.config import LATENCY_MS
from sre_space.errors import UsageError
from sre_space.rca.candidate import Candidate, confidence_words
from sre_space.rca.localize import localize, paused_gc
from sre_space.rca.traces import group
from sre_space.telemetry.model import Span


@dataclass
class Analysis:
    candidates: list[Candidate]
    spans: int
    traces: int
    baseline_traces: int | None = None
    rejected: int = 0
    files: list[str] = field(default_factory=list)
    shown: int = 5  # candidates written out in text (JSON carries them all)

    def to_json(self) -> dict[str, Any]:
        """The ``analyze --json`` contract: every service that took part, best first."""
        return {"candidates": [c.to_json() for c in self.candidates]}

    def render(self) -> str:
        """For a terminal: one block per candidate, plain text."""
        against = (
            f"against a baseline of {self.baseline_traces} traces"
            if self.baseline_traces is not None
            else "against its own earlier part (no baseline given)"
        )
        lines = [f"analyzed {self.traces} traces ({self.spans} spans) {against}"]
        if self.rejected:
            lines.append(f"({self.rejected} unusable span(s) skipped)")
        if not self.candidates:
            lines.append("no services in these traces")
            return "\n".join(lines)
        if self.candidates[0].evidence.get("method") == "static rules":
            lines.append("no change point found: static rules (errors, slow traces)")
        top = self.candidates[0]
        lines.append(
            f"most likely root cause: {top.service} ({top.fault_class}), confidence "
            f"{top.confidence:.2f}: {confidence_words(top.confidence)}"
        )
        for n, c in enumerate(self.candidates[: self.shown], 1):
            ev = c.evidence
            lines.append("")
            lines.append(f"{n}. {c.service}  {c.operation}")
            if not ev.get("explained_traces"):
                grew = ev.get("self_time_p90_growth_ms")
                lines.append(
                    f"   confidence {c.confidence:.2f}: no evidence against it"
                    + (f"; its p90 self time grew {grew} ms" if grew else "")
                )
                continue
            lines.append(
                f"   {c.fault_class}, confidence {c.confidence:.2f}: at fault in "
                f"{ev.get('explained_traces', 0)} of {ev.get('anomalous_traces', 0)} "
                "traces in trouble"
            )
            if c.exception:
                lines.append(f"   exception: {c.exception}")
            for text in dict.fromkeys(_describe(sig) for sig in ev.get("signals", [])):
                lines.append(f"   - {text}")
            exemplars = ev.get("exemplar_trace_ids") or []
            if exemplars:
                lines.append(f"   e.g. trace {', '.join(exemplars)}")
        hidden = len(self.candidates) - self.shown
        if hidden > 0:
            lines.append("")
            lines.append(f"({hidden} more service(s) ranked lower; --json lists them all)")
        return "\n".join(lines)


def _describe(sig: dict[str, Any]) -> str:
    span = sig.get("span", {})
    where = f"{span.get('service', '?')} {span.get('name', '?')}"
    kind = sig.get("kind")
    own = sig.get("own_time")
    if kind == "latency" and own:
        return (
            f"{where}: own work per request p50 {own['p50_ms']} ms over {own['visits']} "
            f"(was {own['baseline_p50_ms']} ms over {own['baseline_visits']}; rank z {own['z']})"
        )
    if kind == "latency":
        text = (
            f"{where}: {sig.get('hop', 'own work')}, self time p50 {sig.get('self_time_p50_ms')} ms"
        )
        if "baseline_self_time_p50_ms" in sig:
            text += (
                f" (was {sig['baseline_self_time_p50_ms']} ms); slow in "
                f"{sig.get('slow_rate', 0):.0%} of calls (was {sig.get('baseline_slow_rate', 0):.0%})"
            )
        return text
    if kind == "error":
        text = f"{where}: {sig.get('errors', 0)} errors originate here ({sig.get('error_rate', 0):.0%})"
        if "baseline_error_rate" in sig:
            text += f", was {sig['baseline_error_rate']:.0%}"
        return text
    s = sig.get("unusual_step")
    if s:
        return (
            f"{where}: after {s['after']} -> {s['next']} in {s['share']:.0%} of calls "
            f"(was {s['baseline_share']:.0%})"
        )
    return f"{where}: {kind}"


def read_traces(paths: Sequence[str]) -> tuple[list[list[Span]], int, int]:
    """Traces from files (``-``: stdin): (traces, spans, rejected). One plain error if unreadable."""
    from sre_space.telemetry.files import read_file
    from sre_space.telemetry.otlp import DecodeFailure

    spans: list[Span] = []
    rejected = 0
    with paused_gc():
        for path in paths:
            try:
                decoded = read_file(path)
            except OSError as exc:
                raise UsageError(f"cannot read {path}: {exc.strerror or exc}") from None
            except DecodeFailure as exc:
                raise UsageError(f"cannot read {path}: {exc}") from None
            spans.extend(decoded.spans)
            rejected += decoded.rejected
        return group(spans), len(spans), rejected


def analyze(
    files: Sequence[str],
    baseline: Sequence[str] = (),
    *,
    top: int = 5,
    latency_threshold_ms: float = LATENCY_MS,
) -> Analysis:
    if not files:
        raise UsageError("give at least one trace file")
    window, n_spans, rejected = read_traces(files)
    if not window:
        raise UsageError(f"no spans in {', '.join(files)}")
    reference: list[list[Span]] | None = None
    if baseline:
        reference, _, ref_rejected = read_traces(baseline)
        rejected += ref_rejected
        if not reference:
            raise UsageError(f"no spans in the baseline {', '.join(baseline)}")
    candidates = localize(window, latency_threshold_ms, baseline=reference)
    return Analysis(
        candidates,
        spans=n_spans,
        traces=len(window),
        baseline_traces=len(reference) if reference is not None else None,
        rejected=rejected,
        files=list(files),
        shown=top,
    )
