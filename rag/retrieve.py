"""Search a store: reduced float8 search in FAISS for ``k * oversample`` candidates, then rerank
them with the float8 full vectors and return the best ``k``. ``mode="hybrid"`` (the default)
also asks the store's keyword index (BM25) and fuses both legs (rag.fusion); ``"keyword"`` is
BM25 alone, ``"dense"`` the vectors alone."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing.embed import Embedder, load_embedder
from indexing.errors import ConfigError, StoreMismatchError
from indexing.float8_scan import float8_search
from indexing.store import Store
from indexing.keyword import budget_terms, query_terms
from rag.fusion import DEFAULT_MODE, KEYWORD_TOP, POOL, FusionSettings, beside, check_mode, fuse, keyword_coverage

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

    def __init__(self, store: Store, embedder: Embedder | None = None) -> None:
        self.store = store
        emb = store.manifest["embedding"]
        if embedder is not None and (embedder.model_id != emb["model"] or embedder.dim != emb["dim"]):
            raise StoreMismatchError(
                f"store {store.path} was built with {emb['model']!r} (dim {emb['dim']}); the retriever was "
                f"given {embedder.model_id!r} (dim {embedder.dim}). Use the store's model or rebuild with --refit"
            )
        self._embedder = embedder
        comp = store.manifest["compression"]
        if comp.get("nprobe"):
            store.index.nprobe = comp["nprobe"]

    @classmethod
    def open(cls, store: str | Path, embedder: Embedder | None = None, verify: bool = True) -> Retriever:
        return cls(Store.open(store, verify=verify), embedder)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            emb = self.store.manifest["embedding"]
            embedder = load_embedder(emb["model"])
            if embedder.dim != emb["dim"]:  # a manifest naming a model of another dimension
                raise StoreMismatchError(f"store {self.store.path} says its vectors have dim {emb['dim']}, but its model "
                                         f"{emb['model']!r} gives dim {embedder.dim}; the manifest is wrong, rebuild with --refit")
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
        return FusionSettings.from_manifest(self.store.manifest)

    def hybrid_rows(
        self, query: str, xq: np.ndarray, k: int, oversample: int = DEFAULT_OVERSAMPLE, exact: bool = False,
        rerank: bool = True, fusion: FusionSettings | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fused top ``k`` for one query (text and its unit vector xq (d,)): scores (m,), rows (m,)."""
        union, dense, keyword, coverage = self.hybrid_candidates(query, xq, k, oversample, exact, rerank)
        if len(union) == 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        settings = fusion or self.fusion
        scores, _ = fuse(dense, keyword, settings, coverage if settings.adaptive else None)
        order = np.argsort(-scores, kind="stable")[:k]
        return scores[order].astype(np.float32), union[order]

    def hybrid_candidates(
        self, query: str, xq: np.ndarray, k: int, oversample: int = DEFAULT_OVERSAMPLE, exact: bool = False, rerank: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """Both legs' candidates, each scored by both legs: union rows (m,), dense (m,) full-vector
        inner products, keyword (m,) BM25 (0: no query term), and the keyword leg's evidence in
        [0, 1]: the share of the terms it searched (stop words and terms over the postings budget
        left out) that its best chunks hold (``keyword_coverage``) times its best BM25 relative to
        the sum of those terms' IDFs (capped at 1)."""
        pool = max(k, POOL)
        # the dense leg reranks as many candidates as a dense search of k would (k * oversample),
        # keeping the best ``pool``: its scores are recomputed below anyway
        keyword_leg = beside(self.store.keyword_all, query)  # runs in a thread while the dense leg searches
        _, I = self.search_vectors(xq[None, :], pool, max(1, -(-k * oversample // pool)), exact, rerank)  # (1, pool)
        S_all, rows_all = keyword_leg()  # (a,) every matching chunk, unsorted
        rows_k = rows_all[np.argsort(-S_all, kind="stable")[:pool]]  # (<= pool,) keyword candidates, best first
        union = np.unique(np.concatenate([I[0][I[0] >= 0], rows_k]))  # (m,)
        dense = self.store.decode_full(union) @ np.asarray(xq, np.float32)  # (m,) full-vector scores
        keyword = np.zeros(len(union), np.float32)  # (m,) BM25, 0 for chunks holding no query term
        hit = np.isin(rows_all, union)
        keyword[np.searchsorted(union, rows_all[hit])] = S_all[hit]
        top = [c.text + " " + c.title for c in self.store.chunks(rows_k[:KEYWORD_TOP].tolist())]
        lang = self.store.keyword_settings.language  # coverage of the terms the keyword leg searched (postings budget)
        coverage = keyword_coverage(budget_terms(self.store._db, query_terms(query, lang), lang), top)
        ideal = self.store.keyword_ideal(query) if len(rows_k) else 0.0
        strength = float(S_all.max(initial=0.0)) / ideal if ideal > 0 else 0.0
        return union, dense.astype(np.float32), keyword, coverage * min(1.0, strength)

    def search_vectors(
        self, xq: np.ndarray, k: int, oversample: int = DEFAULT_OVERSAMPLE, exact: bool = False, rerank: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """xq: (nq, d) unit queries -> D (nq, k) scores, I (nq, k) rows (-1 where fewer exist), with
        ``k`` and ``k * oversample`` first capped at the store size n (k=1e9 gives (nq, n), not 1e9 columns)."""
        if k < 1 or oversample < 1:
            raise ConfigError(f"k={k} and oversample={oversample} must both be >= 1")
        n = max(self.store.n, 1)
        k, c = min(k, n), min(k * oversample, n)
        xq = np.ascontiguousarray(xq, np.float32)
        if exact:
            return exact_search(self.store, xq, k)
        D0, I0 = first_stage_search(self.store, self.store.pca.transform(xq), c if rerank else k)  # (nq, c)
        if not rerank:
            return D0, I0
        return rerank_full(self.store, xq, I0, k)


def first_stage_search(store: Store, xr: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``c`` best rows for reduced queries xr (nq, p): the float8 kernel for a flat float8
    index, FAISS's own search otherwise (IVF, other dtypes)."""
    import faiss

    if isinstance(store.index, faiss.IndexPQ) and store.manifest["compression"]["dtype"] == "float8":
        return float8_search(store.index, store.reduced_codec, xr, c)
    return store.index.search(np.ascontiguousarray(xr, np.float32), c)


def rerank_full(store: Store, xq: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Score candidates ``cand`` (nq, c) with the float8 full vectors; keep the top ``k`` of each row."""
    nq, c = cand.shape
    batch = max(1, 2**24 // max(1, c * store.dim))  # queries per step: <= 64 MB of decoded vectors
    D = np.full((nq, k), -np.inf, np.float32)
    I = np.full((nq, k), -1, np.int64)
    if store.n == 0:
        return D, I
    for q0 in range(0, nq, batch):
        ids = cand[q0 : q0 + batch]  # (b, c)
        valid = ids >= 0
        full = store.decode_full(np.where(valid, ids, 0).ravel()).reshape(len(ids), c, -1)  # (b, c, d)
        scores = np.einsum("bcd,bd->bc", full, xq[q0 : q0 + batch])  # (b, c)
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]  # (b, min(c, k))
        kk = order.shape[1]
        D[q0 : q0 + batch, :kk] = np.take_along_axis(scores, order, 1)
        I[q0 : q0 + batch, :kk] = np.where(np.isfinite(D[q0 : q0 + batch, :kk]), np.take_along_axis(ids, order, 1), -1)
    return D, I


def exact_search(store: Store, xq: np.ndarray, k: int, block: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in float32 over every stored full vector: D, I of shape (nq, k)."""
    nq = len(xq)
    D = np.full((nq, k), -np.inf, np.float32)
    I = np.full((nq, k), -1, np.int64)
    for r0 in range(0, store.n, block):
        rows = np.arange(r0, min(r0 + block, store.n))
        scores = xq @ store.decode_full(rows).T  # (nq, b)
        allD = np.concatenate([D, scores], axis=1)
        allI = np.concatenate([I, np.broadcast_to(rows, scores.shape)], axis=1)
        top = np.argsort(-allD, axis=1, kind="stable")[:, :k]
        D, I = np.take_along_axis(allD, top, 1), np.take_along_axis(allI, top, 1)
    I[~np.isfinite(D)] = -1
    return D, I
