"""Memory in Chroma: embedded PersistentClient by default, a Chroma server when configured.

Who writes
----------
Chroma's PersistentClient is not safe for several processes writing one
directory, nor for a reader open while another process writes. So:

- the acting mind is the only writer: it opens the store for its lifetime
  and Jules archives through it;
- while a mind runs, other commands (``memory search``, ``list``, ...) ask it
  over its loopback API (``sre_space.memory.api``), and commands that write
  (``memory forget``, ``memory import``) refuse;
- with no mind running, commands open the store themselves: readers with
  ``read_only=True``, which never create anything, writers for the length of
  one command.

An ``flock`` in the memory directory (``sre_space.memory.lock``) enforces
this: one writer or many readers, never both, and the kernel releases it when
a process dies, so a killed writer leaves committed entries readable and the
store openable. Chroma commits each write to its SQLite log before returning,
so an entry archived before a crash is there after it.

With ``chroma_url`` set, memory lives in a Chroma server (HttpClient), which
serialises writes itself; no lock is taken. Recurrence counts are a
read-modify-write, so two minds archiving the same signature at the same
instant may under-count by one.

Ranking
-------
Hybrid: the cosine similarity of the query and the entry, blended with a
structured match of the incident signature; the scores, their reasons and the
order hits are shown in are ``sre_space.memory.ranking``'s. This module finds
the candidates (nearest neighbours, at most two per vector, and the query's
own signature) and hands them to it.

Over 300 lines on purpose: ``MemoryStore`` holds the one Chroma collection
and the lock rule above; every read and write goes through it, so who may
write, and when, is decided in one class.
"""

from __future__ import annotations

import builtins
import re
import threading
import urllib.parse
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt

from sre_space.config import Settings
from sre_space.errors import Unavailable, UsageError
from sre_space.memory.jargon import expand
from sre_space.memory.lock import DirLock
from sre_space.memory.model import KnowledgeEntry, MemoryHit, remediation_key
from sre_space.memory.ranking import _score, signature_match, top_hits
from sre_space.memory.reads import Reads, Row
from sre_space.paths import Paths
from sre_space.vocabulary import RECOVERED, UNCLEAR

COLLECTION = "sre_space_memory"
SCAN = 1000  # nearest neighbours scanned by distance alone per search
CANDIDATES = 64  # of those, read and re-ranked: at most PER_VECTOR with the same vector
PER_VECTOR = 2
SAME_SIGNATURE = 24  # entries of the query's own signature read besides (they collapse to a few)
WRITER_WAIT_S = 10.0
READER_WAIT_S = 5.0
PAGE = 1000  # rows per Chroma call when reading or writing many

__all__ = ["KnowledgeEntry", "MemoryHit", "MemoryStore", "signature_match"]


def _collection_name(function: Any, default: bool) -> str:
    if default:
        return COLLECTION
    name = getattr(function, "name", None)
    try:
        label = str(name()) if callable(name) else type(function).__name__
    except Exception:  # legacy functions raise or warn from name()
        label = type(function).__name__
    slug = re.sub(r"[^a-zA-Z0-9._-]+", "-", label).strip("-._") or "custom"
    return f"{COLLECTION}_{slug}"[:60]


def _client(settings: Settings) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    chroma_settings = ChromaSettings(anonymized_telemetry=False)
    if settings.chroma_url:
        url = urllib.parse.urlsplit(settings.chroma_url)
        try:
            return chromadb.HttpClient(
                host=url.hostname or "127.0.0.1",
                port=url.port or (443 if url.scheme == "https" else 8000),
                ssl=url.scheme == "https",
                settings=chroma_settings,
            )
        except Exception as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise Unavailable(
                f"the Chroma server at {settings.chroma_url} did not answer: {reason}"
            ) from None
    path = Paths(settings.home).memory_dir
    return chromadb.PersistentClient(path=str(path), settings=chroma_settings)


