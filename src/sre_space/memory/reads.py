"""What a memory search reads, kept between searches.

Profiled at 10,000 entries (``docs/performance.md``): a search spent about
40% embedding the query and 25% reading its candidates' metadata and vectors
back from Chroma. Both are kept here: query vectors by text (one model per
store), entries by id, with Chroma's own order of them (``get`` answers in
that order, and it decides ties in the ranking) and each signature's first
entries, so a repeated search reads nothing twice and ranks exactly as one
that read everything afresh.

Entries are dropped on every write through the store (``writing``). With a
Chroma server other minds may write too, so there only query vectors are
kept (``rows=False``). Embedded, the store's directory lock lets no other
process write while this one has it open.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import numpy.typing as npt

QUERY_VECTORS = 256  # query texts whose vectors are kept (the Brain asks the same again)
CACHED_ROWS = 20_000  # entries whose metadata and vector are kept for re-ranking
_INCLUDE = ["metadatas", "embeddings"]

Vector = npt.NDArray[np.float32]
Row = tuple[str, Any, Vector]  # id, metadata, unit vector


def unit_rows(got: Any) -> list[Row]:
    """A Chroma ``get`` answer as rows with unit vectors."""
    out = []
    for id_, meta, emb in zip(got["ids"], got["metadatas"], got["embeddings"], strict=True):
        e = np.asarray(emb, dtype=np.float32)
        out.append((id_, meta, e / (float(np.linalg.norm(e)) or 1.0)))
    return out


class Reads:
    def __init__(self, rows: bool) -> None:
        self.rows_kept = rows
        self._lock = threading.Lock()
        self._vectors: OrderedDict[str, Vector] = OrderedDict()
        self._rows: dict[str, tuple[Any, Vector]] = {}
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

    # --- entries -----------------------------------------------------------------------

    def _keep(self, generation: int, rows: list[Row]) -> None:
        if not self._fresh(generation):
            return
        if len(self._rows) + len(rows) > CACHED_ROWS:
            self._rows = {}
        for id_, meta, e in rows:
            self._rows[id_] = (meta, e)

    def by_ids(self, collection: Any, ids: list[str]) -> list[Row]:
        """Metadata and unit vectors of ``ids``, in Chroma's order (as ``get`` gives them)."""
        if not self.rows_kept:
            return unit_rows(collection.get(ids=ids, include=_INCLUDE))
        with self._lock:
            generation = self._generation
            found = {i: self._rows[i] for i in ids if i in self._rows}
            order = self._order
        missing = [i for i in ids if i not in found]
        if missing:
            fetched = unit_rows(collection.get(ids=missing, include=_INCLUDE))
            found.update((i, (meta, e)) for i, meta, e in fetched)
            with self._lock:
                self._keep(generation, fetched)
        if order is None:
            order = {id_: n for n, id_ in enumerate(collection.get(include=[])["ids"])}
            with self._lock:
                if self._fresh(generation):
                    self._order = order
        last = len(order)
        return [(i, *found[i]) for i in sorted(found, key=lambda i: order.get(i, last))]

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
                return [(i, *self._rows[i]) for i in ids]
        rows = unit_rows(collection.get(where=where, limit=limit, include=_INCLUDE))
        with self._lock:
            self._keep(generation, rows)
            if self._fresh(generation):
                self._same[key] = [i for i, _, _ in rows]
        return rows
