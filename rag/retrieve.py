"""Search a store: embed the query, search the store (``indexing.search``: reduced float8 search
for ``k * oversample`` candidates over every segment, then a rerank with the float8 full vectors,
best ``k`` kept), and return hits. ``mode="hybrid"`` (the default)
also asks the store's keyword index (BM25) and fuses both legs (rag.fusion); ``"keyword"`` is
BM25 alone, ``"dense"`` the vectors alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing.embed import Embedder, load_embedder
from indexing.errors import ConfigError, StoreMismatchError
from indexing.search import search as dense_search
from indexing.store import Store
from indexing.ray_cluster import RayOptions
from rag.fusion import DEFAULT_MODE, KEYWORD_TOP, POOL, FusionSettings, beside, check_mode, fuse, keyword_coverage, term_idfs

DEFAULT_K = 5
# Rerank candidates = k * oversample. SQuAD (rag eval): x8 keeps 99.90 % of float32 nDCG@10, x16
# 99.93 % (the exhaustive float8 ceiling 99.94 %); at 1M vectors (bench/scale.py) x8 -> x32 lifts
# recall@10 0.888 -> 0.936, and a rerank of 160 rows costs ~0.2 ms. See README "Quality kept".
DEFAULT_OVERSAMPLE = 16


@dataclass(frozen=True)
class Hit:
    """One search result."""

    rank: int
    score: float
    row: int
    text: str
    source: str
    title: str
    page: int | None
    start: int
    end: int
    doc_path: str
    extra: str = ""  # JSON metadata given by the caller at indexing time (LangChain), "" if none

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Retriever:
    """Two-stage search over a Store. Thread-safe for concurrent searches."""

    def __init__(self, store: Store, embedder: Embedder | None = None, sharded: Any = None) -> None:
        self.store = store
        self.sharded = sharded  # an indexing.ray_search.ShardedSearch: dense search on Ray actors
        m = store.manifest
        if embedder is not None and (embedder.model_id != m.model or embedder.dim != m.dim):
            raise StoreMismatchError(
                f"store {store.path} was built with {m.model!r} (dim {m.dim}); the retriever was "
                f"given {embedder.model_id!r} (dim {embedder.dim}). Use the store's model or rebuild with --refit"
            )
        self._embedder = embedder

    @classmethod
    def open(cls, store: str | Path, embedder: Embedder | None = None, verify: bool = True,
             ray: RayOptions | str | None = None, allow_partial: bool = False) -> Retriever:
        """``ray`` (a RayOptions, or an address: ``local`` or ``host:port``) spreads the store's
        segments over Ray actors (indexing.ray_search); results equal the single-process search.
        ``allow_partial``: answer from the shards left when one fails for good (else ClusterError)."""
        opened = Store.open(store, verify=verify)
        if ray is None:
            return cls(opened, embedder)
        from indexing.ray_search import ShardedSearch

        options = RayOptions(address=ray) if isinstance(ray, str) else ray
        return cls(opened, embedder, ShardedSearch(opened, options, allow_partial=allow_partial))

    def close(self) -> None:
        """End the Ray shards, if any (the store stays open)."""
        if self.sharded is not None:
            self.sharded.close()
            self.sharded = None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            m = self.store.manifest
            embedder = load_embedder(m.model)
            if embedder.dim != m.dim:  # a manifest naming a model of another dimension
                raise StoreMismatchError(f"store {self.store.path} says its vectors have dim {m.dim}, but its model "
                                         f"{m.model!r} gives dim {embedder.dim}; the manifest is wrong, rebuild with --refit")
            self._embedder = embedder
        return self._embedder

    def search(
        self, query: str, k: int = DEFAULT_K, oversample: int = DEFAULT_OVERSAMPLE, exact: bool = False, rerank: bool = True,
        mode: str = DEFAULT_MODE,
    ) -> list[Hit]:
        """The ``k`` best chunks for ``query``; ``exact`` scans all full vectors instead (dense leg)."""
        mode = self.resolve_mode(mode)
        if k < 1:
            raise ConfigError(f"k={k} must be >= 1")
        if not query.strip():
            raise ConfigError("the query is empty; search for some words")
        if mode == "keyword":
            D, I = self.store.keyword_search(query, k)  # (m,), (m,)
        else:
            xq = self.embedder.embed_queries([query])  # (1, d)
            if mode == "dense":
                D, I = (a[0] for a in self.search_vectors(xq, k, oversample, exact, rerank))
            else:
                D, I = self.hybrid_rows(query, xq[0], k, oversample, exact, rerank)
        rows = [int(i) for i in I if i >= 0]
        chunks = self.store.chunks(rows)
        return [
            Hit(rank + 1, float(D[rank]), c.row, c.text, c.source, c.title, c.page, c.start, c.end, c.doc_path, c.extra)
            for rank, c in enumerate(chunks)
        ]

    def resolve_mode(self, mode: str) -> str:
        """The mode a search in ``mode`` runs: hybrid on a store written before the keyword index
        existed searches dense (so old stores keep answering; their next `rag index` run that
        changes something, or `--refit`, writes the keyword index), keyword mode there says how to
        get one."""
        check_mode(mode)
        return "dense" if mode == "hybrid" and self.store.keyword_settings is None else mode

    @property
    def fusion(self) -> FusionSettings:
        """The store's fusion weights (``rag eval --calibrate``) or the defaults."""
        return FusionSettings.from_manifest(self.store.manifest.fusion)

    def hybrid_rows(
        self, query: str, xq: np.ndarray, k: int, oversample: int = DEFAULT_OVERSAMPLE, exact: bool = False,
        rerank: bool = True, fusion: FusionSettings | None = None, vectors: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fused top ``k`` for one query (text and its unit vector xq (d,)): scores (m,), rows (m,).
        ``vectors``: float32 vectors of every row (n, d) for a float32 dense leg (``rag eval``'s baseline)."""
        union, dense, keyword, coverage = self.hybrid_candidates(query, xq, k, oversample, exact, rerank, vectors)
        if len(union) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        settings = fusion or self.fusion
        scores, _ = fuse(dense, keyword, settings, coverage if settings.adaptive else None)
        order = np.argsort(-scores, kind="stable")[:k]
        return scores[order].astype(np.float32), union[order]

    def hybrid_candidates(
        self, query: str, xq: np.ndarray, k: int, oversample: int = DEFAULT_OVERSAMPLE, exact: bool = False, rerank: bool = True,
        vectors: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Both legs' candidates, each scored by both legs: union rows (m,), dense (m,) full-vector
        inner products, keyword (m,) BM25 (0: no query term), and the keyword leg's evidence in
        [0, 1]: the share of the IDF mass of the terms it searched (stop words and terms over the
        postings budget left out; a term absent from the store at the highest IDF, ``term_idfs``)
        that one of its best chunks holds (``keyword_coverage``) times its best BM25 relative to the
        sum of those IDFs (capped at 1)."""
        pool = max(k, POOL)
        # the dense leg reranks as many candidates as a dense search of k would (k * oversample),
        # keeping the best ``pool``: its scores are recomputed below anyway
        terms = self.store.keyword_query(query)  # the terms searched, once for all three uses below
        keyword_leg = beside(self.store.keyword_all, terms)  # runs in a thread while the dense leg searches
        if vectors is None:
            _, I = self.search_vectors(xq[None, :], pool, max(1, -(-k * oversample // pool)), exact, rerank)  # (1, pool)
        else:  # float32 brute force over the given vectors
            I = np.argsort(-(vectors @ np.asarray(xq, np.float32)), kind="stable")[None, :pool]  # (1, pool)
        S_all, rows_all = keyword_leg()  # (a,) every matching chunk, unsorted
        rows_k = rows_all[np.argsort(-S_all, kind="stable")[:pool]]  # (<= pool,) keyword candidates, best first
        union = np.unique(np.concatenate([I[0][I[0] >= 0], rows_k]))  # (m,)
        full = self.store.decode_full(union) if vectors is None else vectors[union]  # (m, d)
        dense = full @ np.asarray(xq, np.float32)  # (m,) full-vector scores
        keyword = np.zeros(len(union), np.float32)  # (m,) BM25, 0 for chunks holding no query term
        hit = np.isin(rows_all, union)
        keyword[np.searchsorted(union, rows_all[hit])] = S_all[hit]
        top = [c.text + " " + c.title for c in self.store.chunks(rows_k[:KEYWORD_TOP].tolist())]
        idf = term_idfs(terms.stemmed, terms.df, self.store.rows)  # a term absent from the store: the highest IDF
        coverage = keyword_coverage(terms.terms, top, idf or None)  # share of the searched terms' IDF mass
        ideal = sum(dict(zip(terms.stemmed, idf)).values()) if len(rows_k) else 0.0
        strength = float(S_all.max(initial=0.0)) / ideal if ideal > 0 else 0.0
        return union, dense.astype(np.float32), keyword, coverage * min(1.0, strength)

    def search_vectors(
        self, xq: np.ndarray, k: int, oversample: int = DEFAULT_OVERSAMPLE, exact: bool = False, rerank: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """xq: (nq, d) unit queries -> D (nq, k) scores, I (nq, k) rows (-1 where fewer exist), with
        ``k`` and ``k * oversample`` first capped at the store size n (k=1e9 gives (nq, n), not 1e9 columns)."""
        if self.sharded is not None and rerank and not exact:
            return self.sharded.search(xq, k, oversample)
        return dense_search(self.store, xq, k, oversample, exact, rerank)
