"""How to fuse the dense and keyword legs: every candidate fusion on several BEIR sets, one run.

For each set the default store is built from the cached MiniLM embeddings (as ``rag eval``
does); for each query both legs propose ``POOL`` candidates, every candidate of the union is
scored by both legs (as ``Retriever.hybrid_rows`` does), and each fusion ranks the union.
Reported: nDCG@10 of dense, keyword, RRF, fixed convex weights and the adaptive fusion for a
grid of priors, and each fusion's worst ratio to the better single leg across the sets -- the
number the default is chosen by (never more than 2 % below the better leg on any set).

    python -m bench.fusion_study --set scifact=../shared/datasets/scifact \\
        --set squad=../shared/datasets/squad-v1.1 --set scifact-otherwords=bench/data/scifact-otherwords \\
        --max-queries 2000 --json bench/results/fusion_study.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from bench.fusion_rules import load_set
from indexing.embed import DEFAULT_MODEL
from rag.eval_configs import StorePool
from rag.evaluate import retrieval_metrics, run_from_ids
from rag.fusion import POOL, coverage_weight, minmax
from rag.retrieve import DEFAULT_OVERSAMPLE

K = 10
WEIGHTS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
FULLS = (0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0)


def _mix(d: np.ndarray, k: np.ndarray, w: float) -> np.ndarray:
    return w * minmax(d) + (1 - w) * minmax(k)


# -- the two per-query rules measured and dropped (the product uses coverage_weight) ----------------


def query_weight(nd: np.ndarray, nk: np.ndarray, w0: float, top: int = 5) -> float:
    """The dense weight for one query from normalised union scores nd, nk (m,).

    ``support``: mean normalised dense score of the keyword leg's top ``top`` candidates, i.e.
    how much the dense leg agrees with what the keyword leg puts first (1: the same chunks are
    on top; ~0: the keyword leg's best are the dense leg's worst). The keyword share of the
    weight is scaled by it: w = 1 - (1 - w0) * support."""
    if len(nk) == 0 or float(nk.max(initial=0.0)) <= 0.0:
        return 1.0  # no keyword evidence at all: dense alone
    order = np.argsort(-nk, kind="stable")[:top]
    support = float(np.mean(nd[order])) if len(nd) else 0.0
    return 1.0 - (1.0 - w0) * support


def top_z(s: np.ndarray, top: int = POOL) -> float:
    """How far the best score stands out of the leg's own top ``top``: (s1 - mean) / std, >= 0."""
    head = np.sort(s)[::-1][:top]
    if len(head) < 2:
        return 0.0
    sd = float(head.std())
    return max(0.0, float(head[0] - head.mean()) / sd) if sd > 1e-12 else 0.0


def confidence_weight(dense: np.ndarray, keyword: np.ndarray, w0: float) -> float:
    """The dense weight for one query from each leg's confidence (``top_z``), scaled by the prior."""
    if float(keyword.max(initial=0.0)) <= 0.0:
        return 1.0
    cd, ck = w0 * top_z(dense), (1.0 - w0) * top_z(keyword)
    return cd / (cd + ck) if cd + ck > 0 else w0


def candidates(retriever, queries: list[str], xq: np.ndarray) -> list[tuple]:  # type: ignore[no-untyped-def]
    """Per query, what ``Retriever.hybrid_rows`` fuses: union rows (m,), dense (m,), keyword (m,),
    the dense leg's and the keyword leg's own top rows, the keyword coverage."""
    out = []
    for q, x in zip(queries, xq):
        union, dense, kw, cov = retriever.hybrid_candidates(q, x, K, DEFAULT_OVERSAMPLE)
        dr = union[np.argsort(-dense, kind="stable")[:POOL]]
        kr = union[np.argsort(-kw, kind="stable")[: int((kw > 0).sum())]][:POOL]
        out.append((union, dense, kw, dr, kr, cov))
    return out


