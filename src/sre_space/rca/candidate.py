"""A candidate root cause, and how sure the ranking is of it (docs/rca.md, section 6)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# The top candidate's confidence runs between these (see _calibrate).
CONFIDENCE_FLOOR = 0.1
CONFIDENCE_CEILING = 0.95
# An answer resting on this many traces is discounted by half: a handful of
# traces in trouble is a coin toss however clear they look (n / (n + this)).
EVIDENCE_TRACES = 5


def signature(service: str, operation: str, fault_class: str, exception: str) -> str:
    """What memory matches incidents on: where, what kind, and the exception's type."""
    exc_type = exception.split(":", 1)[0] if ":" in exception else ""
    return "|".join((service, operation, fault_class, exc_type))


@dataclass
class Candidate:
    service: str
    operation: str
    score: float
    fault_class: str
    evidence: dict[str, Any] = field(default_factory=dict)
    confidence: float = 0.0  # the chance this is the root cause (calibrated, see calibrate)

    @property
    def exception(self) -> str:
        return str(self.evidence.get("exception", ""))

    @property
    def signature(self) -> str:
        return signature(self.service, self.operation, self.fault_class, self.exception)

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "operation": self.operation,
            "score": round(self.score, 4),
            "fault_class": self.fault_class,
            "confidence": self.confidence,
            "evidence": self.evidence,
        }


def calibrate(ranked: list[Candidate], dilution: float = 1.0) -> None:
    """Each candidate's confidence: the chance it is the root cause (see docs/rca.md).

    The top's lead over the next, the strength of its own evidence and how
    many traces it rests on all count; the rest share what the top leaves, in
    proportion to their scores.

    ``dilution``: how much the traces in trouble counted whole outnumber the
    same traces counted by their strongest blame (the square root, as in the
    Ochiai score). Traces whose only evidence is a hair over a bar hardly say
    anything, but they weaken every score alike: the strength is taken back
    from them. The ranking keeps its scores.
    """
    if not ranked:
        return
    if not ranked[0].evidence.get("explained_traces"):
        # nothing stands out: a guess among equals, growth at most orders it
        top = min(2 * CONFIDENCE_FLOOR, 1.0) if len(ranked) > 1 else 1.0
        ranked[0].confidence = round(top, 3)
        for c in ranked[1:]:
            c.confidence = round((1.0 - top) / (len(ranked) - 1), 3)
        return
    s1 = ranked[0].score
    s2 = ranked[1].score if len(ranked) > 1 else 0.0
    lead = (s1 - s2) / s1 if s1 > 0 else 0.0
    strength = min(1.0, s1 * dilution)
    traces = float(ranked[0].evidence.get("explained_traces") or 0)
    enough = traces / (traces + EVIDENCE_TRACES)
    top = (
        CONFIDENCE_FLOOR
        + (CONFIDENCE_CEILING - CONFIDENCE_FLOOR) * (lead * strength) ** 0.5 * enough
    )
    if len(ranked) == 1:
        top = max(top, CONFIDENCE_CEILING * strength)
    ranked[0].confidence = round(top, 3)
    rest = sum(c.score for c in ranked[1:])
    for c in ranked[1:]:
        share = c.score / rest if rest > 0 else 1.0 / (len(ranked) - 1)
        c.confidence = round(min(top, (1.0 - top) * share), 3)  # none above the first


def confidence_words(confidence: float) -> str:
    """How sure, in words: low confidence is said, not only numbered."""
    if confidence >= 0.8:
        return "confident"
    if confidence >= 0.5:
        return "likely"
    if confidence >= 0.25:
        return "uncertain: a best guess"
    return "low confidence: nothing clearly stands out; a guess to check first"
