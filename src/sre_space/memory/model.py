"""Knowledge tuples (what happened, what fixed it, whether that was verified) and search hits."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# Chroma metadata holds flat scalars only; these keys hold JSON.
_JSON_KEYS = ("remediation", "evidence")


@dataclass
class KnowledgeEntry:
    id: str
    signature: str
    service: str
    operation: str
    fault_class: str
    exception: str
    summary: str
    remediation: dict[str, Any]
    outcome: str  # recovered | failed | undone
    evidence: dict[str, Any] = field(default_factory=dict)
    ttm_s: float | None = None
    created_at: float = field(default_factory=time.time)

    def document(self) -> str:
        """The text that is embedded: the incident and its fix in words an SRE would use."""
        rem = self.remediation
        params = ", ".join(f"{k} {v}" for k, v in (rem.get("params") or {}).items())
        words = {
            "saturation": "saturation: a resource ran out (pool, queue, connections), requests time out",
            "latency": "latency: requests became slow",
            "error": "errors: requests fail",
            "crash": "crash: the service is down or unreachable",
            "structural": "structure: calls appeared or vanished",
        }.get(self.fault_class, self.fault_class)
        return (
            f"{self.summary} Service {self.service}, operation {self.operation}. {words}. "
            f"{self.exception}. Remediation: {rem.get('action', '')} on "
            f"{rem.get('service', self.service)} {params}. Outcome: {self.outcome}."
        )

    def metadata(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.pop("id")
        for key in _JSON_KEYS:
            doc[key] = json.dumps(doc[key], default=str)
        doc["ttm_s"] = -1.0 if self.ttm_s is None else float(self.ttm_s)
        return doc

    @classmethod
    def from_metadata(cls, id: str, meta: dict[str, Any]) -> KnowledgeEntry:
        doc = dict(meta)
        for key in _JSON_KEYS:
            doc[key] = json.loads(str(doc.get(key) or "{}"))
        ttm = float(doc.get("ttm_s", -1.0))
        doc["ttm_s"] = None if ttm < 0 else ttm
        known = cls.__dataclass_fields__
        return cls(id=id, **{k: v for k, v in doc.items() if k in known and k != "id"})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MemoryHit:
    id: str
    score: float
    summary: str
    service: str
    remediation: dict[str, Any]
    outcome: str
    signature: str
    semantic: float
    signature_match: float
    why: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
