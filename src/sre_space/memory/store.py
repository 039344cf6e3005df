"""Memory in Chroma: embedded PersistentClient by default, a Chroma server when configured.

Only the acting mind writes; other commands ask the mind (see localapi) or read
when no mind runs. Ranking is hybrid: semantic similarity of the text blended
with a structured match of the incident signature, so an exact signature
outranks a merely similar story.
"""

from __future__ import annotations

import builtins
import urllib.parse
from typing import Any

from chromadb.api.types import Documents, EmbeddingFunction

from sre_space.config import Settings
from sre_space.memory.model import KnowledgeEntry, MemoryHit
from sre_space.paths import Paths

COLLECTION = "sre_space_memory"
SEMANTIC_WEIGHT = 0.7
SIGNATURE_WEIGHT = 0.3

__all__ = ["KnowledgeEntry", "MemoryHit", "MemoryStore", "signature_match"]


def signature_match(a: str, b: str | None) -> float:
    """1 for the same signature, 0.5 same service and fault class, 0.25 same service."""
    if not b:
        return 0.0
    if a == b:
        return 1.0
    pa, pb = a.split("|"), b.split("|")
    if pa[0] != pb[0]:
        return 0.0
    return 0.5 if len(pa) > 2 and len(pb) > 2 and pa[2] == pb[2] else 0.25


def _client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urllib.parse.urlsplit(settings.chroma_url)
        return chromadb.HttpClient(
            host=url.hostname or "127.0.0.1",
            port=url.port or (443 if url.scheme == "https" else 8000),
            ssl=url.scheme == "https",
            settings=chroma_settings,
        )
    path = Paths(settings.home).ensure().memory_dir
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class MemoryStore:
    def __init__(
        self, settings: Settings, embedding_function: EmbeddingFunction[Documents] | None = None
    ) -> None:
        if embedding_function is None:
            from sre_space.memory.embedding import MiniLMEmbedding

            embedding_function = MiniLMEmbedding()
        self._client = _client(settings)
        self._collection = self._client.get_or_create_collection(
            COLLECTION,
            embedding_function=embedding_function,
            configuration={"hnsw": {"space": "cosine"}},
        )

    def archive(self, entry: KnowledgeEntry) -> None:
        self._collection.upsert(
            ids=[entry.id], documents=[entry.document()], metadatas=[entry.metadata()]
        )

    def count(self) -> int:
        return int(self._collection.count())

    def get(self, id: str) -> KnowledgeEntry | None:
        got = self._collection.get(ids=[id], include=["metadatas"])
        if not got["ids"]:
            return None
        return KnowledgeEntry.from_metadata(got["ids"][0], dict(got["metadatas"][0]))

    def list(self, limit: int = 100) -> list[KnowledgeEntry]:
        got = self._collection.get(limit=limit, include=["metadatas"])
        entries = [
            KnowledgeEntry.from_metadata(i, dict(m))
            for i, m in zip(got["ids"], got["metadatas"], strict=True)
        ]
        return sorted(entries, key=lambda e: e.created_at, reverse=True)

    def forget(self, id: str) -> bool:
        if self.get(id) is None:
            return False
        self._collection.delete(ids=[id])
        return True

    def search(
        self, query: str, *, k: int = 3, service: str | None = None, signature: str | None = None
    ) -> builtins.list[MemoryHit]:
        total = self.count()
        if total == 0:
            return []
        result = self._collection.query(
            query_texts=[query],
            n_results=min(total, max(k * 4, 20)),
            where={"service": service} if service else None,
            include=["metadatas", "distances"],
        )
        hits: builtins.list[MemoryHit] = []
        for id_, meta, dist in zip(
            result["ids"][0], result["metadatas"][0], result["distances"][0], strict=True
        ):
            entry = KnowledgeEntry.from_metadata(id_, dict(meta))
            semantic = max(0.0, min(1.0, 1.0 - float(dist)))
            sig = signature_match(entry.signature, signature)
            score = SEMANTIC_WEIGHT * semantic + SIGNATURE_WEIGHT * sig if signature else semantic
            why = f"text similarity {semantic:.2f}"
            if signature:
                why += f", signature match {sig:.2f}"
            if entry.outcome != "recovered":
                why += f"; this fix {entry.outcome}: do not repeat it"
            hits.append(
                MemoryHit(
                    id=entry.id,
                    score=round(score, 4),
                    summary=entry.summary,
                    service=entry.service,
                    remediation=entry.remediation,
                    outcome=entry.outcome,
                    signature=entry.signature,
                    semantic=round(semantic, 4),
                    signature_match=sig,
                    why=why,
                )
            )
        # Best first; among equal scores, fixes that worked before ones that did not.
        hits.sort(key=lambda h: (h.score, h.outcome == "recovered"), reverse=True)
        return hits[:k]
