"""Memory in Chroma with the real offline embedding: archive, hybrid search, persistence.

The embedded store runs a real PersistentClient in tmp_path; one test runs a
real Chroma server (``chroma run``) and talks to it through ``chroma_url``.
"""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sre_space.config import Settings
from sre_space.memory.store import KnowledgeEntry, MemoryHit, MemoryStore

from helpers import chroma_server as helpers_chroma_server
from helpers import free_port

DB_SIGNATURE = "checkout|POST /checkout|saturation|DatabaseTimeout"
OOM_SIGNATURE = "payments|POST /charge|crash|OutOfMemoryError"


def entry(
    id: str,
    signature: str,
    summary: str,
    exception: str,
    remediation: dict[str, Any],
    outcome: str = "recovered",
    created_at: float = 1_790_000_000.0,
) -> KnowledgeEntry:
    service, operation, fault_class, _ = signature.split("|")
    return KnowledgeEntry(
        id=id,
        signature=signature,
        service=service,
        operation=operation,
        fault_class=fault_class,
        exception=exception,
        summary=summary,
        remediation=remediation,
        outcome=outcome,
        evidence={"error_rate_before": 0.4, "error_rate_after": 0.0, "trace_ids": ["ab" * 16]},
        ttm_s=42.0,
        created_at=created_at,
    )


def incidents() -> list[KnowledgeEntry]:
    return [
        entry(
            "INC-20261126-0001",
            DB_SIGNATURE,
            "Checkout requests timed out waiting for a database connection: the pool of 10 was "
            "exhausted under load. Raising db_pool_size to 100 fixed it.",
            "DatabaseTimeout: database connection timeout: pool exhausted (<n>/<n> in use, waited <n> ms)",
            {"action": "patch_config", "service": "checkout", "params": {"db_pool_size": 100}},
            created_at=1_790_000_001.0,
        ),
        entry(
            "INC-20261126-0002",
            "payments|POST /charge|error|HTTPError",
            "Payments started returning HTTP 500 right after release v2.3.1; rolling back to v2.3.0 "
            "restored it.",
            "HTTPError: 500 Internal Server Error from payments",
            {"action": "rollback", "service": "payments", "params": {"version": "v2.3.0"}},
            created_at=1_790_000_002.0,
        ),
        entry(
            "INC-20261126-0003",
            "inventory|GET /stock|crash|ConnectionRefused",
            "The inventory process crashed and every stock lookup was refused; a restart brought "
            "it back.",
            "ConnectionRefused: connection refused to inventory:<n>",
            {"action": "restart", "service": "inventory", "params": {}},
            created_at=1_790_000_003.0,
        ),
        entry(
            "INC-20261126-0004",
            "frontend|GET /|latency|",
            "Frontend pages became slow, p95 over 2 seconds, because the frontend was CPU bound; "
            "scaling out to 3 replicas fixed it.",
            "",
            {"action": "scale_out", "service": "frontend", "params": {"replicas": 3}},
            created_at=1_790_000_004.0,
        ),
        entry(
            "INC-20261126-0005",
            OOM_SIGNATURE,
            "Payments leaked memory until the process was OOM-killed; a restart freed it.",
            "OutOfMemoryError: heap exhausted after <n> MB",
            {"action": "restart", "service": "payments", "params": {}},
            created_at=1_790_000_005.0,
        ),
        entry(
            "INC-20261126-0006",
            "inventory|GET /stock|error|NetworkUnreachable",
            "A network partition cut checkout off from inventory; opening the circuit to "
            "inventory stopped the cascade until the network healed.",
            "NetworkUnreachable: no route to host inventory",
            {"action": "open_circuit", "service": "inventory", "params": {}},
            created_at=1_790_000_006.0,
        ),
    ]


def settings(home: Path, chroma_url: str | None = None) -> Settings:
    return Settings(home=home, chroma_url=chroma_url)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MemoryStore]:
    s = MemoryStore(settings(tmp_path / "home"))
    for e in incidents():
        s.archive(e)
    yield s
    s.close()


def top(store: MemoryStore, query: str, **kw: Any) -> MemoryHit:
    hits = store.search(query, **kw)
    assert hits, query
    return hits[0]


# --- search -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        "pool saturation",
        "checkout cant get db connections",
        "db connections maxed out",
        "checkout timing out on database",
    ],
)
def test_the_database_pool_incident_answers_its_paraphrases(store: MemoryStore, query: str) -> None:
    assert top(store, query).id == "INC-20261126-0001"


def test_other_faults_find_their_own_incidents(store: MemoryStore) -> None:
    assert top(store, "payments 500 errors after the deploy").id == "INC-20261126-0002"
    assert top(store, "inventory is down, connection refused").id == "INC-20261126-0003"
    assert top(store, "frontend slow, high cpu").id == "INC-20261126-0004"
    assert top(store, "payments memory keeps growing until it is killed").id == "INC-20261126-0005"
    assert top(store, "network partition between checkout and inventory").id == "INC-20261126-0006"


