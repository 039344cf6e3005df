"""How memory hits are ranked: scores, their reasons, and the order they are shown in.

Hybrid: the cosine similarity of the query and the entry, blended with a
structured match of the incident signature (service, operation, fault class,
exception type).

- An entry's vector is a weighted sum of its parts' vectors, the diagnosis
  first (``KnowledgeEntry.views``); SRE shorthand in a query (rss, 5xx, oom)
  is spelled out before it is embedded (``memory.jargon``).
- With a signature (the Brain's recall), an identical signature outranks any
  partial one whatever the text says, and only it gives a ``confidence`` the
  Fixer may act on (a partial match is capped below 0.5).
- Without one (a person's free text), a service named in the query counts a
  little, and the hits are diversified (maximal marginal relevance), so an
  ambiguous question shows different explanations.
- Hits with the same signature, remediation and outcome collapse into the
  best of them; fixes that failed stay in the list, marked, so they are never
  repeated.
"""

from __future__ import annotations

import builtins
import copy
import re

from sre_space.memory.model import MemoryHit
from sre_space.memory.reads import Row
from sre_space.vocabulary import RECOVERED

# Blend when the query carries a signature (the Brain's recall).
SEMANTIC_WEIGHT = 0.45
SIGNATURE_WEIGHT = 0.55
# A partial structured match counts at most this much of an exact one, so an
# identical signature outranks a different one whatever the text says.
PARTIAL_SIGNATURE = 0.5
FIELD_WEIGHTS = (
    ("service", 0.35),
    ("operation", 0.15),
    ("fault_class", 0.35),
    ("exception_type", 0.15),
)
# Free text: a service named in the query.
MENTION_WEIGHT = 0.08
# A match on a different signature is never confident enough to act on.
PARTIAL_CONFIDENCE_CAP = 0.49
DIVERSITY_LAMBDA = 0.6  # free text: relevance vs. unlike the hits above (MMR)


def _parts(signature: str) -> tuple[str, str, str, str]:
    p = [*signature.split("|"), "", "", ""]
    return p[0], p[1], p[2], p[3]


def signature_match(a: str, b: str | None) -> float:
    """1 for the same signature; otherwise half the weighted share of equal fields."""
    if not b:
        return 0.0
    if a == b:
        return 1.0
    pa, pb = _parts(a), _parts(b)
    agree = sum(w for (_, w), x, y in zip(FIELD_WEIGHTS, pa, pb, strict=True) if x == y)
    return round(PARTIAL_SIGNATURE * agree, 4)


def _matching_fields(a: str, b: str) -> list[str]:
    return [
        name.replace("_", " ")
        for (name, _), x, y in zip(FIELD_WEIGHTS, _parts(a), _parts(b), strict=True)
        if x == y and x
    ]


def _mentions(query: str, service: str) -> bool:
    return bool(service) and re.search(rf"\b{re.escape(service)}\b", query, re.I) is not None


def top_hits(
    scored: builtins.list[_Scored], k: int, signature: str | None
) -> builtins.list[MemoryHit]:
    """The ``k`` hits shown, best first, from every candidate scored (see the module docstring)."""
    # One hit per lesson: same signature, same fix, same outcome.
    best: dict[tuple[str, str, str], _Scored] = {}
    for s in scored:
        key = s.row.lesson
        if key not in best or s.rank > best[key].rank:
            best[key] = s
    ranked = sorted(best.values(), key=lambda s: s.rank, reverse=True)
    if signature:
        return [_hit(s, signature) for s in ranked[:k]]
    return [_hit(s, signature) for s in _diversify(ranked, k)]


class _Scored:
    """A candidate's score, and what its hit will say; the hit itself is built only if shown."""

    __slots__ = ("confidence", "match", "mention", "rank", "ranked_up", "row", "score", "semantic")

    def __init__(
        self,
        row: Row,
        semantic: float,
        score: float,
        match: float,
        confidence: float,
        mention: bool,
    ) -> None:
        self.row = row
        self.semantic = semantic
        self.score = round(score, 4)
        self.match = match
        self.confidence = confidence
        self.mention = mention
        self.ranked_up = False
        # Best first: score, then a fix that worked, then the most recent.
        self.rank = (self.score, row.entry.outcome == RECOVERED, row.entry.created_at or 0.0)


def _score(row: Row, semantic: float, query: str, signature: str | None) -> _Scored:
    entry = row.entry
    semantic = max(0.0, min(1.0, semantic))
    if signature:
        match = signature_match(entry.signature, signature)
        score = SEMANTIC_WEIGHT * semantic + SIGNATURE_WEIGHT * match
        confidence = score if match == 1.0 else min(score, PARTIAL_CONFIDENCE_CAP)
        return _Scored(row, semantic, score, match, confidence, False)
    mention = _mentions(query, entry.service)
    score = (1 - MENTION_WEIGHT) * semantic + (MENTION_WEIGHT if mention else 0.0)
    return _Scored(row, semantic, score, 0.0, score, mention)


def _hit(s: _Scored, signature: str | None) -> MemoryHit:
    entry = s.row.entry
    why: builtins.list[str] = []
    if signature:
        if s.match == 1.0:
            why.append(f"same signature (x{SIGNATURE_WEIGHT})")
        else:
            agree = _matching_fields(entry.signature, signature)
            why.append(
                f"signature {s.match:.2f}: same {', '.join(agree)}" if agree else "other signature"
            )
        why.append(f"text similarity {s.semantic:.2f} (x{SEMANTIC_WEIGHT})")
    else:
        why.append(f"text similarity {s.semantic:.2f}")
        if s.mention:
            why.append(f"names {entry.service} (+{MENTION_WEIGHT})")
    if entry.recurrences:
        why.append(f"signature seen {entry.recurrences + 1} times")
    if not entry.recovered:
        why.append(f"this fix {entry.outcome}: never repeat it for this signature")
    if entry.unverified_import:
        why.append("imported, not verified here: never applied automatically")
    if s.ranked_up:
        why.append("ranked up for variety: unlike the hits above")
    return MemoryHit(
        id=entry.id,
        score=s.score,
        summary=entry.summary,
        service=entry.service,
        # The entry is kept for later searches: the caller gets its own copy.
        remediation=copy.deepcopy(entry.remediation),
        outcome=entry.outcome,
        signature=entry.signature,
        semantic=round(s.semantic, 4),
        signature_match=s.match,
        why="; ".join(why),
        confidence=round(s.confidence, 4),
        operation=entry.operation,
        fault_class=entry.fault_class,
        recurrences=entry.recurrences,
        last_seen=entry.last_seen,
        created_at=entry.created_at,
        imported=entry.imported,
        trusted=entry.trusted,
    )


def _diversify(ranked: builtins.list[_Scored], k: int) -> builtins.list[_Scored]:
    """Maximal marginal relevance: each next hit is relevant and unlike the ones above it.

    A person's words are often ambiguous ("inventory crashed": a crash, an
    out-of-memory kill, a hang); the top hits then show different
    explanations rather than the same one three times.
    """
    chosen: builtins.list[_Scored] = []
    left = builtins.list(ranked)
    while left and len(chosen) < k:

        def marginal(s: _Scored) -> float:
            overlap = max((float(s.row.unit @ c.row.unit) for c in chosen), default=0.0)
            return DIVERSITY_LAMBDA * s.score - (1 - DIVERSITY_LAMBDA) * overlap

        pick = max(left, key=marginal)
        left.remove(pick)
        if left and pick.score < max(s.score for s in left):
            pick.ranked_up = True
        chosen.append(pick)
    return chosen
