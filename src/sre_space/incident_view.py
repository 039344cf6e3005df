"""`sre-space incidents ID` as people read it: what happened, why, what was done.

Plain lines (no markup): the header (with who acknowledged or resolved it, if
a person did), the timeline of its status changes and squad steps, the root
cause with a summary of the evidence, the remediation, what still shows when
degraded, and the audit trail. Everything that came
from outside (telemetry, memory) is escaped by ``printable``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sre_space.incidents import Event, Incident
from sre_space.safe_text import printable

EVIDENCE_LINES = 6


def _when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _secs(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} s"


def _short(value: Any, limit: int = 160) -> str:
    text = value if isinstance(value, str) else repr(value)
    return printable(text if len(text) <= limit else text[: limit - 1] + "…")


def _evidence(evidence: Any) -> list[str]:
    """The evidence as a few lines: its keys and short values, not the whole document."""
    if not evidence:
        return ["  (none recorded)"]
    if not isinstance(evidence, dict):
        return [f"  {_short(evidence)}"]
    lines = []
    for key, value in list(evidence.items())[:EVIDENCE_LINES]:
        if isinstance(value, list):
            shown = ", ".join(_short(v, 60) for v in value[:3])
            more = f" (+{len(value) - 3} more)" if len(value) > 3 else ""
            lines.append(f"  {printable(str(key))}: {shown}{more}")
        else:
            lines.append(f"  {printable(str(key))}: {_short(value)}")
    if len(evidence) > EVIDENCE_LINES:
        lines.append(f"  … {len(evidence) - EVIDENCE_LINES} more (see --json)")
    return lines


def _audit_line(step: dict[str, Any]) -> str:
    ts = step.get("ts")
    when = _clock(float(ts)) if isinstance(ts, int | float) else "--:--:--"
    name = str(step.get("step", "?"))
    who = f"  by {_short(step['by'], 80)}" if step.get("by") else ""
    if name == "status":
        arrow = f"{step.get('from') or 'new'} -> {step.get('to')}"
        why = f": {step['why']}" if step.get("why") else ""
        return f"  {when}  status  {printable(arrow)}{who}{printable(why)}"
    if name == "alert":  # an alert received (alerts.py): outside text, escaped
        labels = step.get("labels")
        pairs = sorted(labels.items()) if isinstance(labels, dict) else []
        shown = ", ".join(f"{k}={v}" for k, v in pairs)
        return (
            f"  {when}  alert  {_short(step.get('alert', '?'), 80)} {_short(step.get('status', ''), 20)}"
            f" from {_short(step.get('source', '?'), 20)}"
            + (f"  labels: {_short(shown, 300)}" if shown else "")
        )
    if name in ("ack", "note"):  # a person's
        text = f": {_short(step['text'], 300)}" if step.get("text") else ""
        return f"  {when}  {name}{who}{text}"
    if name == "verified":
        before, after = step.get("before") or {}, step.get("after") or {}
        unclear = step.get("unclear") or []
        return (
            f"  {when}  verified  recovered={step.get('recovered')}  error rate "
            f"{before.get('error_rate', 0):.0%} -> {after.get('error_rate', 0):.0%}, p95 "
            f"{before.get('p95_ms', 0):.0f} -> {after.get('p95_ms', 0):.0f} ms"
            + (f"  unclear: {_short('; '.join(map(str, unclear)), 200)}" if unclear else "")
        )
    detail = " ".join(
        f"{k}={_short(step[k], 80)}"
        for k in ("action", "service", "params", "reason", "error")
        if step.get(k) not in (None, "", {})
    )
    return f"  {when}  {printable(name)}  {detail}"


def _people(incident: Incident) -> list[str]:
    """Who has it and who closed it, when a person did."""
    lines = []
    if incident.acknowledged_by:
        lines.append(
            f"  acknowledged by {_short(incident.acknowledged_by, 80)} "
            f"{_when(incident.acknowledged_at)}"
        )
    if incident.resolved_by:
        note = f": {_short(incident.resolution_note, 300)}" if incident.resolution_note else ""
        lines.append(f"  resolved by {_short(incident.resolved_by, 80)}{note}")
    return lines


def _opened_by(incident: Incident) -> list[str]:
    """What opened it, when not Scout: the alert, by name, source and service."""
    if incident.source != "alert":
        return []
    first = next((a for a in incident.audit if a.get("step") == "alert"), {})
    return [
        f"  source alert: {_short(first.get('alert', '?'), 80)} from "
        f"{_short(first.get('source', '?'), 20)} about {_short(first.get('service', '?'), 80)}"
    ]


def render(incident: Incident, events: list[Event]) -> str:
    """The incident as text: one section per question a responder asks."""
    rc = incident.root_cause
    rem = incident.remediation
    lines = [
        f"{printable(incident.id)}  {incident.status}"
        + (f"  (recurs: {printable(incident.recurs)})" if incident.recurs else ""),
        f"  detected {_when(incident.detected_at)}  TTD {_secs(incident.ttd_s)}  "
        f"TTM {_secs(incident.ttm_s)}  mitigated {_when(incident.mitigated_at)}  "
        f"resolved {_when(incident.resolved_at)}",
        f"  signature {printable(incident.signature or '-')}",
        *_opened_by(incident),
        *_people(incident),
        "",
        "timeline",
    ]
    lines += [f"  {_clock(e.ts)}  {e.agent:<6} {printable(e.message)}" for e in events] or [
        "  (no events)"
    ]
    lines += ["", "root cause"]
    if rc:
        confidence = rc.get("confidence")
        lines.append(
            f"  {_short(rc.get('service', '?'))} {_short(rc.get('operation', ''))} "
            f"[{_short(rc.get('fault_class', '?'))}]"
            + (f"  confidence {float(confidence):.2f}" if confidence is not None else "")
        )
        others = [c.get("service") for c in rc.get("candidates", [])[1:] if isinstance(c, dict)]
        if others:
            lines.append(f"  other candidates: {', '.join(_short(o, 40) for o in others)}")
        lines += ["", "evidence", *_evidence(rc.get("evidence"))]
    else:
        lines.append("  not diagnosed")
    lines += ["", "remediation"]
    if rem.get("action"):
        lines.append(
            f"  {_short(rem['action'])} {_short(rem.get('service', ''))} "
            f"{_short(rem.get('params', {}))}  source {_short(rem.get('source', '-'))}  "
            f"outcome {_short(rem.get('outcome', '-'))}"
        )
        if rem.get("reason"):
            lines.append(f"  why: {_short(rem['reason'])}")
    else:
        lines.append("  none")
    if incident.residual:
        lines += ["", "still showing (degraded)"]
        for r in incident.residual:
            lines.append(
                f"  {_short(r.get('service', '?'))} {_short(r.get('operation', ''))}: "
                f"{_short(r.get('reason', ''))} ({r.get('requests', 0)} requests, "
                f"{float(r.get('error_rate', 0)):.0%} errors, p95 {float(r.get('p95_ms', 0)):.0f} ms)"
            )
    lines += ["", "audit trail"]
    lines += [_audit_line(a) for a in incident.audit] or ["  (empty)"]
    return "\n".join(lines)