def test_an_exact_signature_outranks_a_semantically_closer_text(store: MemoryStore) -> None:
    query = "database connection pool exhausted"  # the checkout db entry's words
    by_text = store.search(query, k=6)
    semantic = {h.id: h.semantic for h in by_text}
    assert by_text[0].id == "INC-20261126-0001"
    assert semantic["INC-20261126-0005"] < semantic["INC-20261126-0001"]

    hits = store.search(query, k=6, signature=OOM_SIGNATURE)
    assert hits[0].id == "INC-20261126-0005"
    assert hits[0].signature_match == 1.0
    closer = next(h for h in hits if h.id == "INC-20261126-0001")
    assert closer.semantic > hits[0].semantic and closer.signature_match < 1.0
    assert hits[0].score > closer.score


def test_the_service_filter_only_returns_that_service(store: MemoryStore) -> None:
    hits = store.search("pool saturation", k=6, service="payments")
    assert hits and {h.service for h in hits} == {"payments"}
    assert store.search("pool saturation", k=6, service="nonexistent") == []


def test_hits_are_best_first_scored_in_unit_range_and_serialise(store: MemoryStore) -> None:
    for query, sig in [("pool saturation", None), ("anything at all", DB_SIGNATURE), ("", None)]:
        hits = store.search(query, k=6, signature=sig)
        assert 1 <= len(hits) <= 6
        scores = [h.score for h in hits]
        if sig:
            assert scores == sorted(scores, reverse=True)
        else:
            # Free text is diversified: the best hit leads; a hit placed above a
            # better-scored one says so.
            assert scores[0] == max(scores)
            for i, h in enumerate(hits):
                if any(later.score > h.score for later in hits[i + 1 :]):
                    assert "ranked up for variety" in h.why, h.why
        for h in hits:
            assert 0.0 <= h.score <= 1.0 and 0.0 <= h.semantic <= 1.0
            assert 0.0 <= h.signature_match <= 1.0 and h.why
    doc = top(store, "pool saturation").to_json()
    for key in (
        "id",
        "score",
        "summary",
        "service",
        "remediation",
        "outcome",
        "signature",
        "semantic",
        "signature_match",
        "why",
    ):
        assert key in doc
    assert doc["remediation"] == {
        "action": "patch_config",
        "service": "checkout",
        "params": {"db_pool_size": 100},
    }
    json.dumps(doc)


def test_k_limits_the_hits(store: MemoryStore) -> None:
    assert len(store.search("incident", k=1)) == 1
    assert len(store.search("incident", k=3)) == 3
    assert len(store.search("incident", k=50)) == 6


def test_a_failed_fix_is_still_returned_and_says_so(store: MemoryStore) -> None:
    failed = entry(
        "INC-20261126-0007",
        DB_SIGNATURE,
        "Checkout timed out on an exhausted database pool; restarting checkout did not help.",
        "DatabaseTimeout: database connection timeout: pool exhausted (<n>/<n> in use, waited <n> ms)",
        {"action": "restart", "service": "checkout", "params": {}},
        outcome="failed",
        created_at=1_790_000_007.0,
    )
    store.archive(failed)
    hits = store.search("checkout database pool exhausted", k=6, signature=DB_SIGNATURE)
    # Both carry the exact signature, so both outrank every other incident.
    assert {h.id for h in hits[:2]} == {"INC-20261126-0001", "INC-20261126-0007"}
    bad = next(h for h in hits if h.id == "INC-20261126-0007")
    assert bad.outcome == "failed" and "failed" in bad.why


def test_on_equal_scores_a_fix_that_worked_ranks_before_one_that_failed(tmp_path: Path) -> None:
    # A constant embedding makes every text equally similar: only the outcome orders them.
    from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
    from chromadb.utils.embedding_functions import register_embedding_function

    @register_embedding_function
    class Constant(EmbeddingFunction[Documents]):
        def __init__(self) -> None:
            pass

        def __call__(self, input: Documents) -> Embeddings:
            import numpy as np

            return [np.ones(8, dtype=np.float32) / np.sqrt(8) for _ in input]

        @staticmethod
        def name() -> str:
            return "sre-space-test-constant"

        def get_config(self) -> dict[str, Any]:
            return {}

        @staticmethod
        def build_from_config(config: dict[str, Any]) -> Constant:
            return Constant()

    with MemoryStore(settings(tmp_path / "home"), embedding_function=Constant()) as s:
        failed = entry(
            "INC-B",
            "payments|POST /charge|error|HTTPError",
            "restart did not help",
            "HTTPError: 500",
            {"action": "restart", "service": "payments", "params": {}},
            outcome="failed",
            created_at=1_790_000_100.0,
        )
        worked = entry(
            "INC-A",
            "inventory|GET /stock|crash|Crash",
            "restart helped",
            "Crash: gone",
            {"action": "restart", "service": "inventory", "params": {}},
            created_at=1_790_000_000.0,
        )  # older: recency does not beat outcome
        s.archive(failed)
        s.archive(worked)
        hits = s.search("some incident", k=5)
        assert [h.id for h in hits] == ["INC-A", "INC-B"]
        assert hits[0].score == hits[1].score


