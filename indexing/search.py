"""Dense search over a store's segments: float8 first stage, then full-vector rerank.

The first stage asks every segment for its ``c`` best live rows (deleted rows are filtered
inside ``SegmentReader.top``, which over-fetches until it has ``c``), merges them by score and
keeps the global best ``c``: exactly the candidates one compacted segment would give, because
all segments share the basis, so their first-stage scores are comparable. The rerank scores those
``c`` with the full vectors and keeps ``k``. ``segments`` restricts a search to some segments
(a shard): ``candidates`` gives a shard's first-stage candidates with their rerank scores, and
``merge_candidates`` merges shards' into exactly the single-store result.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from indexing.errors import ConfigError
from indexing.float8_scan import float8_search_many
from indexing.segment import live_top
from indexing.store import Store


def first_stage(store: Store, xr: np.ndarray, c: int, segments: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Reduced queries xr (nq, p) -> D, I (nq, c): the best live global rows (-1: fewer exist)."""
    nq = len(xr)
    chosen = [s for s in (range(len(store.segments)) if segments is None else segments) if store.segments[s].live]
    flat = [s for s in chosen if store.segments[s].flat_float8]
    Ds, Is = [np.full((nq, 0), -np.inf, np.float32)], [np.zeros((nq, 0), np.int64)]
    if flat:  # one kernel call over every flat float8 segment (one thread team, not one per segment)
        D, I = _flat_top(store, flat, xr, c)
        Ds.append(D.astype(np.float32))
        Is.append(I)
    for s in chosen:
        if s not in flat:  # IVF or another dtype: FAISS's own search, segment by segment
            D, I = store.segments[s].top(xr, c)  # (nq, <= c) local
            Ds.append(D.astype(np.float32))
            Is.append(np.where(I >= 0, I + store.offsets[s], -1))
    return top_by_score(np.concatenate(Ds, axis=1), np.concatenate(Is, axis=1), c)


def _flat_top(store: Store, flat: list[int], xr: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The best ``c`` live global rows of the flat float8 segments ``flat``: D, I (nq, c)."""
    segs = [store.segments[s] for s in flat]
    rows, live = sum(s.rows for s in segs), sum(s.live for s in segs)
    indexes, offsets = [s.index for s in segs], [int(store.offsets[s]) for s in flat]
    dead = store.dead_mask() if live < rows else None  # (store.rows,) bool
    return live_top(lambda m: float8_search_many(indexes, offsets, store.reduced_codec, xr, m), rows, live,
                    None if dead is None else lambda I: dead[I], c)


def top_by_score(D: np.ndarray, I: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``c`` best columns of each row of D, I (nq, m) by score, ties by lower row: (nq, c),
    padded with -inf / -1."""
    nq = len(D)
    key = np.where(I >= 0, D, -np.inf)
    order = np.lexsort((np.where(I >= 0, I, np.iinfo(np.int64).max), -key), axis=1)[:, :c]  # (nq, <= c)
    D, I = np.take_along_axis(key, order, 1), np.take_along_axis(I, order, 1)
    if D.shape[1] < c:
        D = np.concatenate([D, np.full((nq, c - D.shape[1]), -np.inf, np.float32)], axis=1)
        I = np.concatenate([I, np.full((nq, c - I.shape[1]), -1, np.int64)], axis=1)
    I[~np.isfinite(D)] = -1
    return D.astype(np.float32), I


def rerank(store: Store, xq: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Score candidates ``cand`` (nq, c) with the full vectors; keep the top ``k`` of each row."""
    nq, c = cand.shape
    batch = max(1, 2**24 // max(1, c * store.dim))  # queries per step: <= 64 MB of decoded vectors
    D = np.full((nq, k), -np.inf, np.float32)
    I = np.full((nq, k), -1, np.int64)
    for q0 in range(0, nq, batch):
        ids = cand[q0 : q0 + batch]  # (b, c)
        valid = ids >= 0
        if not valid.any():
            continue
        full = np.zeros((ids.size, store.dim), np.float32)
        full[valid.ravel()] = store.decode_full(ids[valid])
        scores = np.einsum("bcd,bd->bc", full.reshape(len(ids), c, -1), xq[q0 : q0 + batch])  # (b, c)
        scores[~valid] = -np.inf
        D[q0 : q0 + batch], I[q0 : q0 + batch] = top_by_score(scores, ids, k)
    return D, I


def exact(store: Store, xq: np.ndarray, k: int, block: int = 65_536) -> tuple[np.ndarray, np.ndarray]:
    """Brute force in float32 over every live full vector: D, I (nq, k) global rows."""
    nq = len(xq)
    D = np.full((nq, k), -np.inf, np.float32)
    I = np.full((nq, k), -1, np.int64)
    for s, seg in enumerate(store.segments):
        live = seg.live_rows()  # (live,)
        for r0 in range(0, len(live), block):
            rows = live[r0 : r0 + block]
            scores = xq @ seg.decode_full(rows).T  # (nq, b)
            D, I = top_by_score(np.concatenate([D, scores], axis=1),
                                np.concatenate([I, np.broadcast_to(rows + store.offsets[s], scores.shape)], axis=1), k)
    return D, I


def candidates(store: Store, xq: np.ndarray, c: int, segments: Sequence[int] | None = None) -> tuple[np.ndarray, ...]:
    """A shard's part of a search: its first-stage top ``c`` D0, I (nq, c) global rows, and their
    full-vector scores R (nq, c) (-inf where I is -1)."""
    xq = np.ascontiguousarray(xq, np.float32)
    D0, I = first_stage(store, store.pca.transform(xq), c, segments)
    R = np.full(I.shape, -np.inf, np.float32)
    valid = I >= 0
    if valid.any():
        full = store.decode_full(I[valid])  # (m, d)
        R[valid] = np.einsum("md,md->m", full, np.repeat(xq, valid.sum(axis=1), axis=0))
    return D0, I, R


def merge_candidates(parts: Sequence[tuple[np.ndarray, ...]], k: int, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Shards' ``candidates`` -> D, I (nq, k): the global first-stage top ``c``, reranked, the
    same rows and scores one process searching every segment gives."""
    D0 = np.concatenate([p[0] for p in parts], axis=1)
    I = np.concatenate([p[1] for p in parts], axis=1)
    R = np.concatenate([p[2] for p in parts], axis=1)
    order = np.lexsort((np.where(I >= 0, I, np.iinfo(np.int64).max), -np.where(I >= 0, D0, -np.inf)), axis=1)[:, :c]
    I_c, R_c = np.take_along_axis(I, order, 1), np.take_along_axis(R, order, 1)  # (nq, c) global first stage
    return top_by_score(np.where(I_c >= 0, R_c, -np.inf), I_c, k)


def search(store: Store, xq: np.ndarray, k: int, oversample: int = 16, exact_scan: bool = False, rerank_full: bool = True,
           segments: Sequence[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """xq: (nq, d) unit queries -> D (nq, k) scores, I (nq, k) global rows (-1 where fewer exist),
    with ``k`` and ``k * oversample`` first capped at the live chunk count."""
    if k < 1 or oversample < 1:
        raise ConfigError(f"k={k} and oversample={oversample} must both be >= 1")
    n = max(store.n, 1)
    k, c = min(k, n), min(k * oversample, n)
    xq = np.ascontiguousarray(xq, np.float32)
    if exact_scan:
        return exact(store, xq, k)
    D0, I0 = first_stage(store, store.pca.transform(xq), c if rerank_full else k, segments)  # (nq, c)
    if not rerank_full:
        return D0, I0
    return rerank(store, xq, I0, k)