class MemoryStore:
    """Knowledge entries in one Chroma collection; see the module docstring for who may write.

    Over 300 lines on purpose: every read and write shares the collection,
    the embedding function and the rule of who may write."""

    def __init__(
        self,
        settings: Settings,
        embedding_function: Any = None,
        *,
        read_only: bool = False,
    ) -> None:
        from sre_space.memory.embedding import MiniLMEmbedding, load_embedding_function

        spec = embedding_function or getattr(settings, "embedding_function", None)
        if isinstance(spec, str):
            function = load_embedding_function(spec)
        elif spec is None:
            function = MiniLMEmbedding()
        else:
            function = spec
        self.read_only = read_only
        self.server = bool(settings.chroma_url)
        self._function = function
        self._lock: DirLock | None = None
        self._collection: Any = None
        self._reader: ThreadPoolExecutor | None = None  # reads that overlap the query's embedding
        self._reader_lock = threading.Lock()
        # Query vectors and entries kept between searches (see memory.reads).
        self._reads = Reads(rows=not self.server)
        name = _collection_name(function, isinstance(function, MiniLMEmbedding))
        self.location = settings.chroma_url or str(Paths(settings.home).memory_dir)
        if not self.server:
            directory = Paths(settings.home).memory_dir
            if read_only and not (directory / "chroma.sqlite3").exists():
                return  # nothing was ever archived here; a reader creates nothing
            if not read_only:
                Paths(settings.home).ensure()
            self._lock = DirLock(
                directory,
                exclusive=not read_only,
                wait_s=READER_WAIT_S if read_only else WRITER_WAIT_S,
            )
        try:
            client = _client(settings)
            if read_only:
                self._collection = self._open_existing(client, name, function)
            else:
                self._collection = client.get_or_create_collection(
                    name, embedding_function=function, configuration={"hnsw": {"space": "cosine"}}
                )
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _open_existing(client: Any, name: str, function: Any) -> Any:
        from chromadb.errors import NotFoundError

        try:
            return client.get_collection(name, embedding_function=function)
        except (NotFoundError, ValueError):
            return None

    # --- lifecycle --------------------------------------------------------------------

    def close(self) -> None:
        """Release the directory lock; the store is not used afterwards."""
        with self._reader_lock:
            if self._reader is not None:
                self._reader.shutdown(wait=True)
                self._reader = None
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> MemoryStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _writable(self) -> Any:
        if self.read_only:
            raise UsageError("this memory store was opened read-only")
        return self._collection

    # --- writing ----------------------------------------------------------------------

    def archive(self, entry: KnowledgeEntry) -> KnowledgeEntry:
        """Store one incident (one entry per id) and bump its signature's recurrence count."""
        return self.archive_many([entry])[0]

    def archive_many(self, entries: Sequence[KnowledgeEntry]) -> builtins.list[KnowledgeEntry]:
        """Archive a batch: embeddings in batches, recurrence counted per signature."""
        with self._reads.writing():
            return self._archive_many(entries)

    def _archive_many(self, entries: Sequence[KnowledgeEntry]) -> builtins.list[KnowledgeEntry]:
        collection = self._writable()
        if not entries:
            return []
        # The last version of an id in the batch wins, as with single upserts.
        latest = {e.id: e for e in entries}
        signatures = sorted({e.signature for e in latest.values()})
        existing: dict[str, dict[str, KnowledgeEntry]] = defaultdict(dict)
        for entry in self._where({"signature": {"$in": signatures}}):
            existing[entry.signature][entry.id] = entry
        stored: dict[str, KnowledgeEntry] = {}
        touched: builtins.list[KnowledgeEntry] = []
        for signature in signatures:
            before = existing[signature]
            new = [e for e in latest.values() if e.signature == signature]
            fresh = [e for e in new if e.id not in before]
            base = max((e.recurrences for e in before.values()), default=-1)
            recurrences = base + len(fresh)
            everyone = [*before.values(), *new]
            first = min(e.first_seen or e.created_at for e in everyone)
            last = max(max(e.last_seen or e.created_at, e.created_at) for e in everyone)
            for e in new:
                stored[e.id] = replace(e, recurrences=recurrences, first_seen=first, last_seen=last)
            for e in before.values():
                if e.id in stored:
                    continue
                if (e.recurrences, e.first_seen, e.last_seen) != (recurrences, first, last):
                    touched.append(
                        replace(e, recurrences=recurrences, first_seen=first, last_seen=last)
                    )
        self._upsert(builtins.list(stored.values()))
        for start in range(0, len(touched), PAGE):
            chunk = touched[start : start + PAGE]
            collection.update(ids=[e.id for e in chunk], metadatas=[e.metadata() for e in chunk])
        return [stored[e.id] for e in entries]

    def restore(self, entries: Sequence[KnowledgeEntry]) -> int:
        """Write entries exactly as given (import): no recurrence bookkeeping."""
        self._writable()
        latest = builtins.list({e.id: e for e in entries}.values())
        with self._reads.writing():
            self._upsert(latest)
        return len(latest)

    def _upsert(self, entries: Sequence[KnowledgeEntry]) -> None:
        collection = self._writable()
        for start in range(0, len(entries), PAGE):
            chunk = entries[start : start + PAGE]
            views = [e.views() for e in chunk]
            # Recurrences read alike: embed each distinct text once.
            texts = builtins.list(dict.fromkeys(t for vs in views for t, _ in vs))
            vectors = {
                t: np.asarray(v, dtype=np.float32)
                for t, v in zip(texts, self._function(texts), strict=True)
            }
            embeddings = []
            for vs in views:
                mixed = sum((w * vectors[t] for t, w in vs), np.zeros_like(vectors[vs[0][0]]))
                embeddings.append(mixed / (float(np.linalg.norm(mixed)) or 1.0))
            collection.upsert(
                ids=[e.id for e in chunk],
                documents=[e.document() for e in chunk],
                embeddings=embeddings,
                metadatas=[e.metadata() for e in chunk],
            )

    def forget(self, id: str) -> bool:
        collection = self._writable()
        if self.get(id) is None:
            return False
        with self._reads.writing():
            collection.delete(ids=[id])
        return True

    # --- reading ----------------------------------------------------------------------

    def count(self) -> int:
        return 0 if self._collection is None else int(self._collection.count())

    def get(self, id: str) -> KnowledgeEntry | None:
        if self._collection is None:
            return None
        got = self._collection.get(ids=[id], include=["metadatas"])
        if not got["ids"]:
            return None
        return KnowledgeEntry.from_metadata(got["ids"][0], dict(got["metadatas"][0]))

    def _where(self, where: dict[str, Any] | None = None) -> Iterator[KnowledgeEntry]:
        if self._collection is None:
            return
        offset = 0
        while True:
            got = self._collection.get(
                where=where, limit=PAGE, offset=offset, include=["metadatas"]
            )
            for id_, meta in zip(got["ids"], got["metadatas"], strict=True):
                yield KnowledgeEntry.from_metadata(id_, dict(meta))
            if len(got["ids"]) < PAGE:
                return
            offset += PAGE

    def entries(self) -> builtins.list[KnowledgeEntry]:
        """Every entry, oldest first (ties by id): the order of an export."""
        return sorted(self._where(), key=lambda e: (e.created_at, e.id))

    def list(
        self, limit: int | None = 100, service: str | None = None, outcome: str | None = None
    ) -> builtins.list[KnowledgeEntry]:
        """Newest first."""
        clauses: builtins.list[dict[str, Any]] = []
        if service:
            clauses.append({"service": service})
        if outcome:
            clauses.append({"outcome": outcome})
        where = clauses[0] if len(clauses) == 1 else ({"$and": clauses} if clauses else None)
        found = sorted(self._where(where), key=lambda e: (e.created_at, e.id), reverse=True)
        return found if limit is None else found[:limit]

    def recurrences(self, signature: str) -> int:
        """How many times this signature came back after its first incident (0: once or never)."""
        return max((e.recurrences for e in self._where({"signature": signature})), default=0)

    def failed_remediations(self, signature: str) -> builtins.list[dict[str, Any]]:
        """Remediations that did not restore the SLO for this signature: never apply them again.

        One dict per distinct remediation (action, service, params), most recent
        first, with ``outcome``, ``incident_id`` (the latest), ``times`` and ``at``.
        """
        failed = {"outcome": {"$nin": [RECOVERED, UNCLEAR]}}
        where = {"$and": [{"signature": signature}, failed]}
        by_key: dict[str, dict[str, Any]] = {}
        for entry in sorted(self._where(where), key=lambda e: e.created_at, reverse=True):
            rem = entry.remediation
            key = remediation_key({"service": entry.service, **rem})
            if key in by_key:
                by_key[key]["times"] += 1
                continue
            by_key[key] = {
                "action": rem.get("action"),
                "service": rem.get("service", entry.service),
                "params": dict(rem.get("params") or {}),
                "outcome": entry.outcome,
                "incident_id": entry.id,
                "times": 1,
                "at": entry.created_at,
            }
        return builtins.list(by_key.values())

    def stats(self, top: int = 10) -> dict[str, Any]:
        """Counts by service, outcome and fault class, and the signatures that recur most."""
        entries = builtins.list(self._where())
        by_signature: dict[str, builtins.list[KnowledgeEntry]] = defaultdict(builtins.list)
        for e in entries:
            by_signature[e.signature].append(e)
        recurring = [
            {
                "signature": sig,
                "service": group[0].service,
                "fault_class": group[0].fault_class,
                "recurrences": max(e.recurrences for e in group),
                "entries": len(group),
                "recovered": sum(e.recovered for e in group),
                "first_seen": min(e.first_seen or e.created_at for e in group),
                "last_seen": max(e.last_seen or e.created_at for e in group),
            }
            for sig, group in by_signature.items()
            if max(e.recurrences for e in group) > 0
        ]
        recurring.sort(key=lambda r: (r["recurrences"], r["last_seen"]), reverse=True)
        return {
            "count": len(entries),
            "signatures": len(by_signature),
            "by_service": dict(Counter(e.service for e in entries).most_common()),
            "by_outcome": dict(Counter(e.outcome for e in entries).most_common()),
            "by_fault_class": dict(Counter(e.fault_class for e in entries).most_common()),
            "recurring": recurring[:top],
        }

    # --- search -----------------------------------------------------------------------

    def _embed_query(self, text: str) -> npt.NDArray[np.float32]:
        """The unit vector of ``text`` (the query with its shorthand spelled out)."""

        def embed(text: str) -> npt.NDArray[np.float32]:
            vector = np.asarray(self._function([text])[0], dtype=np.float32)
            unit: npt.NDArray[np.float32] = vector / (float(np.linalg.norm(vector)) or 1.0)
            return unit

        return self._reads.vector(text, embed)

    def _same_signature(
        self, signature: str, service: str | None
    ) -> Callable[[], builtins.list[Row]]:
        """The entries of the query's own signature, as a call that answers them.

        Their read does not need the query's vector: embedded, it starts at
        once on the store's reader thread and runs while the query is embedded
        (Chroma and onnxruntime both release the GIL).
        """
        collection = self._collection
        kept = self._reads.kept_same_signature(signature, service)
        if kept is not None:
            return lambda: kept
        if self.server:
            return lambda: self._reads.same_signature(
                collection, signature, service, SAME_SIGNATURE
            )
        with self._reader_lock:
            if self._reader is None:
                self._reader = ThreadPoolExecutor(1, thread_name_prefix="memory-read")
            future = self._reader.submit(
                self._reads.same_signature, collection, signature, service, SAME_SIGNATURE
            )
        return future.result

    def _candidates(
        self,
        text: str,
        vector: npt.NDArray[np.float32],
        service: str | None,
        signature: str | None,
        same: Callable[[], builtins.list[Row]] | None,
    ) -> builtins.list[Row]:
        """Entries worth ranking, with their vectors.

        Recurrences of one incident embed identically, so the nearest
        neighbours of a busy memory are mostly copies: scan many by distance
        alone (cheap), keep at most two per distinct vector, and only then read
        the metadata of the few left.
        """
        collection = self._collection
        # Free text needs a wide pool to diversify; a signature mostly needs its own.
        wanted = CANDIDATES // 2 if signature else CANDIDATES

        def scan() -> builtins.list[str]:
            found = collection.query(
                query_embeddings=[vector],
                n_results=SCAN,
                where={"service": service} if service else None,
                include=["distances"],
            )
            picked: builtins.list[str] = []
            copies: Counter[float] = Counter()
            for id_, dist in zip(found["ids"][0], found["distances"][0], strict=True):
                key = round(float(dist), 6)
                if copies[key] < PER_VECTOR:
                    copies[key] += 1
                    picked.append(id_)
                    if len(picked) >= wanted:
                        break
            return picked

        picked = self._reads.nearest((text, service, wanted), scan)
        rows: builtins.list[Row] = []
        if picked:
            rows += self._reads.by_ids(collection, picked)
        if same is not None:
            # Entries with the very same signature compete even when their text is far.
            rows += same()
        out: dict[str, Row] = {}
        for row in rows:
            if row.id not in out:
                out[row.id] = row
        return builtins.list(out.values())

    def search(
        self, query: str, *, k: int = 3, service: str | None = None, signature: str | None = None
    ) -> builtins.list[MemoryHit]:
        """The ``k`` best hits, best first; see ``sre_space.memory.ranking`` for the ranking.

        Every candidate is scored; a ``MemoryHit`` (with its reasons) is built
        only for the ``k`` shown.
        """
        if self._collection is None or k <= 0:
            return []
        same = self._same_signature(signature, service) if signature else None
        text = expand(query)
        vector = self._embed_query(text)
        scored = [
            _score(row, float(row.unit @ vector), query, signature)
            for row in self._candidates(text, vector, service, signature, same)
        ]
        return top_hits(scored, k, signature)
