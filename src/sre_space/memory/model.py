"""Knowledge tuples (what happened, what fixed it, whether that was verified) and search hits.

A ``KnowledgeEntry`` is one incident, archived by Jules once its outcome is
known. Its parts:

    signature      service, operation, fault class, exception type, the
                   message template (ids and numbers masked), status codes,
                   the call edge involved
    diagnosis      what the Brain concluded, its confidence and evidence
    remediation    action, service, params
    outcome        recovered | failed | undone, with the SLO before and after
                   and the time to mitigate (an ``unclear`` outcome, a recovery
                   something else may explain, is never archived: nothing learnt)
    recurrence     how many times the signature came back, first/last seen
    provenance     ``imported`` (from another home by `memory import`) and
                   ``trusted`` (its fix may be applied without having been
                   verified here: every local entry, an import only with --trust)

Failures are knowledge too: an entry whose outcome is not ``recovered`` tells
the Fixer never to apply that remediation to that signature again.

In Chroma an entry is stored as its JSON (metadata key ``entry``, exact round
trip) plus the flat keys that ``where`` filters need (``INDEXED``). Entries written before
that layout (flat keys only) still read.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sre_space.safe_text import message_template, one_line
from sre_space.vocabulary import ACTION_MEANINGS, ACTIONS, RECOVERED, describe

# The flat, filterable copies kept next to the JSON of the entry (few: Chroma
# reads metadata key by key, and search reads it for every candidate).
INDEXED = ("signature", "service", "outcome")
# Legacy layout: Chroma metadata holds flat scalars only; these keys held JSON.
_LEGACY_JSON_KEYS = ("remediation", "evidence")

# The class by name, short (the description says it at length); the last two
# are classes of entries written before the vocabulary was settled.
_FAULT_WORDS = {
    "saturation": "saturation: a resource ran out (pool, queue, connections), requests wait and time out",
    "timeout": "timeout: a dependency accepted calls and did not answer in time",
    "unreachable": "unreachable: connections refused or reset, the service is down",
    "error": "errors: requests fail",
    "latency": "latency: requests became slow",
    "cpu": "cpu: the service is starved of CPU, everything it does is slower",
    "memory": "memory: the service runs out of memory",
    "crash": "crash: the service is down or unreachable",
    "structural": "structure: calls appeared or vanished",
}
# The actions in a person's words (in the embedded text: see vocabulary.ACTION_MEANINGS).
_ACTION_WORDS: dict[str, str] = {a: ACTION_MEANINGS[a] for a in ACTIONS}


_NUMBER = re.compile(r"\b[0-9a-f]{16,}\b|\d+(\.\d+)?", re.I)


def _mask(text: str) -> str:
    return _NUMBER.sub("<n>", text)


def exception_type_of(signature: str, exception: str) -> str:
    """The exception type: the signature's last part, else the message up to its first colon."""
    parts = signature.split("|")
    if len(parts) >= 4 and parts[3]:
        return parts[3]
    head, sep, _ = exception.partition(":")
    return head.strip() if sep else ""


