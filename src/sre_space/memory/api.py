"""Memory over a running mind's loopback API: the routes the mind serves.

While a mind runs it is the only process that opens the embedded store, so
``sre-space memory`` asks it through these routes (read-only; writing commands
refuse while a mind runs). Wire them into the mind's ``LocalApi`` with
``**routes(store)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sre_space.memory.store import MemoryStore

Route = Callable[[dict[str, str]], Any]


def _int(params: dict[str, str], key: str, default: int) -> int:
    try:
        return int(params.get(key, default))
    except ValueError:
        raise ValueError(f"{key} must be an integer") from None


def routes(store: MemoryStore) -> dict[str, Route]:
    def search(p: dict[str, str]) -> Any:
        hits = store.search(
            p["q"],
            k=_int(p, "k", 3),
            service=p.get("service") or None,
            signature=p.get("signature") or None,
        )
        return [h.to_json() for h in hits]

    def listing(p: dict[str, str]) -> Any:
        limit = _int(p, "limit", 100)
        found = store.list(
            limit=None if limit <= 0 else limit,
            service=p.get("service") or None,
            outcome=p.get("outcome") or None,
        )
        return [e.to_json() for e in found]

    def get(p: dict[str, str]) -> Any:
        entry = store.get(p["id"])
        return None if entry is None else entry.to_json()

    return {
        "/memory/search": search,
        "/memory/list": listing,
        "/memory/get": get,
        "/memory/stats": lambda p: store.stats(top=_int(p, "top", 10)),
        "/memory/export": lambda _: [e.to_json() for e in store.entries()],
        "/memory/failed": lambda p: store.failed_remediations(p["signature"]),
    }
