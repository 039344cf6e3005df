"""What each sink is sent: one message per incident status change of interest.

Severity (PagerDuty's ``payload.severity``, and what ``severities`` filters
on) comes from the incident's fault class: ``unreachable`` (a service down)
is ``critical``; ``error``, ``timeout``, ``saturation`` and ``memory`` (requests
fail) are ``error``; ``latency`` and ``cpu`` (requests are slow) are
``warning``; an incident not diagnosed is ``error`` (nobody knows yet); a test
message is ``info``.

PagerDuty's action for each event: a status the sink asked for (``escalated``
by default) triggers; a person's ack and the squad's mitigation acknowledge
(the squad has it in hand: the on-call rotation stops escalating, the alert
stays open while Scout watches); ``resolved`` (by a person or after Scout's
quiet spell) resolves. A note has no Events API v2 action.
"""

from __future__ import annotations

from typing import Any

from sre_space.notify.events import ACKNOWLEDGED, NOTE, TEST_EVENT, Notification
from sre_space.safe_text import NAME_LIMIT, printable
from sre_space.vocabulary import (
    AWAITING_APPROVAL,
    CPU,
    CRITICAL,
    DRY_RUN,
    ERROR,
    LATENCY,
    MEMORY,
    PENDING,
    PROPOSED,
    SATURATION,
    SEVERITY_ERROR,
    TIMEOUT,
    UNREACHABLE,
    WARNING,
    Severity,
)

SEVERITY_BY_CLASS: dict[str, Severity] = {
    UNREACHABLE: CRITICAL,
    ERROR: SEVERITY_ERROR,
    TIMEOUT: SEVERITY_ERROR,
    SATURATION: SEVERITY_ERROR,
    MEMORY: SEVERITY_ERROR,
    LATENCY: WARNING,
    CPU: WARNING,
}
UNDIAGNOSED_SEVERITY: Severity = SEVERITY_ERROR
_TEXT = 2900  # Slack's section text holds 3000 characters


def severity(incident: dict[str, Any]) -> str:
    fault_class = str((incident.get("root_cause") or {}).get("fault_class") or "")
    return SEVERITY_BY_CLASS.get(fault_class, UNDIAGNOSED_SEVERITY)


def pagerduty_action(event: str) -> str | None:
    if event == NOTE:
        return None
    if event in (ACKNOWLEDGED, "mitigated"):
        return "acknowledge"
    if event == "resolved":
        return "resolve"
    return "trigger"


def headline(n: Notification) -> str:
    """``INC-... escalated: checkout POST /checkout (saturation)``."""
    rc = n.incident.get("root_cause") or {}
    what = " ".join(str(rc.get(k)) for k in ("service", "operation") if rc.get(k)) or "not diagnosed"
    cls = f" ({rc['fault_class']})" if rc.get("fault_class") else ""
    return printable(f"{n.incident_id} {_event_words(n)}: {what}{cls}", NAME_LIMIT)


def _event_words(n: Notification) -> str:
    if n.event == ACKNOWLEDGED:
        return f"acknowledged by {n.by}" if n.by else "acknowledged"
    if n.event == NOTE:
        return f"note by {n.by}" if n.by else "note"
    if n.event == "resolved" and n.incident.get("resolved_by"):
        return f"resolved by {n.incident['resolved_by']}"
    if n.event == TEST_EVENT:
        return "test message from sre-space"
    return str(n.event)


def squad_line(n: Notification) -> str:
    """What the squad did or proposes, in one line."""
    rem = n.incident.get("remediation") or {}
    action, outcome = rem.get("action"), str(rem.get("outcome") or "")
    if not action:
        return "the squad took no action"
    service = rem.get("service") or (n.incident.get("root_cause") or {}).get("service") or "?"
    what = f"{action} on {service} {rem.get('params') or {}}".rstrip()
    if outcome in (PROPOSED, DRY_RUN):
        return f"the squad proposes {what} (not applied: a person decides)"
    if outcome == AWAITING_APPROVAL:
        return f"the squad asks to {what}: sre-space approve {n.incident_id} (or deny)"
    if outcome in (PENDING, ""):
        return f"the squad is applying {what}"
    return f"the squad did {what}: {outcome}"


def body_lines(n: Notification) -> list[str]:
    rc = n.incident.get("root_cause") or {}
    lines = [
        f"service: {rc.get('service') or '?'} {rc.get('operation') or ''}".rstrip(),
        f"class: {rc.get('fault_class') or '?'}, confidence {_confidence(rc)}",
        squad_line(n),
    ]
    if n.why:
        lines.append(f"{'note' if n.event == NOTE else 'why'}: {n.why}")
    lines.append(f"sre-space incidents {n.incident_id}")
    return [printable(line, _TEXT) for line in lines]


def plain(n: Notification) -> tuple[str, str]:
    """Title and body for sinks that take text (apprise)."""
    return headline(n), "\n".join(body_lines(n))


def _confidence(rc: dict[str, Any]) -> str:
    value = rc.get("confidence")
    return f"{value:.2f}" if isinstance(value, int | float) else "?"


def _mrkdwn(text: str) -> str:
    """Slack's three escapes: outside text never becomes a link or a mention."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(n: Notification) -> dict[str, Any]:
    """Block Kit: the headline, the incident's fields, the squad's line, the command."""
    rc = n.incident.get("root_cause") or {}
    fields = [
        ("Service", f"{rc.get('service') or '?'} {rc.get('operation') or ''}".rstrip()),
        ("Class", str(rc.get("fault_class") or "?")),
        ("Confidence", _confidence(rc)),
        ("Status", str(n.incident.get("status") or "?")),
    ]
    detail = squad_line(n) + (f"\n{'Note' if n.event == NOTE else 'Why'}: {n.why}" if n.why else "")
    title = headline(n)
    return {
        "text": title,  # the notification's own line (and what a client without blocks shows)
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": title[:150]}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": f"*{k}*\n{_mrkdwn(printable(v, NAME_LIMIT))}"}
                    for k, v in fields
                ],
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(printable(detail, _TEXT))}},
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": f"`sre-space incidents {_mrkdwn(n.incident_id)}`"}
                ],
            },
        ],
    }


def pagerduty_event(n: Notification, routing_key: str, action: str) -> dict[str, Any]:
    """An Events API v2 event; ``dedup_key`` is the incident id, so the three actions meet."""
    event: dict[str, Any] = {
        "routing_key": routing_key,
        "event_action": action,
        "dedup_key": n.incident_id,
    }
    if action == "trigger":
        rc = n.incident.get("root_cause") or {}
        event["payload"] = {
            "summary": headline(n)[:1024],
            "source": str(rc.get("service") or "sre-space"),
            "severity": "info" if n.event == TEST_EVENT else severity(n.incident),
            "component": str(rc.get("operation") or "") or None,
            "class": str(rc.get("fault_class") or "") or None,
            "custom_details": {"lines": body_lines(n), "status": n.incident.get("status")},
        }
        event["payload"] = {k: v for k, v in event["payload"].items() if v is not None}
        event["client"] = "sre-space"
    return event


def webhook_document(n: Notification) -> dict[str, Any]:
    """The incident JSON, with the ``event`` and who caused it beside it."""
    return {
        **n.incident,
        "event": n.event,
        "notification": {"id": n.key, "by": n.by or None, "why": n.why or None, "ts": n.ts},
    }
