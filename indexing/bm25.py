"""Okapi BM25 of the keyword index, computed in numpy from its postings.

FTS5's formula and constants (its fts5_aux.c: k1 1.2, b 0.75, the IDF of a term in more than half
the rows floored at 1e-6, a row's length = its tokens over all columns), so one segment's scores
equal FTS5's ``bm25()`` (tests/test_bm25.py); over several segments the IDFs and the average
length are the whole store's, so they equal the scores of the same store compacted into one.

Why not FTS5's ``bm25()``: for every matching row it reads the row's length with one B-tree
lookup in its docsize table (~2 us a row here). On a 1M-chunk store, scoring a SciFact claim's
terms takes 5.7 ms p50 that way and 1.0 ms here (the same postings read through ``fts5vocab``,
the lengths one array per segment read once, ``indexing.keyword.token_counts``): the keyword
leg of a hybrid query went from about the whole dense leg's time to a fifth of it. Measured by
bench/keyword_scoring.py (bench/results/keyword_scoring_1000000.json).
"""

from __future__ import annotations

import math

import numpy as np

K1 = 1.2
B = 0.75


def idf(rows: int, df: int) -> float:
    """FTS5's BM25 IDF of a term held by ``df`` of ``rows`` rows (at least 1e-6)."""
    value = math.log((rows - df + 0.5) / (df + 0.5))
    return value if value > 0.0 else 1e-6


def score(postings: list[np.ndarray], idfs: list[float], lengths: np.ndarray, avgdl: float) -> tuple[np.ndarray, np.ndarray]:
    """BM25 of every row holding a term: ``postings[i]`` the rows holding term i, one entry per
    occurrence, ascending (a_i,); ``idfs[i]`` its IDF; ``lengths`` (rows,) tokens of each row;
    ``avgdl`` the average row length. Scores (m,) float32, rows (m,) int64 ascending."""
    hit_rows, hit_scores = [np.zeros(0, np.int64)], [np.zeros(0)]
    for p, w in zip(postings, idfs):
        if not len(p):
            continue
        starts = np.flatnonzero(np.r_[True, p[1:] != p[:-1]])  # (u,) first occurrence in each row
        rows = p[starts]  # (u,)
        tf = np.diff(np.r_[starts, len(p)]).astype(np.float64)  # (u,) occurrences per row
        norm = K1 * (1.0 - B + B * lengths[rows] / avgdl)  # (u,)
        hit_scores.append(w * (tf * (K1 + 1.0)) / (tf + norm))
        hit_rows.append(rows)
    unique, at = np.unique(np.concatenate(hit_rows), return_inverse=True)  # (m,), (a,)
    return np.bincount(at, weights=np.concatenate(hit_scores), minlength=len(unique)).astype(np.float32), unique