@dataclass
class KnowledgeEntry:
    # --- identity and signature (the original fields; keyword-compatible) ---------
    id: str
    signature: str
    service: str
    operation: str
    fault_class: str
    exception: str  # the message as it came (control characters removed): what people read
    summary: str
    remediation: dict[str, Any]  # action, service, params
    outcome: str  # recovered | failed | undone (never unclear: Jules does not archive it)
    evidence: dict[str, Any] = field(default_factory=dict)
    ttm_s: float | None = None
    created_at: float = field(default_factory=time.time)
    # --- signature detail ----------------------------------------------------------
    exception_type: str = ""  # derived from the signature when empty
    status_codes: list[int] = field(default_factory=list)
    call_edge: str = ""  # "caller -> callee"
    # --- diagnosis -----------------------------------------------------------------
    diagnosis: str = ""  # the Brain's conclusion in a sentence
    confidence: float | None = None
    # --- verified outcome ----------------------------------------------------------
    slo_recovered: bool | None = None  # derived from outcome when None
    error_rate_before: float | None = None  # derived from evidence.before/after when None
    error_rate_after: float | None = None
    p95_ms_before: float | None = None
    p95_ms_after: float | None = None
    # --- recurrence (kept up to date by MemoryStore.archive) -------------------------
    recurrences: int = 0  # times this signature came back after its first incident
    first_seen: float | None = None  # of the signature; created_at when None
    last_seen: float | None = None
    # --- in people's words (derived when empty) -------------------------------------
    exception_template: str = ""  # ids and numbers masked: for signatures and matching only
    description: str = ""  # the symptoms and class in plain language, so people's words find it
    # --- provenance (set by `memory import`, whatever the file says) -----------------
    imported: bool = False
    trusted: bool = True

    @property
    def unverified_import(self) -> bool:
        """Imported and not trusted: the Fixer proposes nothing from it automatically."""
        return self.imported and not self.trusted

    def __post_init__(self) -> None:
        # Idempotent, so an export imported again is unchanged.
        self.exception = one_line(self.exception)
        if not self.exception_template:
            self.exception_template = message_template(self.exception)
        if not self.description:
            self.description = describe(self.fault_class)
        if not self.exception_type:
            self.exception_type = exception_type_of(self.signature, self.exception)
        if self.slo_recovered is None:
            self.slo_recovered = self.outcome == RECOVERED
        for name, side, key in (
            ("error_rate_before", "before", "error_rate"),
            ("error_rate_after", "after", "error_rate"),
            ("p95_ms_before", "before", "p95_ms"),
            ("p95_ms_after", "after", "p95_ms"),
        ):
            if getattr(self, name) is None:
                slo = self.evidence.get(side)
                if isinstance(slo, dict) and isinstance(slo.get(key), int | float):
                    setattr(self, name, float(slo[key]))
        if self.first_seen is None:
            self.first_seen = self.created_at
        if self.last_seen is None:
            self.last_seen = self.created_at

    # --- views ---------------------------------------------------------------------

    @property
    def recovered(self) -> bool:
        return self.outcome == RECOVERED

    def document(self) -> str:
        """The text that is embedded: the incident and its fix in words an SRE would use.

        Numbers and ids are masked (they carry no meaning for the model), so the
        recurrences of an incident read alike and embed once per batch.
        """
        rem = self.remediation
        action = str(rem.get("action", ""))
        params = ", ".join(f"{k} {v}" for k, v in (rem.get("params") or {}).items())
        parts = [
            f"{self.service} {self.operation}: {_FAULT_WORDS.get(self.fault_class, self.fault_class)}.",
            f"{self.description}." if self.description else "",
            f"{self.exception_template}." if self.exception_template else "",
            " ".join(f"HTTP {c}." for c in self.status_codes),  # kept: "500s" means something
            f"Call {self.call_edge}." if self.call_edge else "",
            f"{_mask(self.diagnosis)}." if self.diagnosis else "",
            f"Fix: {_ACTION_WORDS.get(action, action)} on {rem.get('service', self.service)} "
            f"{_mask(params)}".rstrip()
            + f"; {self.outcome}.",
        ]
        return " ".join(p for p in parts if p)

    def views(self) -> list[tuple[str, float]]:
        """The parts embedded for search, and each one's weight in the entry's vector.

        The diagnosis says most about what happened (without one, the summary
        stands in); then the symptom (exception, status codes), where it
        happened, and the fix. One mean-pooled vector of the whole text lets
        boilerplate drown the words that tell incidents apart; a weighted sum
        of the parts' vectors keeps them. Numbers are masked.
        """
        fault = self.description or _FAULT_WORDS.get(self.fault_class, self.fault_class)
        symptom = " ".join(
            [self.exception_template, *(f"HTTP {c}" for c in self.status_codes)]
        ).strip()
        action = str(self.remediation.get("action", ""))
        return [
            (_mask(self.diagnosis or self.summary) or fault, 2.0),
            (symptom or fault, 0.5),
            (f"{self.service} {self.operation}: {fault}", 0.5),
            (f"fix: {_ACTION_WORDS.get(action, action)}; {self.outcome}", 0.25),
        ]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, doc: Any) -> KnowledgeEntry:
        """A validated entry; ``ValueError`` names the first field that is wrong."""
        if not isinstance(doc, dict):
            raise ValueError("an entry is a JSON object")
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(doc) - set(known))
        if unknown:
            raise ValueError(f"unknown field {unknown[0]!r}")
        for name in ("id", "signature", "service", "operation", "fault_class", "outcome"):
            if not isinstance(doc.get(name), str) or not doc[name]:
                raise ValueError(f"field {name!r} must be a non-empty string")
        for name in (
            "exception",
            "summary",
            "exception_type",
            "call_edge",
            "diagnosis",
            "exception_template",
            "description",
        ):
            if name in doc and not isinstance(doc[name], str):
                raise ValueError(f"field {name!r} must be a string")
        for name in ("exception", "summary"):
            if name not in doc:
                raise ValueError(f"missing field {name!r}")
        rem = doc.get("remediation")
        if not isinstance(rem, dict) or not isinstance(rem.get("action"), str):
            raise ValueError("field 'remediation' must be an object with an 'action'")
        if not isinstance(rem.get("params", {}), dict):
            raise ValueError("field 'remediation.params' must be an object")
        if not isinstance(doc.get("evidence", {}), dict):
            raise ValueError("field 'evidence' must be an object")
        codes = doc.get("status_codes", [])
        if not isinstance(codes, list) or not all(_is_int(c) for c in codes):
            raise ValueError("field 'status_codes' must be a list of integers")
        for name in (
            "ttm_s",
            "confidence",
            "error_rate_before",
            "error_rate_after",
            "p95_ms_before",
            "p95_ms_after",
            "first_seen",
            "last_seen",
        ):
            if doc.get(name) is not None and not _is_number(doc[name]):
                raise ValueError(f"field {name!r} must be a number or null")
        if "created_at" in doc and not _is_number(doc["created_at"]):
            raise ValueError("field 'created_at' must be a number")
        if "recurrences" in doc and not (_is_int(doc["recurrences"]) and doc["recurrences"] >= 0):
            raise ValueError("field 'recurrences' must be a non-negative integer")
        if doc.get("slo_recovered") is not None and not isinstance(doc["slo_recovered"], bool):
            raise ValueError("field 'slo_recovered' must be true, false or null")
        for name in ("imported", "trusted"):
            if name in doc and not isinstance(doc[name], bool):
                raise ValueError(f"field {name!r} must be true or false")
        return cls(**doc)

    # --- Chroma --------------------------------------------------------------------

    def metadata(self) -> dict[str, Any]:
        """Chroma metadata: the entry's JSON plus flat copies of the keys filters use."""
        doc = self.to_json()
        meta: dict[str, Any] = {k: doc[k] for k in INDEXED}
        meta["entry"] = json.dumps(doc, sort_keys=True, default=str)
        return meta

    @classmethod
    def from_metadata(cls, id: str, meta: dict[str, Any]) -> KnowledgeEntry:
        if "entry" in meta:
            doc = json.loads(str(meta["entry"]))
            doc["id"] = id
            known = {f.name for f in fields(cls)}
            return cls(**{k: v for k, v in doc.items() if k in known})
        # Legacy layout (before the entry was stored as JSON).
        doc = dict(meta)
        for key in _LEGACY_JSON_KEYS:
            doc[key] = json.loads(str(doc.get(key) or "{}"))
        ttm = float(doc.get("ttm_s", -1.0))
        doc["ttm_s"] = None if ttm < 0 else ttm
        known = {f.name for f in fields(cls)}
        return cls(id=id, **{k: v for k, v in doc.items() if k in known and k != "id"})


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def remediation_key(remediation: dict[str, Any]) -> str:
    """A canonical text for a remediation: same action, service and params, same key."""
    return json.dumps(
        {
            "action": remediation.get("action"),
            "service": remediation.get("service"),
            "params": remediation.get("params") or {},
        },
        sort_keys=True,
        default=str,
    )


