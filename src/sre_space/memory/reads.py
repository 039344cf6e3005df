"""What a memory search reads, kept between searches.

Profiled at 10,000 entries (``docs/performance.md``): a search spent about
40% embedding the query and 25% reading its candidates' metadata and vectors
back from Chroma. Both are kept here: query vectors by text (one model per
store), entries by id, with Chroma's own order of them (``get`` answers in
that order, and it decides ties in the ranking) and each signature's first
entries, so a repeated search reads nothing twice and ranks exactly as one
that read everything afresh. An entry is kept parsed (its JSON decoded once,
not once per search that reads it), and a repeated query keeps the ids its
nearest-neighbour scan picked, so it does not ask Chroma's index again.

Entries are dropped on every write through the store (``writing``). With a
Chroma server other minds may write too, so there only query vectors are
kept (``rows=False``). Embedded, the store's directory lock lets no other
process write while this one has it open.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

from sre_space.memory.model import KnowledgeEntry, remediation_key

QUERY_VECTORS = 256  # query texts whose vectors (and nearest-neighbour picks) are kept
CACHED_ROWS = 20_000  # entries whose metadata and vector are kept for re-ranking
_INCLUDE = ["metadatas", "embeddings"]

Vector = npt.NDArray[np.float32]


class Row(NamedTuple):
    """One entry as a search ranks it. Shared between searches: never mutated."""

    id: str
    entry: KnowledgeEntry
    unit: Vector  # the entry's unit vector
    lesson: tuple[str, str, str]  # signature, remediation, outcome: hits alike collapse


def unit_rows(got: Any) -> list[Row]:
    """A Chroma ``get`` answer as parsed rows with unit vectors."""
    out = []
    for id_, meta, emb in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True):
        e = np.asarray(emb, dtype=np.float32)
        unit = e / (float(np.linalg.norm(e)) or 1.0)
        unit.flags.writeable = False
        entry = KnowledgeEntry.from_metadata(id_, dict(meta))
        rem = remediation_key({"service": entry.service, **entry.remediation})
        out.append(Row(id_, entry, unit, (entry.signature, rem, entry.outcome)))
    return out


class Reads:
    def __init__(self, rows: bool) -> None:
        self.rows_kept = rows
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, Vector] = OrderedDict()
        self._near: OrderedDict[Hashable, list[str]] = OrderedDict()
        self._rows: dict[str, Row] = {}
        self._order: dict[str, int] | None = None  # id -> place in Chroma's order
        self._same: dict[tuple[str, str | None], list[str]] = {}
        self._generation = 0  # bumped by every write, as it starts and as it ends
        self._writing = 0

    @contextmanager
    def writing(self) -> Iterator[None]:
        """Around every write: what was read before it (or during it) is not kept."""
        with self._lock:
            self._writing += 1
            self._generation += 1
            self._drop()
        try:
            yield
        finally:
            with self._lock:
                self._writing -= 1
                self._generation += 1
                self._drop()

    def _drop(self) -> None:
        self._rows, self._order, self._same = {}, None, {}
        self._near = OrderedDict()

    def _fresh(self, generation: int) -> bool:
        return generation == self._generation and not self._writing

    # --- the query ---------------------------------------------------------------------

    def vector(self, text: str, embed: Callable[[str], Vector]) -> Vector:
        """The unit vector of ``text`` (``embed`` computes one)."""
        with self._lock:
            cached = self._vectors.get(text)
            if cached is not None:
                self._vectors.move_to_end(text)
                return cached
        vector = embed(text)
        vector.flags.writeable = False  # shared by every search of the same words
        with self._lock:
            self._vectors[text] = vector
            while len(self._vectors) > QUERY_VECTORS:
                self._vectors.popitem(last=False)
        return vector

    def nearest(self, key: Hashable, scan: Callable[[], list[str]]) -> list[str]:
        """The ids ``scan`` picks from Chroma's index for ``key`` (the query), kept until a write."""
        if not self.rows_kept:
            return scan()
        with self._lock:
            generation = self._generation
            cached = self._near.get(key)
            if cached is not None:
                self._near.move_to_end(key)
                return list(cached)
        ids = scan()
        with self._lock:
            if self._fresh(generation):
                self._near[key] = list(ids)
                while len(self._near) > QUERY_VECTORS:
                    self._near.popitem(last=False)
        return ids

    # --- entries -----------------------------------------------------------------------

    def _keep(self, generation: int, rows: list[Row]) -> None:
        if not self._fresh(generation):
            return
        if len(self._rows) + len(rows) > CACHED_ROWS:
            self._rows = {}
        for row in rows:
            self._rows[row.id] = row

    def by_ids(self, collection: Any, ids: list[str]) -> list[Row]:
        """The rows of ``ids``, in Chroma's order (as ``get`` gives them)."""
        if not self.rows_kept:
            return unit_rows(collection.get(ids=ids, include=_INCLUDE))
        with self._lock:
            generation = self._generation
            found = {i: self._rows[i] for i in ids if i in self._rows}
            order = self._order
        missing = [i for i in ids if i not in found]
        if missing:
            fetched = unit_rows(collection.get(ids=missing, include=_INCLUDE))
            found.update((row.id, row) for row in fetched)
            with self._lock:
                self._keep(generation, fetched)
        if order is None:
            order = {id_: n for n, id_ in enumerate(collection.get(include=[])["ids"])}
            with self._lock:
                if self._fresh(generation):
                    self._order = order
        last = len(order)
        return [found[i] for i in sorted(found, key=lambda i: order.get(i, last))]

    def kept_same_signature(self, signature: str, service: str | None) -> list[Row] | None:
        """What ``same_signature`` would answer without reading Chroma, or None."""
        if not self.rows_kept:
            return None
        with self._lock:
            ids = self._same.get((signature, service))
            if ids is not None and all(i in self._rows for i in ids):
                return [self._rows[i] for i in ids]
        return None

    def same_signature(
        self, collection: Any, signature: str, service: str | None, limit: int
    ) -> list[Row]:
        """The first ``limit`` entries of a signature (and service), in Chroma's order."""
        where: dict[str, Any] = {"signature": signature}
        if service:
            where = {"$and": [where, {"service": service}]}
        if not self.rows_kept:
            return unit_rows(collection.get(where=where, limit=limit, include=_INCLUDE))
        key = (signature, service)
        with self._lock:
            generation = self._generation
            ids = self._same.get(key)
            if ids is not None and all(i in self._rows for i in ids):
                return [self._rows[i] for i in ids]
        rows = unit_rows(collection.get(where=where, limit=limit, include=_INCLUDE))
        with self._lock:
            self._keep(generation, rows)
            if self._fresh(generation):
                self._same[key] = [row.id for row in rows]
        return rows
