"""Keyword engine choice: SQLite FTS5 (what the store uses) against bm25s, measured in one run.

Two corpora: SciFact (quality: nDCG@10 on its 300 test claims with qrels) and a synthetic corpus
of ``--n`` chunks (build time, bytes per chunk, single-query latency at scale). Synthetic text:
each chunk draws 150 words from SciFact's own unigram distribution (stop words included, seeded),
so term frequencies and document frequencies follow a real scientific vocabulary; queries are the
real SciFact claims. Both engines get the same English setup: Porter stemming, stop words
dropped from queries (bm25s: its English stop list + PyStemmer's Porter stemmer; FTS5: the
``porter unicode61`` tokenizer + ``indexing.keyword.STOP_WORDS``), k1 = 1.2, b = 0.75.
FTS5's latency is that of its own bm25() over every match (``fts5_all``, top K sorted; the product now scores FTS5's postings itself, bench/keyword_scoring.py); bm25s's is ``retrieve`` of one
tokenised query (its tokenisation time included).

    python -m bench.keyword_engines --n 100000 --json bench/results/keyword_engines.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import Timeit
from indexing import keyword
from rag.evaluate import load_beir, retrieval_metrics, run_from_ids

SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"
K = 10


def fts5_build(texts: list[str], path: Path) -> tuple[sqlite3.Connection, float, int]:
    """An FTS5 keyword index as the store writes it; (connection, build seconds, index bytes)."""
    db = sqlite3.connect(path, check_same_thread=False)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                     "CREATE TABLE chunks(row INTEGER PRIMARY KEY, title TEXT, text TEXT);")
    t0 = time.perf_counter()
    keyword.create(db, keyword.KeywordSettings())
    for i in range(0, len(texts), 10_000):
        rows = [(j, "", t) for j, t in enumerate(texts[i : i + 10_000], start=i)]
        db.executemany("INSERT INTO chunks VALUES (?,?,?)", rows)
        keyword.add(db, rows)
    keyword.finish(db)
    db.commit()
    seconds = time.perf_counter() - t0
    return db, seconds, keyword.index_bytes(db) or 0


def fts5_text_seconds(texts: list[str], path: Path) -> float:
    """Seconds to write the same chunk rows without the keyword index (the baseline)."""
    db = sqlite3.connect(path)
    db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF; CREATE TABLE chunks(row INTEGER PRIMARY KEY, title TEXT, text TEXT);")
    t0 = time.perf_counter()
    for i in range(0, len(texts), 10_000):
        db.executemany("INSERT INTO chunks VALUES (?,?,?)", [(j, "", t) for j, t in enumerate(texts[i : i + 10_000], start=i)])
    db.commit()
    db.close()
    return time.perf_counter() - t0


def bm25s_build(texts: list[str], folder: Path):  # type: ignore[no-untyped-def]
    import bm25s
    import Stemmer

    stemmer = Stemmer.Stemmer("english")
    t0 = time.perf_counter()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    model = bm25s.BM25(k1=1.2, b=0.75)
    model.index(tokens, show_progress=False)
    seconds = time.perf_counter() - t0
    model.save(str(folder))
    size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return model, stemmer, seconds, size


def bm25s_search(model, stemmer, query: str, k: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    import bm25s

    q = bm25s.tokenize([query], stopwords="en", stemmer=stemmer, show_progress=False, return_ids=False)
    if not q[0]:
        return np.zeros(0, np.int64)
    k = min(k, model.scores["num_docs"])
    docs, _ = model.retrieve(q, k=k, show_progress=False, n_threads=1)
    return np.asarray(docs[0], np.int64)


def fts5_all(db, query: str) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """FTS5's bm25() of every row holding a term the postings budget keeps (as the store chooses
    them, ``Store.keyword_query``): scores (a,), rows (a,)."""
    terms = keyword.query_terms(query)
    stemmed = keyword.stems(terms)
    if len(terms) > 1 and stemmed is not None:
        terms = keyword.choose_terms(terms, stemmed, keyword.doc_freqs(db, stemmed))
    return keyword.search_terms(db, terms)


def measure(texts: list[str], queries: list[str], tmp: Path, qrels_eval=None) -> dict:  # type: ignore[no-untyped-def]
    out: dict = {"chunks": len(texts)}
    plain = fts5_text_seconds(texts, tmp / "plain.sqlite")
    db, fts_s, fts_bytes = fts5_build(texts, tmp / "fts.sqlite")
    model, stemmer, bm_s, bm_bytes = bm25s_build(texts, tmp / "bm25s")
    fts_ms, bm_ms, I_f, I_b = [], [], [], []
    for q in queries:  # interleaved, query by query
        t0 = time.perf_counter()
        S, R = fts5_all(db, q)
        rows = R[np.lexsort((R, -S))[:K]]
        fts_ms.append(1000 * (time.perf_counter() - t0))
        t0 = time.perf_counter()
        rows_b = bm25s_search(model, stemmer, q, K)
        bm_ms.append(1000 * (time.perf_counter() - t0))
        I_f.append(np.pad(rows, (0, K - len(rows)), constant_values=-1))
        I_b.append(np.pad(rows_b, (0, K - len(rows_b)), constant_values=-1))
    out["fts5"] = {"build_seconds": round(fts_s, 2), "text_only_build_seconds": round(plain, 2),
                   "index_bytes": fts_bytes, "bytes_per_chunk": round(fts_bytes / len(texts), 1),
                   "p50_ms": round(float(np.median(fts_ms)), 3), "p95_ms": round(float(np.percentile(fts_ms, 95)), 3)}
    out["bm25s"] = {"build_seconds": round(bm_s, 2), "index_bytes": bm_bytes, "bytes_per_chunk": round(bm_bytes / len(texts), 1),
                    "p50_ms": round(float(np.median(bm_ms)), 3), "p95_ms": round(float(np.percentile(bm_ms, 95)), 3)}
    if qrels_eval is not None:
        for name, I in (("fts5", I_f), ("bm25s", I_b)):
            out[name]["ndcg@10"] = round(qrels_eval(np.stack(I)), 4)
    db.close()
    return out


def synthetic_texts(words: list[str], p: np.ndarray, n: int, length: int = 150, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    vocab = np.array(words)
    return [" ".join(vocab[rng.choice(len(words), length, p=p)]) for _ in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000, help="synthetic chunks for build time / bytes / latency")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    data = load_beir(SCIFACT)
    docs = data.doc_inputs()

    def ndcg(I: np.ndarray) -> float:
        run = run_from_ids(I, data.query_ids, data.doc_ids)
        return retrieval_metrics(data.qrels, run, run, K)[f"ndcg@{K}"]

    tmp = Path(tempfile.mkdtemp(prefix="kw-bench-"))
    try:
        with Timeit("scifact"):
            (tmp / "s").mkdir()
            scifact = measure(docs, data.queries, tmp / "s", ndcg)
        counts: dict[str, int] = {}
        for d in docs:
            for w in d.lower().split():
                counts[w] = counts.get(w, 0) + 1
        words = sorted(counts)
        p = np.array([counts[w] for w in words], np.float64)
        with Timeit(f"synthetic {args.n}"):
            texts = synthetic_texts(words, p / p.sum(), args.n)
            (tmp / "n").mkdir()
            synthetic = measure(texts, data.queries, tmp / "n")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result = {"scifact": scifact, f"synthetic_{args.n}": synthetic}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
