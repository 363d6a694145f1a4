"""LangChain integration: a ``langchain_core`` VectorStore backed by a compressed store.

No langchain-community, no pickle: the store on disk is the same one ``rag index`` writes.

>>> vs = CompressedVectorStore.from_texts(["a", "b"], embedding=None, store_dir="stores/lc")
>>> retriever = vs.as_retriever(search_kwargs={"k": 4})
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore

from indexing.chunk import Chunk, ChunkSettings
from indexing.embed import DEFAULT_MODEL, Embedder, load_embedder, normalize
from indexing.errors import ConfigError
from indexing.manifest import MANIFEST, read_manifest
from indexing.store import Store
from indexing.writer import CompressionSettings, DocumentRecord, GenerationWriter
from rag.retrieve import DEFAULT_OVERSAMPLE, Hit, Retriever


class EmbeddingsAdapter:
    """Our ``Embedder`` interface over a LangChain ``Embeddings`` object."""

    def __init__(self, embeddings: Embeddings, model_id: str | None = None) -> None:
        self.embeddings = embeddings
        self.model_id = model_id or getattr(embeddings, "model_id", None) or f"langchain/{type(embeddings).__name__}"
        self.dim = len(embeddings.embed_query("dimension probe"))

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(np.asarray(self.embeddings.embed_documents(list(texts)), np.float32).reshape(len(texts), self.dim))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        return normalize(np.asarray([self.embeddings.embed_query(t) for t in texts], np.float32).reshape(len(texts), self.dim))


class StoreEmbeddings(Embeddings):
    """LangChain ``Embeddings`` over one of our embedders (what ``vectorstore.embeddings`` returns)."""

    def __init__(self, embedder: Embedder) -> None:
        self.embedder = embedder
        self.model_id = embedder.model_id

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embedder.embed_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embedder.embed_queries([text])[0].tolist()


class CompressedVectorStore(VectorStore):
    """A VectorStore whose vectors are PCA + float8 in FAISS, reranked with float8 full vectors.

    Each text added is one stored chunk, identified by its LangChain id. ``embedding`` may be
    None: the store's own model is used (the bundled all-MiniLM-L6-v2 for a new store).
    """

    def __init__(
        self,
        store_dir: str | Path,
        embedding: Embeddings | Embedder | None = None,
        oversample: int = DEFAULT_OVERSAMPLE,
        compression: CompressionSettings = CompressionSettings(),
    ) -> None:
        self.store_dir = Path(store_dir)
        self.oversample = oversample
        self.compression = compression
        self._embedder = _as_embedder(embedding)
        self._retriever: Retriever | None = None
        self._lock = threading.Lock()

    @property
    def embeddings(self) -> Embeddings:
        return StoreEmbeddings(self._get_embedder())

    def _get_embedder(self) -> Embedder:
        if self._embedder is None:
            model = DEFAULT_MODEL
            if (self.store_dir / MANIFEST).exists():
                model = read_manifest(self.store_dir)["embedding"]["model"]
            self._embedder = load_embedder(model)
        return self._embedder

    def _open(self) -> Retriever | None:
        if self._retriever is None and (self.store_dir / MANIFEST).exists():
            self._retriever = Retriever(Store.open(self.store_dir), self._get_embedder())
        return self._retriever

    # -- writing ----------------------------------------------------------------------------
    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *, ids: list[str] | None = None, **kwargs: Any
    ) -> list[str]:
        """Embed and store ``texts``; an id that exists already is replaced."""
        texts = list(texts)
        if not texts:
            return []
        metadatas = metadatas or [{} for _ in texts]
        ids = list(ids) if ids else [uuid.uuid4().hex for _ in texts]
        if not (len(texts) == len(metadatas) == len(ids)):
            raise ConfigError(f"got {len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids; they must match")
        embedder = self._get_embedder()
        vectors = embedder.embed_documents(texts)  # (n, d)
        with self._lock:
            self._rewrite(drop=set(ids), add=list(zip(ids, texts, metadatas, vectors)))
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the texts with these ids (all of them when ``ids`` is None)."""
        with self._lock:
            if self._open() is None:
                return False
            drop = set(ids) if ids is not None else set(self._retriever.store.documents())
            self._rewrite(drop=drop, add=[])
        return True

    def _rewrite(self, drop: set[str], add: list[tuple[str, str, dict[str, Any], np.ndarray]]) -> None:
        embedder = self._get_embedder()
        base = self._open()
        base_store = base.store if base else None
        with GenerationWriter(self.store_dir, embedder.model_id, embedder.dim, ChunkSettings(), self.compression, base_store) as writer:
            if base_store is not None:
                writer.keep(set(base_store.documents()) - drop)
            for doc_id, text, meta, vec in add:
                source = str(meta.get("source", doc_id))
                title = str(meta.get("title", ""))
                page = meta.get("page") if isinstance(meta.get("page"), int) else None
                extra = json.dumps(meta, default=str, ensure_ascii=False)
                writer.add(
                    DocumentRecord(doc_id, source, title, ""),
                    [Chunk(doc_id, source, title, page, 0, len(text), text, extra)],
                    np.asarray(vec, np.float32)[None, :],
                )
            writer.commit()
        self._retriever = None  # readers still holding the old store finish on it; GC closes it

    # -- searching --------------------------------------------------------------------------
    def similarity_search_with_score(self, query: str, k: int = 4, **kwargs: Any) -> list[tuple[Document, float]]:
        """The ``k`` best documents with their inner-product scores (higher is closer)."""
        retriever = self._open()
        if retriever is None:
            return []
        hits = retriever.search(query, k=k, oversample=kwargs.get("oversample", self.oversample))
        return [(_to_document(h), h.score) for h in hits]

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    def _select_relevance_score_fn(self):  # type: ignore[no-untyped-def]
        return lambda score: (score + 1.0) / 2.0  # cosine of unit vectors -> [0, 1]

    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None = None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str] | None = None,
        store_dir: str | Path | None = None,
        **kwargs: Any,
    ) -> CompressedVectorStore:
        """Create (or extend) the store at ``store_dir`` from ``texts``."""
        if store_dir is None:
            raise ConfigError("from_texts needs store_dir=...: the folder where the store is written")
        store = cls(store_dir, embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store


def _as_embedder(embedding: Embeddings | Embedder | None) -> Embedder | None:
    if embedding is None:
        return None
    if isinstance(embedding, StoreEmbeddings):
        return embedding.embedder
    if isinstance(embedding, Embeddings):
        return EmbeddingsAdapter(embedding)
    return embedding  # already one of our embedders


def _to_document(hit: Hit) -> Document:
    meta: dict[str, Any] = json.loads(hit.extra) if hit.extra else {}
    meta.update({"source": hit.source, "title": hit.title, "page": hit.page, "start": hit.start, "end": hit.end, "score": hit.score})
    return Document(page_content=hit.text, metadata=meta, id=hit.doc_path)
