"""LangChain integration: a ``langchain_core`` VectorStore backed by a compressed store.

No langchain-community, no pickle: the store on disk is the same one ``rag index`` writes.

>>> vs = CompressedVectorStore.from_texts(["a", "b"], embedding=None, store_dir="stores/lc")
>>> retriever = vs.as_retriever(search_kwargs={"k": 4})
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from indexing.chunk import Chunk, ChunkSettings
from indexing.embed import DEFAULT_MODEL, Embedder, load_embedder, normalize
from indexing.errors import ConfigError
from indexing.generations import current_generation
from indexing.manifest import read_manifest
from indexing.store import Store
from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter
from rag.langchain_rows import ChunkTable, Filter, to_document, top_rows
from rag.retrieve import DEFAULT_OVERSAMPLE, Retriever


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


# Keywords of similarity_search (hence as_retriever's search_kwargs) passed on to Retriever.search
# unchanged; a new Retriever.search keyword is passed through by naming it here.
SEARCH_OPTIONS = ("oversample", "exact", "mode")
# A VectorStore's scores are similarities to the query's embedding (LangChain turns them into
# relevance scores), so LangChain searches are dense unless asked: search_kwargs={"mode": "hybrid"}
# (fused scores in [0, 1]) or "keyword" (BM25). Searches by vector are always dense.
LANGCHAIN_MODE = "dense"
OVERFETCH_MAX = 1024  # a filtered search over-fetches at most this many hits, else scores the matching rows exactly


class CompressedVectorStore(VectorStore):
    """A VectorStore whose vectors are PCA + float8 in FAISS, reranked with float8 full vectors.

    Each text added is one stored chunk, identified by its LangChain id, and comes back with
    exactly the metadata it was added with (JSON types: a tuple comes back as a list). Chunks
    that ``rag index`` indexed from files come back with their provenance as metadata (see
    ``rag.langchain_rows``). ``embedding`` may be None: the store's own model is used (the
    bundled all-MiniLM-L6-v2 for a new store). Safe to share between threads and async tasks:
    writes are serialized, and a search runs on the generation that was current when it began.
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
        self._user_embeddings = embedding if isinstance(embedding, Embeddings) else None
        self._embedder = _as_embedder(embedding)
        self._opened: tuple[Retriever, ChunkTable] | None = None
        self._written: str | None = None  # the generation this object's last write committed
        self._lock = threading.RLock()

    @property
    def embeddings(self) -> Embeddings:
        return self._user_embeddings or StoreEmbeddings(self._get_embedder())

    def _get_embedder(self) -> Embedder:
        with self._lock:
            if self._embedder is None:
                model = DEFAULT_MODEL
                if Store.exists(self.store_dir):
                    model = read_manifest(self.store_dir).model
                self._embedder = load_embedder(model)
            return self._embedder

    def _open(self) -> tuple[Retriever, ChunkTable] | None:
        """The current generation (opened once per write), or None while the store is empty.
        Searches take it without waiting for a write: they finish on the generation they got."""
        opened = self._opened
        if opened is not None and opened[0].store.manifest.generation == current_generation(self.store_dir):
            return opened
        with self._lock:  # first use, or another writer (process or instance) committed since
            if self._opened is not None and self._opened[0].store.manifest.generation != current_generation(self.store_dir):
                self._opened = None
            if self._opened is None and Store.exists(self.store_dir):
                store = Store.open(self.store_dir, verify=False)  # our own last commit: its files need no re-hashing
                if store.manifest.generation != self._written:  # someone else's: every checksum
                    store.close()
                    store = Store.open(self.store_dir)
                retriever = Retriever(store, self._get_embedder())
                self._opened = (retriever, ChunkTable(retriever.store))
            return self._opened

    # -- writing ----------------------------------------------------------------------------
    def add_texts(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *, ids: list[str | None] | None = None, **kwargs: Any
    ) -> list[str]:
        """Embed and store ``texts``; an id that exists already is replaced, a missing one generated."""
        texts = list(texts)
        if not texts:
            return []
        metadatas = list(metadatas) if metadatas is not None else [{} for _ in texts]
        ids = list(ids) if ids is not None else [None] * len(texts)
        if not (len(texts) == len(metadatas) == len(ids)):
            raise ConfigError(f"got {len(texts)} texts, {len(metadatas)} metadatas and {len(ids)} ids; they must match")
        ids = [str(i) if i else str(uuid.uuid4()) for i in ids]
        vectors = self._get_embedder().embed_documents(texts)  # (n, d)
        last = {doc_id: i for i, doc_id in enumerate(ids)}  # an id given twice: its last text wins
        add = [(doc_id, texts[i], metadatas[i] or {}, vectors[i]) for doc_id, i in last.items()]
        with self._lock:
            self._rewrite(drop=set(ids), add=add)
        return ids

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Remove the documents with these ids (all of them when ``ids`` is None); unknown ids are
        ignored. A file indexed by ``rag index`` is removed by its path, with all its chunks."""
        with self._lock:
            opened = self._open()
            if opened is None:
                return True
            stored = set(opened[0].store.documents())
            drop = stored if ids is None else stored & set(ids)
            if drop:
                self._rewrite(drop=drop, add=[])
        return True

    def _rewrite(self, drop: set[str], add: list[tuple[str, str, dict[str, Any], np.ndarray]]) -> None:
        """Write the next generation: the current one less ``drop``, plus ``add``. Caller holds the lock."""
        embedder = self._get_embedder()
        opened = self._open()
        base = opened[0].store if opened else None
        keep = set(base.documents()) - drop if base else set()
        try:
            self._write_generation(embedder, base, keep, add)
        finally:
            self._opened = None  # searches still holding the old generation finish on it

    def _write_generation(self, embedder: Embedder, base: Store | None, keep: set[str],
                          add: list[tuple[str, str, dict[str, Any], np.ndarray]]) -> None:
        with StoreWriter(self.store_dir, embedder.model_id, embedder.dim, ChunkSettings(), self.compression, base) as writer:
            writer.keep(keep)  # everything deleted leaves an empty store (readers never see it vanish)
            for doc_id, text, meta, vec in add:
                source = str(meta.get("source", doc_id))  # what citations in `rag chat` show
                page = meta.get("page") if type(meta.get("page")) is int else None
                chunk = Chunk(doc_id, source, str(meta.get("title", "")), page, 0, len(text), text, _to_json(meta))
                writer.add(DocumentRecord(doc_id, source, chunk.title, ""), [chunk], np.asarray(vec, np.float32)[None, :])
            self._written = writer.commit().generation

    # -- reading ----------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents with these ids, in that order; ids not stored are left out."""
        opened = self._open()
        return opened[1].by_ids(list(ids)) if opened else []

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """The ``k`` best documents and their inner products with the query (higher is closer;
        about 1 for a match, slightly above with float8). ``filter``: metadata key -> value that
        every result must have, or a function of the Document. Other keywords: ``SEARCH_OPTIONS``."""
        options = self._search_options(kwargs)
        opened = self._open()
        if opened is None:
            return []
        retriever = opened[0]

        def candidates(n: int) -> list[tuple[int, float]]:
            return [(h.row, h.score) for h in retriever.search(query, k=n, **options)]

        return self._documents(opened, self._filtered(opened, candidates, lambda: retriever.embedder.embed_queries([query])[0], k, filter))

    def similarity_search(self, query: str, k: int = 4, filter: Filter | None = None, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, filter: Filter | None = None, **kwargs: Any) -> list[Document]:
        found = self._pairs_by_vector(embedding, k, filter, kwargs)
        return [doc for doc, _ in self._documents(*found)] if found else []

    def max_marginal_relevance_search(
        self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        """``k`` documents picked among the ``fetch_k`` closest for relevance and diversity (MMR
        over the stored full vectors); ``lambda_mult`` 1 is pure relevance, 0 pure diversity."""
        xq = self._get_embedder().embed_queries([query])[0]  # (d,)
        return self.max_marginal_relevance_search_by_vector(xq.tolist(), k, fetch_k, lambda_mult, filter, **kwargs)

    def max_marginal_relevance_search_by_vector(
        self, embedding: list[float], k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5, filter: Filter | None = None, **kwargs: Any
    ) -> list[Document]:
        found = self._pairs_by_vector(embedding, max(k, fetch_k), filter, kwargs)
        if not found or not found[1]:
            return []
        opened, pairs = found
        xb = opened[0].store.decode_full(np.asarray([row for row, _ in pairs]))  # (fetch_k, d) full vectors
        xq = normalize(np.asarray(embedding, np.float32).reshape(1, -1))[0]  # (d,)
        picked = maximal_marginal_relevance(xq, xb, lambda_mult=lambda_mult, k=k)
        return [doc for doc, _ in self._documents(opened, [pairs[i] for i in picked])]

    def _pairs_by_vector(
        self, embedding: Sequence[float], k: int, filter: Filter | None, kwargs: dict[str, Any]
    ) -> tuple[tuple[Retriever, ChunkTable], list[tuple[int, float]]] | None:
        """The store generation searched and its ``k`` best (row, score) for a query vector."""
        options = self._search_options(kwargs)
        if options["mode"] != "dense":
            raise ConfigError(f"mode={options['mode']!r} needs the query text: search by text (similarity_search), not by vector")
        opened = self._open()
        if opened is None:
            return None
        retriever = opened[0]
        xq = normalize(np.asarray(embedding, np.float32).reshape(1, -1))  # (1, d)

        def candidates(n: int) -> list[tuple[int, float]]:
            D, I = retriever.search_vectors(xq, n, options["oversample"], options.get("exact", False))  # (1, n)
            return [(int(i), float(s)) for s, i in zip(D[0], I[0]) if i >= 0]

        return opened, self._filtered(opened, candidates, lambda: xq[0], k, filter)

    def _search_options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        unknown = set(kwargs) - set(SEARCH_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown search keyword(s) {sorted(unknown)}; use k, filter, fetch_k, lambda_mult or {', '.join(SEARCH_OPTIONS)}")
        return {"oversample": self.oversample, "mode": LANGCHAIN_MODE, **kwargs}

    def _filtered(
        self,
        opened: tuple[Retriever, ChunkTable],
        candidates: Callable[[int], list[tuple[int, float]]],
        query_vector: Callable[[], np.ndarray],
        k: int,
        filter: Filter | None,
    ) -> list[tuple[int, float]]:
        """The ``k`` best (row, score): ``candidates(n)`` gives the n best of the whole store;
        with a filter, over-fetch when matches are common, else score the matching rows exactly."""
        if filter is None:
            return candidates(k)
        retriever, table = opened
        allowed = table.matching_rows(filter)  # (m,)
        n, m = retriever.store.n, len(allowed)
        if m == 0:
            return []
        want = min(n, -(-2 * k * n // m))  # twice the hits expected to hold k matches
        if want <= OVERFETCH_MAX:
            allowed_set = set(allowed.tolist())
            kept = [(row, score) for row, score in candidates(want) if row in allowed_set]
            if len(kept) >= min(k, m) or want >= n:
                return kept[:k]
        return top_rows(retriever.store, query_vector(), k, allowed)  # dense (whatever the options), exact over the m rows

    def _documents(self, opened: tuple[Retriever, ChunkTable], pairs: list[tuple[int, float]]) -> list[tuple[Document, float]]:
        chunks = opened[0].store.chunks([row for row, _ in pairs])
        return [(to_document(c), score) for c, (_, score) in zip(chunks, pairs)]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        return _relevance

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


def _relevance(score: float) -> float:
    """Inner product of unit vectors (float8 can push it a little past +-1) -> [0, 1]."""
    return min(1.0, max(0.0, (score + 1.0) / 2.0))


def _to_json(meta: dict[str, Any]) -> str:
    return json.dumps(meta, default=str, ensure_ascii=False)


def _as_embedder(embedding: Embeddings | Embedder | None) -> Embedder | None:
    if embedding is None:
        return None
    if isinstance(embedding, StoreEmbeddings):
        return embedding.embedder
    if isinstance(embedding, Embeddings):
        return EmbeddingsAdapter(embedding)
    return embedding  # already one of our embedders
