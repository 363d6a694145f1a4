"""The keyword leg's postings budget (indexing.keyword.POSTINGS_BUDGET): nDCG@10 of keyword and
hybrid search on SciFact and SQuAD (2000 seeded questions) and the keyword leg's p50 latency on
100k synthetic chunks (as bench/keyword_engines.py builds them), for several budgets, one run.

    python -m bench.postings_budget
"""
import time, json, numpy as np
from pathlib import Path
from indexing import keyword
from indexing.embed import DEFAULT_MODEL
from rag.eval_configs import StorePool
from rag.evaluate import embed_cached, load_beir, retrieval_metrics, run_from_ids
out = {}
for name, path in (("scifact", "../shared/datasets/scifact"), ("squad", "../shared/datasets/squad-v1.1")):
    data = load_beir(path, max_queries=2000 if "squad" in path else None)
    xb, xq, _ = embed_cached(data, DEFAULT_MODEL, None)
    with StorePool(xb, DEFAULT_MODEL, data.doc_ids, data.titles, data.texts) as pool:
        r = pool.retriever(96, "float8")
        for b in (20000, 5000, 2000):
            keyword.POSTINGS_BUDGET = b
            Ik, Ih = [], []
            for q, x in zip(data.queries, xq):
                rk = r.store.keyword_search(q, 10)[1]; Ik.append(np.pad(rk, (0, 10 - len(rk)), constant_values=-1))
                rh = r.hybrid_rows(q, x, 10)[1]; Ih.append(np.pad(rh, (0, 10 - len(rh)), constant_values=-1))
            for leg, I in (("keyword", Ik), ("hybrid", Ih)):
                run = run_from_ids(np.stack(I), data.query_ids, data.doc_ids)
                out[f"{name} {leg} budget={b}"] = round(retrieval_metrics(data.qrels, run, run, 10)["ndcg@10"], 4)
            print(json.dumps(out), flush=True)
import tempfile
from bench.keyword_engines import fts5_all, fts5_build, synthetic_texts
data = load_beir("../shared/datasets/scifact")
counts = {}
for d in data.doc_inputs():
    for w in d.lower().split():
        counts[w] = counts.get(w, 0) + 1
words = sorted(counts)
p = np.array([counts[w] for w in words], np.float64)
tmp = Path(tempfile.mkdtemp(prefix="budget-"))
db, _, _ = fts5_build(synthetic_texts(words, p / p.sum(), 100_000), tmp / "fts.sqlite")
for b in (20000, 5000, 2000):
    keyword.POSTINGS_BUDGET = b
    t = []
    for q in data.queries:
        t0 = time.perf_counter(); fts5_all(db, q); t.append(1000 * (time.perf_counter() - t0))
    out[f"synthetic100k keyword_all p50 ms budget={b}"] = round(float(np.median(t)), 2)
print(json.dumps(out, indent=1))
import shutil
shutil.rmtree(tmp, ignore_errors=True)
Path("bench/results/postings_budget.json").write_text(json.dumps(out, indent=1) + "\n")
