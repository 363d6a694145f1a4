"""Flat first-stage search over float8 codes with the C kernel (``indexing/_float8scan.c``).

The codes stay where FAISS keeps them: the kernel scans the code buffer of the store's
``IndexPQ`` in place (zero copy). The IndexPQ's own search gives the same results (its codebook
is the same float8 values) and is the fallback when the extension is not built.
"""

from __future__ import annotations

import numpy as np

from indexing.compress import Float8Codec

QUERY_BLOCK = 128  # queries per kernel call: each row is decoded once per block


def kernel_available() -> bool:
    try:
        from indexing import _float8scan  # noqa: F401
    except ImportError:
        return False
    return True


def codes_view(index) -> np.ndarray:  # type: ignore[no-untyped-def]
    """The (n, p) uint8 float8 codes inside a flat IndexPQ, without copying."""
    import faiss

    n, p = index.ntotal, index.code_size
    if n == 0:
        return np.zeros((0, p), np.uint8)
    return faiss.rev_swig_ptr(index.codes.data(), n * p).reshape(n, p)


def float8_search_many(indexes: list, offsets: list[int], codec: Float8Codec, xr: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``float8_search`` over several flat indexes (segments) in one kernel call: row r of
    ``indexes[s]`` is reported as ``offsets[s] + r``. D, I (nq, k)."""
    try:
        from indexing import _float8scan
    except ImportError:  # FAISS's own search of each index, merged
        parts = [ix.search(np.ascontiguousarray(xr, np.float32), k) for ix in indexes]
        D = np.concatenate([p[0] for p in parts], axis=1)
        I = np.concatenate([np.where(p[1] >= 0, p[1] + off, -1) for p, off in zip(parts, offsets)], axis=1)
        top = np.argsort(-D, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(D, top, 1), np.take_along_axis(I, top, 1)
    codes = [codes_view(ix) for ix in indexes]
    p = indexes[0].code_size
    xs = np.ascontiguousarray(np.asarray(xr, np.float32) * codec.scale)  # (nq, p): the scale folded into the query
    nq = len(xs)
    D = np.empty((nq, k), np.float32)
    I = np.empty((nq, k), np.int64)
    for q0 in range(0, nq, QUERY_BLOCK):
        q1 = min(q0 + QUERY_BLOCK, nq)
        _float8scan.search_many(codes, [int(o) for o in offsets], p, xs[q0:q1], q1 - q0, k, D[q0:q1], I[q0:q1])
    D[I < 0] = -np.inf
    return D, I


def float8_search(index, codec: Float8Codec, xr: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """Top-k inner products of reduced queries xr (nq, p) with the index's float8 codes: D, I (nq, k)."""
    return float8_search_many([index], [0], codec, xr, k)
