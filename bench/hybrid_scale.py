"""Hybrid search at scale: single-query latency of hybrid vs dense on an n-chunk store, and the
cost of the keyword index at indexing time.

The store is written by ``StoreWriter`` (the product's writer) with synthetic content:
vectors from ``bench.vectors`` (a Gaussian fitted to real MiniLM embeddings of SciFact), and for
each chunk 150 words drawn (seeded) from SciFact's own unigram distribution, stop words included,
so the keyword leg meets a real scientific vocabulary with real document frequencies. Queries:
the real SciFact claims, text to the keyword leg and their MiniLM embeddings to the dense leg.
Latency pairs dense and hybrid query by query in one loop (``Retriever.search_vectors`` vs
``Retriever.hybrid_rows``, k = 10; the query embedding, identical in both, is excluded); with
``--budgets`` every postings budget (``indexing.keyword.POSTINGS_BUDGET``) takes its turn right
after dense on the same query, so each budget's ratio hybrid / dense comes from the same loop.

Indexing time: the same rows written twice, with the keyword index and with it switched off
(``indexing.keyword.create``/``add``/``finish`` replaced by no-ops, bench only), interleaved. The writer's
time excludes embedding; the ratio with embedding added is reported from the measured MiniLM
document throughput of this machine (``--embed-chunks-per-s``, from bench/results/embed_speed_v2.json).

    python -m bench.hybrid_scale --n 100000 --json bench/results/hybrid_scale_100000.json
    python -m bench.hybrid_scale --n 1000000 --budgets 20000,2000 --no-writer-ratio --json bench/results/hybrid_scale_1000000.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.vectors import SCIFACT, _read_jsonl, iter_xb, scifact_queries
from indexing import keyword
from rag import fusion
from indexing.chunk import Chunk, ChunkSettings
from indexing.writer import DocumentRecord, StoreWriter
from rag.retrieve import Retriever

WORDS_PER_CHUNK = 150
PER_DOC = 100


def vocabulary() -> tuple[np.ndarray, np.ndarray]:
    counts: dict[str, int] = {}
    for d in _read_jsonl(SCIFACT / "corpus.jsonl"):
        for w in f"{d.get('title', '')} {d.get('text', '')}".lower().split():
            counts[w] = counts.get(w, 0) + 1
    words = np.array(sorted(counts))
    p = np.array([counts[w] for w in words], np.float64)
    return words, p / p.sum()


def write_store(path: Path, n: int, words: np.ndarray, p: np.ndarray, with_keywords: bool) -> float:
    """Write the n-chunk store; seconds spent in the writer (text generation excluded)."""
    rng = np.random.default_rng(0)
    create, add, finish = keyword.create, keyword.add, keyword.finish
    if not with_keywords:
        keyword.create = keyword.add = keyword.finish = lambda *a, **kw: None  # type: ignore[assignment]
    spent = 0.0
    try:
        writer = StoreWriter(path, "sentence-transformers/all-MiniLM-L6-v2", 384, ChunkSettings())
        docs = 0
        for xb in iter_xb(n):
            for d0 in range(0, len(xb), PER_DOC):
                part = xb[d0 : d0 + PER_DOC]  # (m, d)
                ids = rng.choice(len(words), (len(part), WORDS_PER_CHUNK), p=p)
                texts = [" ".join(words[r]) for r in ids]
                doc = f"/synthetic/d{docs}.txt"  # one name per document (blocks need not split evenly)
                chunks = [Chunk(doc, doc, "", None, 0, len(t), t) for t in texts]
                t0 = time.perf_counter()
                writer.add(DocumentRecord(doc, doc, "", ""), chunks, part)
                spent += time.perf_counter() - t0
                docs += 1
        t0 = time.perf_counter()
        writer.commit()
        spent += time.perf_counter() - t0
    finally:
        keyword.create, keyword.add, keyword.finish = create, add, finish
    return spent


def paired_latency(r: Retriever, texts: list[str], xq: np.ndarray, budgets: list[int], parallel: list[bool]) -> dict:
    """p50/p95 of dense and of hybrid at each postings budget (and with the keyword leg in a thread
    beside the dense leg or after it), query by query in one loop."""
    variants = [(b, par) for b in budgets for par in parallel]
    saved, saved_par = keyword.POSTINGS_BUDGET, fusion.PARALLEL_LEGS
    t = np.empty((len(texts), 1 + len(variants)))  # ms: dense, hybrid per variant
    kw_t = np.empty((len(texts), len(variants)))  # ms: the keyword leg alone (top 50) per variant
    try:
        for i in range(min(5, len(texts))):  # warm up
            r.search_vectors(xq[i : i + 1], 10)
            r.hybrid_rows(texts[i], xq[i], 10)
        for i, (q, x) in enumerate(zip(texts, xq)):
            t0 = time.perf_counter()
            r.search_vectors(x[None, :], 10)
            t[i, 0] = time.perf_counter() - t0
            for j, (b, par) in enumerate(variants):
                keyword.POSTINGS_BUDGET, fusion.PARALLEL_LEGS = b, par
                t0 = time.perf_counter()
                r.hybrid_rows(q, x, 10)
                t[i, 1 + j] = time.perf_counter() - t0
                t0 = time.perf_counter()
                r.store.keyword_search(q, 50)
                kw_t[i, j] = time.perf_counter() - t0
    finally:
        keyword.POSTINGS_BUDGET, fusion.PARALLEL_LEGS = saved, saved_par
    t, kw_t = t * 1e3, kw_t * 1e3
    out = {"dense_p50_ms": round(float(np.median(t[:, 0])), 3), "dense_p95_ms": round(float(np.percentile(t[:, 0], 95)), 3)}
    for j, (b, par) in enumerate(variants):
        out[f"budget={b} legs={'parallel' if par else 'serial'}"] = {
            "hybrid_p50_ms": round(float(np.median(t[:, 1 + j])), 3),
            "hybrid_p95_ms": round(float(np.percentile(t[:, 1 + j], 95)), 3),
            "hybrid_over_dense_p50": round(float(np.median(t[:, 1 + j]) / np.median(t[:, 0])), 3),
            "hybrid_over_dense_median_of_ratios": round(float(np.median(t[:, 1 + j] / t[:, 0])), 3),
            "keyword_leg_p50_ms": round(float(np.median(kw_t[:, j])), 3),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--max-queries", type=int, default=300)
    ap.add_argument("--budgets", default=None, help="postings budgets to time, comma-separated (default: the product's)")
    ap.add_argument("--legs", choices=("parallel", "serial", "both"), default="both", help="keyword leg beside or after the dense leg")
    ap.add_argument("--no-writer-ratio", action="store_true", help="skip the store written without the keyword index")
    ap.add_argument("--embed-chunks-per-s", type=float, default=None, help="MiniLM document throughput to fold into the indexing ratio")
    ap.add_argument("--store", type=Path, default=None,
                    help="keep the n-chunk store in this folder and reuse it on the next run (default: a temporary one)")
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    budgets = [int(b) for b in args.budgets.split(",")] if args.budgets else [keyword.POSTINGS_BUDGET]
    words, p = vocabulary()
    tmp = Path(tempfile.mkdtemp(prefix="hybrid-scale-"))
    result: dict = {"n": args.n, "default_budget": keyword.POSTINGS_BUDGET}
    try:
        if not args.no_writer_ratio:
            plain = write_store(tmp / "plain", args.n, words, p, with_keywords=False)
            shutil.rmtree(tmp / "plain")
        store = args.store or tmp / "store"
        reuse = args.store is not None and (store / "manifest.json").exists()
        with_kw = None if reuse else write_store(store, args.n, words, p, with_keywords=True)
        r = Retriever.open(store, verify=False)
        if r.store.n != args.n:
            raise SystemExit(f"{store} holds {r.store.n} chunks, not --n {args.n}")
        texts = [q["text"] for q in _read_jsonl(SCIFACT / "queries.jsonl")][: args.max_queries]
        xq = scifact_queries()[: args.max_queries]
        result["queries"] = len(texts)
        parallel = {"parallel": [True], "serial": [False], "both": [False, True]}[args.legs]
        result.update(paired_latency(r, texts, xq, budgets, parallel))
        kw_bytes = r.store.keyword_bytes() or 0
        result.update({
            "keyword_index_bytes": kw_bytes, "keyword_bytes_per_chunk": round(kw_bytes / args.n, 1),
            "bytes_per_vector": r.store.bytes_per_vector,
            "writer_seconds_with_keyword": None if with_kw is None else round(with_kw, 2),
        })
        if not args.no_writer_ratio and with_kw is not None:
            result.update({"writer_seconds_without_keyword": round(plain, 2), "writer_ratio": round(with_kw / plain, 3)})
            if args.embed_chunks_per_s:
                embed = args.n / args.embed_chunks_per_s
                result["embed_seconds_estimated"] = round(embed, 1)
                result["indexing_ratio_with_embedding"] = round((embed + with_kw) / (embed + plain), 3)
        r.store.close()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
