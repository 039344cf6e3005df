"""Searches kept between calls (memory.reads) never show a store older than its last write."""

from __future__ import annotations

from pathlib import Path

from sre_space.config import Settings
from sre_space.memory.store import MemoryStore
from test_memory_store import POOL_SIG, entry


def test_a_repeated_search_ranks_the_same_and_sees_every_write(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path / "home", chroma_url=None)
    with MemoryStore(settings) as store:
        store.archive_many([entry("INC-1", created_at=1000.0), entry("INC-2", outcome="failed")])
        query = "checkout pool exhausted"
        first = store.search(query, k=3, signature=POOL_SIG)
        again = store.search(query, k=3, signature=POOL_SIG)
        assert first == again and {h.id for h in first} == {"INC-1", "INC-2"}
        free = store.search(query, k=3)
        assert store.search(query, k=3) == free

        # A write drops what was kept: the new entry, its recurrence and a forget show.
        store.archive(entry("INC-3", created_at=3000.0, params={"db_pool_size": 300}))
        after = store.search(query, k=3, signature=POOL_SIG)
        assert "INC-3" in {h.id for h in after}
        assert all(h.recurrences == 2 for h in after)
        assert store.forget("INC-3")
        assert "INC-3" not in {h.id for h in store.search(query, k=3, signature=POOL_SIG)}
        assert "INC-3" not in {h.id for h in store.search(query, k=3)}
