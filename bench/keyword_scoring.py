"""The keyword leg's BM25: FTS5's own ``bm25()`` vs the product's numpy scoring (``indexing.bm25``:
postings read through ``fts5vocab`` + a per-row token-count array), on one store, query by query.

For each SciFact claim the same terms (the product's: stop words and the postings budget applied,
``Store.keyword_query``) are scored both ways, interleaved, and the scores compared row by row
(they must be equal: same formula). Also timed: reading the row lengths at the first keyword
search (the stored array, and decoding FTS5's docsize table as a store written before the array
does). The store is one written by bench/hybrid_scale.py with ``--store`` (one segment).

    python -m bench.hybrid_scale --n 1000000 --store /tmp/h1m/store --no-writer-ratio --json ...
    python -m bench.keyword_scoring --store /tmp/h1m/store --json bench/results/keyword_scoring_1000000.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.vectors import SCIFACT, _read_jsonl
from indexing import keyword
from indexing.store import Store


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--max-queries", type=int, default=300)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    store = Store.open(args.store, verify=False)
    if len(store.segments) != 1:
        raise SystemExit("compare on a store of one segment (FTS5's bm25() scores each segment by its own statistics)")
    db = store.segments[0].db.db
    t0 = time.perf_counter()
    keyword.token_counts(db, store.rows)
    stored_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    keyword._docsize_lengths(db)
    docsize_s = time.perf_counter() - t0
    texts = [q["text"] for q in _read_jsonl(SCIFACT / "queries.jsonl")][: args.max_queries]
    queries = [store.keyword_query(q) for q in texts]
    for q in queries[:5]:  # warm up both
        store.keyword_all(q)
        keyword.search_terms(db, q.terms)
    fts5_ms, numpy_ms, worst, matched = [], [], 0.0, []
    for q in queries:
        t0 = time.perf_counter()
        S_f, R_f = keyword.search_terms(db, q.terms)  # (a,), (a,) FTS5's bm25()
        fts5_ms.append(1e3 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        S_n, R_n = store.keyword_all(q)  # (a,), (a,) numpy
        numpy_ms.append(1e3 * (time.perf_counter() - t0))
        order = np.argsort(R_f)
        if not np.array_equal(R_f[order], R_n):
            raise SystemExit(f"different rows for {q.terms}")
        if len(R_n):
            worst = max(worst, float(np.max(np.abs(S_f[order] - S_n) / np.maximum(np.abs(S_f[order]), 1e-9))))
        matched.append(len(R_n))
    result = {
        "store_rows": store.rows, "queries": len(queries), "matching_rows_p50": float(np.median(matched)),
        "matching_rows_mean": round(float(np.mean(matched)), 1),
        "fts5_bm25_p50_ms": round(float(np.median(fts5_ms)), 3), "numpy_bm25_p50_ms": round(float(np.median(numpy_ms)), 3),
        "numpy_over_fts5_p50": round(float(np.median(numpy_ms) / np.median(fts5_ms)), 3),
        "numpy_over_fts5_median_of_ratios": round(float(np.median(np.array(numpy_ms) / np.array(fts5_ms))), 3),
        "max_relative_score_difference": worst,
        "row_lengths_read_ms": round(1e3 * stored_s, 2), "row_lengths_from_docsize_ms": round(1e3 * docsize_s, 1),
    }
    store.close()
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