@dataclass
class MemoryHit:
    """One search result, best first. ``why`` says how ``score`` was made."""

    id: str
    score: float  # the hybrid ranking score, 0..1
    summary: str
    service: str
    remediation: dict[str, Any]
    outcome: str
    signature: str
    semantic: float  # cosine similarity of the query and the entry's text
    signature_match: float  # structured match against the query's signature (0 without one)
    why: str
    confidence: float = 0.0  # what the Fixer acts on: only an identical signature can pass 0.5
    operation: str = ""
    fault_class: str = ""
    recurrences: int = 0
    last_seen: float | None = None
    created_at: float | None = None
    imported: bool = False  # from another home (`memory import`)
    trusted: bool = True  # False: imported and not verified here, never applied automatically

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_jsonl(lines: Iterable[str]) -> Iterator[tuple[int, KnowledgeEntry | None, str]]:
    """(line number, entry or None, what is wrong) for each non-blank line of an export."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, KnowledgeEntry.from_json(json.loads(line)), ""
        except json.JSONDecodeError as exc:
            yield number, None, f"not JSON ({exc.msg})"
        except (ValueError, TypeError) as exc:
            yield number, None, str(exc)


def to_jsonl(entry: KnowledgeEntry) -> str:
    """One line of an export: the entry's JSON, keys sorted."""
    return json.dumps(entry.to_json(), sort_keys=True) + "\n"
