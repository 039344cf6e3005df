"""Jules's daily review: incidents, TTD and TTM, recurring signatures, open proposals."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sre_space.config import Settings
from sre_space.incidents import IncidentLog
from sre_space.safe_text import NAME_LIMIT, TEXT_LIMIT, markdown_code, markdown_safe
from sre_space.vocabulary import UNCLEAR


def parse_since(text: str) -> float:
    """'24h', '90m', '7d', '3600s' -> seconds."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        return float(text[:-1]) * units[text[-1]] if text[-1] in units else float(text)
    except (ValueError, IndexError):
        raise ValueError(f"cannot read duration {text!r}; use e.g. 24h, 90m, 7d") from None


def _stats(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "p50": None, "max": None}
    return {
        "mean": round(statistics.fmean(values), 2),
        "p50": round(statistics.median(values), 2),
        "max": round(max(values), 2),
    }


def build(log: IncidentLog, since_s: float, now: float | None = None) -> dict[str, Any]:
    now = time.time() if now is None else now
    incidents = log.since(now - since_s)
    by_status = Counter(i.status for i in incidents)
    by_outcome = Counter(
        str(i.remediation["outcome"]) for i in incidents if i.remediation.get("outcome")
    )
    signatures = Counter(i.signature for i in incidents if i.signature)
    proposals = [
        {"incident": i.id, **p} for i in incidents for p in i.hardening if p.get("status") == "open"
    ]
    return {
        "generated_at": now,
        "since_s": since_s,
        "incidents": len(incidents),
        "by_status": dict(by_status),
        "by_outcome": dict(by_outcome),  # remediation outcomes (vocabulary.OUTCOMES)
        "ttd_s": _stats([i.ttd_s for i in incidents if i.ttd_s is not None]),
        "ttm_s": _stats([i.ttm_s for i in incidents if i.ttm_s is not None]),
        "recurring": [{"signature": s, "count": n} for s, n in signatures.most_common() if n > 1],
        "open_proposals": proposals,
        "items": [
            {
                "id": i.id,
                "status": i.status,
                "root_cause": i.root_cause.get("service"),
                "fix": i.remediation.get("action"),
                "outcome": i.remediation.get("outcome"),
                "ttd_s": i.ttd_s,
                "ttm_s": i.ttm_s,
            }
            for i in incidents
        ],
    }


def _cell(value: object) -> str:
    """A table cell from the incident log (outside text): escaped, ``-`` when empty."""
    return "-" if value is None or value == "" else markdown_safe(value, NAME_LIMIT)


def markdown(doc: dict[str, Any]) -> str:
    """The review as Markdown; every value that came from outside is escaped (safe_text)."""
    when = datetime.fromtimestamp(doc["generated_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"# sre-space daily review ({when}, last {doc['since_s'] / 3600:.0f} h)", ""]
    lines.append(
        f"{doc['incidents']} incident(s): "
        + (", ".join(f"{n} {markdown_safe(s)}" for s, n in doc["by_status"].items()) or "none")
    )
    unclear = doc.get("by_outcome", {}).get(UNCLEAR, 0)
    if unclear:
        lines.append(
            f"- {unclear} fix(es) with an unclear outcome: the recovery is not credited "
            "to them, and memory learnt nothing from them"
        )
    for key, label in (("ttd_s", "time to detect"), ("ttm_s", "time to mitigate")):
        st = doc[key]
        if st["mean"] is not None:
            lines.append(f"- {label}: mean {st['mean']} s, p50 {st['p50']} s, max {st['max']} s")
    if doc["items"]:
        lines += [
            "",
            "| incident | status | root cause | fix | outcome | TTD | TTM |",
            "|---|---|---|---|---|---|---|",
        ]
        for i in doc["items"]:
            cells = [
                i[k] for k in ("id", "status", "root_cause", "fix", "outcome", "ttd_s", "ttm_s")
            ]
            lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    if doc["recurring"]:
        lines += ["", "## Recurring signatures"]
        lines += [
            f"- {markdown_code(r['signature'], NAME_LIMIT)} x{r['count']}" for r in doc["recurring"]
        ]
    if doc["open_proposals"]:
        lines += ["", "## Open hardening proposals"]
        for p in doc["open_proposals"]:
            why = "; ".join(str(w) for w in p["why"])
            lines.append(
                f"- {markdown_safe(p['incident'])}: {markdown_safe(p['title'], TEXT_LIMIT)} "
                f"({markdown_safe(why, TEXT_LIMIT)})"
            )
            for c in p["changes"]:
                setting = markdown_code(f"{c['service']}.{c['key']}", NAME_LIMIT)
                change = f"{markdown_safe(c['from'], NAME_LIMIT)} -> {markdown_safe(c['to'], NAME_LIMIT)}"
                lines.append(f"  - {setting}: {change}")
            lines += [f"  - {markdown_safe(r, TEXT_LIMIT)}" for r in p["reasoning"]]
    return "\n".join(lines) + "\n"


def next_run(at: str, tz: str, now: float | None = None) -> float:
    """The next wall time (epoch seconds) of HH:MM in the given time zone."""
    zone = ZoneInfo(tz)
    current = datetime.fromtimestamp(time.time() if now is None else now, zone)
    hour, minute = (int(x) for x in at.split(":"))
    target = current.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if target <= current:
        target += timedelta(days=1)
    return target.timestamp()


class DailyReview:
    """Jules's review, written once a day at the configured local time, under ``reports``."""

    def __init__(self, settings: Settings, log: IncidentLog, reports: Path) -> None:
        self.settings = settings
        self.log = log
        self.reports = reports
        self.due = next_run(settings.review_at, settings.review_tz)

    def write_if_due(self) -> None:
        if time.time() < self.due:
            return
        self.due = next_run(self.settings.review_at, self.settings.review_tz)
        doc = build(self.log, 86400.0)
        self.reports.mkdir(exist_ok=True)
        path = self.reports / f"review-{time.strftime('%Y-%m-%d')}.md"
        path.write_text(markdown(doc))
        self.log.emit("jules", f"daily review written: {path}")