# --- storage ----------------------------------------------------------------------------


def test_an_empty_store_finds_nothing(tmp_path: Path) -> None:
    with MemoryStore(settings(tmp_path / "home")) as s:
        assert s.count() == 0
        assert s.search("pool saturation") == []
        assert s.list() == []
        assert s.get("INC-nope") is None


def test_get_round_trips_an_entry(store: MemoryStore) -> None:
    original = incidents()[0]
    got = store.get(original.id)
    assert got is not None
    for name in (
        "id",
        "signature",
        "service",
        "operation",
        "fault_class",
        "exception",
        "summary",
        "remediation",
        "outcome",
        "evidence",
        "ttm_s",
        "created_at",
    ):
        assert getattr(got, name) == getattr(original, name), name


def test_archive_upserts_by_id(store: MemoryStore) -> None:
    changed = incidents()[2]
    changed.summary = "Inventory crashed again; restart fixed it again."
    store.archive(changed)
    assert store.count() == 6
    got = store.get(changed.id)
    assert got is not None and got.summary == changed.summary


def test_list_is_newest_first_and_limited(store: MemoryStore) -> None:
    listed = store.list(limit=3)
    assert [e.id for e in listed] == ["INC-20261126-0006", "INC-20261126-0005", "INC-20261126-0004"]
    assert len(store.list()) == 6


def test_forget_removes_an_entry(store: MemoryStore) -> None:
    assert store.forget("INC-20261126-0001") is True
    assert store.get("INC-20261126-0001") is None
    assert store.count() == 5
    assert "INC-20261126-0001" not in [h.id for h in store.search("pool saturation", k=6)]
    assert store.forget("INC-20261126-0001") is False


def test_memory_survives_closing_and_reopening(tmp_path: Path) -> None:
    home = tmp_path / "home"
    with MemoryStore(settings(home)) as s:
        for e in incidents():
            s.archive(e)
    assert (home / "memory").is_dir()
    with MemoryStore(settings(home)) as again:
        assert again.count() == 6
        assert top(again, "pool saturation").id == "INC-20261126-0001"
        assert again.get("INC-20261126-0005") is not None


def test_the_embedded_store_never_touches_the_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No telemetry, no model download: any non-local connection fails the test."""
    real_connect = socket.socket.connect
    attempts: list[Any] = []

    def guarded(self: socket.socket, address: Any) -> Any:
        if self.family != socket.AF_UNIX:
            attempts.append(address)
            raise OSError(f"network use in the embedded memory store: {address}")
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with MemoryStore(settings(tmp_path / "home")) as s:
            s.archive(incidents()[0])
            assert top(s, "pool saturation").id == "INC-20261126-0001"
        with MemoryStore(settings(tmp_path / "home")) as s:  # reopened: the persisted function
            assert s.count() == 1
    assert attempts == []
    chroma = [
        w for w in caught if "chromadb" in w.filename or "embedding" in str(w.message).lower()
    ]
    assert chroma == [], [str(w.message) for w in chroma]


def test_the_collection_persists_the_offline_function(tmp_path: Path) -> None:
    """Reopened without a function, Chroma rebuilds ours from its config, not its default."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    from sre_space.memory.embedding import MiniLMEmbedding
    from sre_space.memory.store import COLLECTION

    home = tmp_path / "home"
    with MemoryStore(settings(home)) as s:
        s.archive(incidents()[0])
    client = chromadb.PersistentClient(
        path=str(home / "memory"), settings=ChromaSettings(anonymized_telemetry=False)
    )
    config = client.get_collection(COLLECTION).configuration_json
    assert config["embedding_function"]["name"] == MiniLMEmbedding.name()
    assert config["hnsw"]["space"] == "cosine"


# --- a real Chroma server ---------------------------------------------------------------


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    with helpers_chroma_server(tmp_path) as url:
        yield url


def test_memory_in_a_chroma_server(tmp_path: Path, chroma_server: str) -> None:
    home = tmp_path / "home"
    with MemoryStore(settings(home, chroma_url=chroma_server)) as s:
        for e in incidents():
            s.archive(e)
        assert s.count() == 6
        assert top(s, "checkout cant get db connections").id == "INC-20261126-0001"
        hits = s.search("database connection pool exhausted", k=6, signature=OOM_SIGNATURE)
        assert hits[0].id == "INC-20261126-0005"
        assert {h.service for h in s.search("restart", k=6, service="inventory")} == {"inventory"}
        assert s.forget("INC-20261126-0002") and s.count() == 5
    # Server mode keeps nothing in the local memory directory.
    assert not (home / "memory" / "chroma.sqlite3").exists()
    with MemoryStore(settings(home, chroma_url=chroma_server)) as again:
        assert again.count() == 5


def test_an_unreachable_chroma_server_is_unavailable(tmp_path: Path) -> None:
    from sre_space.errors import Unavailable

    with pytest.raises(Unavailable, match="Chroma server"):
        MemoryStore(settings(tmp_path / "home", chroma_url=f"http://127.0.0.1:{free_port()}"))