def fused_rows(cands, scorer) -> np.ndarray:  # type: ignore[no-untyped-def]
    I = np.full((len(cands), K), -1, np.int64)
    for i, (union, dense, kw, _, _, cov) in enumerate(cands):
        s = scorer(dense, kw, cov)
        top = union[np.argsort(-s, kind="stable")[:K]]
        I[i, : len(top)] = top
    return I


def rrf(cands, c: int = 60) -> np.ndarray:  # type: ignore[no-untyped-def]
    I = np.full((len(cands), K), -1, np.int64)
    for i, (union, _, _, dr, kr, _) in enumerate(cands):
        score = {}
        for rows in (dr, kr):
            for r, row in enumerate(rows):
                score[int(row)] = score.get(int(row), 0.0) + 1.0 / (c + r + 1)
        top = sorted(score, key=lambda t: -score[t])[:K]
        I[i, : len(top)] = top
    return I


def study(name: str, path: str, max_queries: int | None, cache_dir: str | None, docs_from: str | None) -> dict:
    data, xb, xq = load_set(path, docs_from, max_queries, cache_dir)
    t0 = time.perf_counter()
    with StorePool(xb, DEFAULT_MODEL, data.doc_ids, data.titles, data.texts) as pool:
        retriever = pool.retriever(xb.shape[1] // 4, "float8")
        cands = candidates(retriever, data.queries, xq)
    seconds = time.perf_counter() - t0

    def ndcg(I: np.ndarray) -> float:
        run = run_from_ids(I, data.query_ids, data.doc_ids)
        return round(retrieval_metrics(data.qrels, run, run, K)[f"ndcg@{K}"], 4)

    res = {
        "dense": ndcg(fused_rows(cands, lambda d, k, c: d)),
        "keyword": ndcg(fused_rows(cands, lambda d, k, c: k)),
        "rrf60": ndcg(rrf(cands)),
    }
    for w in WEIGHTS:
        res[f"convex w={w}"] = ndcg(fused_rows(cands, lambda d, k, c, w=w: _mix(d, k, w)))
        res[f"support w0={w}"] = ndcg(fused_rows(
            cands, lambda d, k, c, w=w: _mix(d, k, query_weight(minmax(d), minmax(k), w) if k.max(initial=0) > 0 else 1.0)))
        res[f"confidence w0={w}"] = ndcg(fused_rows(
            cands, lambda d, k, c, w=w: _mix(d, k, confidence_weight(d, k, w))))
        for full in FULLS:
            for power in (1.0, 2.0, 3.0):
                res[f"evidence w0={w} full={full} power={power}"] = ndcg(fused_rows(
                    cands, lambda d, k, c, w=w, f=full, p=power: _mix(d, k, coverage_weight(c, w, f, p) if k.max(initial=0) > 0 else 1.0)))
    res["evidence mean"] = round(float(np.mean([c[-1] for c in cands])), 3)
    return {"set": name, "path": path, "queries": len(data.queries), "docs": len(data.doc_ids),
            "candidate_seconds": round(seconds, 1), "ndcg@10": res}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--set", action="append", required=True, metavar="NAME=PATH[:DOCS_FROM]")
    ap.add_argument("--max-queries", type=int, default=None)
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    sets = []
    for spec in args.set:
        name, rest = spec.split("=", 1)
        path, _, docs_from = rest.partition(":")
        sets.append(study(name, path, args.max_queries, args.cache_dir, docs_from or None))
        print(json.dumps(sets[-1]), flush=True)
    names = list(sets[0]["ndcg@10"])
    worst = {}
    for n in names:
        worst[n] = round(min(s["ndcg@10"][n] / max(s["ndcg@10"]["dense"], s["ndcg@10"]["keyword"]) for s in sets), 4)
    out = {"sets": sets, "worst_ratio_to_better_leg": worst, "best_worst_case": max(worst, key=worst.get)}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["worst_ratio_to_better_leg"], indent=1))


if __name__ == "__main__":
    main()
