"""``rag eval``'s modes table: dense, keyword and hybrid search of the default store, side by side,
and ``--calibrate``: the fusion weight measured on the user's labelled queries.

Every mode is searched through the product (``Retriever.search_vectors``, ``Store.keyword_search``,
``Retriever.hybrid_rows``) on the store ``rag eval`` built for the default configuration; each
query's text goes to the keyword leg and its cached embedding to the dense leg.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.fusion import MODES, FusionSettings

if TYPE_CHECKING:
    from rag.eval_data import BeirData
    from rag.retrieve import Retriever

WEIGHT_GRID = tuple(round(0.1 * i, 1) for i in range(11))  # dense weights --calibrate tries
LATENCY_QUERIES = 200


def mode_search(retriever: Retriever, mode: str, queries: Sequence[str], xq: np.ndarray, k: int, oversample: int,
                fusion: FusionSettings | None = None, xb: np.ndarray | None = None) -> np.ndarray:
    """Top-k rows I (nq, k) of every query in ``mode`` (-1 where fewer exist). With ``xb`` (n, d),
    the float32 vectors of the store's rows, the dense leg is float32 brute force over them."""
    I = np.full((len(queries), k), -1, np.int64)
    if mode == "dense" and xb is not None:
        return np.argsort(-(xq @ xb.T), axis=1, kind="stable")[:, :k]
    if mode == "dense":
        return retriever.search_vectors(xq, k, oversample)[1]
    for i, q in enumerate(queries):
        if mode == "keyword":
            rows = retriever.store.keyword_search(q, k)[1]
        else:
            rows = retriever.hybrid_rows(q, xq[i], k, oversample, fusion=fusion, vectors=xb)[1]
        I[i, : len(rows)] = rows
    return I


def _p50_ms(fn: Callable[[int], object], n: int) -> float:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        times.append(1000 * (time.perf_counter() - t0))
    return round(float(np.median(times)), 4) if times else 0.0


def measure_modes(retriever: Retriever, data: BeirData, xq: np.ndarray, k: int, oversample: int, metrics: Callable, depth: int,
                  fusion: FusionSettings | None = None, xb: np.ndarray | None = None) -> dict[str, dict[str, Any]]:
    """``{mode: {ndcg@k, recall@k, recall@depth, mrr@k, p50_ms}}`` for dense, keyword and hybrid.
    ``metrics(I, I_deep)`` scores rows; p50_ms is one query at a time, text to rows (the dense leg's
    query embedding excluded: it is the same in every mode). With ``xb`` (the float32 vectors of
    the rows), dense and hybrid also get ``float32``: the same metrics with a float32 dense leg,
    and ``kept``: the compressed store's nDCG@k as a share of it."""
    out: dict[str, dict[str, Any]] = {}
    nq = min(LATENCY_QUERIES, len(xq))
    for mode in MODES:
        I = mode_search(retriever, mode, data.queries, xq, k, oversample, fusion)
        I_deep = mode_search(retriever, mode, data.queries, xq, depth, oversample, fusion)
        p50 = _p50_ms(lambda i: mode_search(retriever, mode, data.queries[i : i + 1], xq[i : i + 1], k, oversample, fusion), nq)
        out[mode] = {**metrics(I, I_deep), "p50_ms": p50}
        if xb is not None and mode != "keyword":  # keywords have nothing to compress
            ref = metrics(mode_search(retriever, mode, data.queries, xq, k, oversample, fusion, xb),
                          mode_search(retriever, mode, data.queries, xq, depth, oversample, fusion, xb))
            ndcg = f"ndcg@{k}"
            out[mode] |= {"float32": ref, "kept": round(out[mode][ndcg] / ref[ndcg], 4) if ref[ndcg] else None}
    return out


def winner(modes: dict[str, dict[str, Any]], key: str) -> str:
    """The mode with the best ``key`` (ties: hybrid, then dense)."""
    order = list(MODES)  # hybrid, dense, keyword
    return max(order, key=lambda m: (modes[m][key], -order.index(m)))


def calibrate(retriever: Retriever, data: BeirData, xq: np.ndarray, k: int, oversample: int, metrics: Callable,
              ndcg: str) -> dict[str, Any]:
    """nDCG@k of the hybrid search for every prior dense weight in WEIGHT_GRID (adaptive on) and
    the fixed weights (adaptive off); the best setting, to be stored in the store's manifest."""
    trials: list[dict[str, Any]] = []
    for adaptive in (True, False):
        for w in WEIGHT_GRID:
            fusion = FusionSettings(w, adaptive)
            I = mode_search(retriever, "hybrid", data.queries, xq, k, oversample, fusion)
            trials.append({"dense_weight": w, "adaptive": adaptive, ndcg: metrics(I, I)[ndcg]})
    default = FusionSettings()
    auto = next(t for t in trials if t["dense_weight"] == default.dense_weight and t["adaptive"] == default.adaptive)
    best = max(trials, key=lambda t: (t[ndcg], t["adaptive"]))
    return {"trials": trials, "automatic": auto, "best": best}


def modes_report(retriever: Retriever, data: BeirData, xq: np.ndarray, k: int, oversample: int, depth: int,
                 calibrate_weights: bool = False, log: Callable[[str], None] | None = None,
                 xb: np.ndarray | None = None) -> dict[str, Any]:
    """What ``rag eval`` adds: ``modes`` (dense/keyword/hybrid of the default store), ``best_mode``
    and, with ``calibrate_weights``, ``calibration`` (automatic fusion vs the best on these qrels)."""
    from rag.eval_data import retrieval_metrics, run_from_ids

    def metrics(I: np.ndarray, I_deep: np.ndarray) -> dict[str, float]:
        return retrieval_metrics(data.qrels, run_from_ids(I, data.query_ids, data.doc_ids),
                                 run_from_ids(I_deep, data.query_ids, data.doc_ids), k, depth)

    ndcg = f"ndcg@{k}"
    if log:
        log("measuring dense, keyword and hybrid search on the default store")
    modes = measure_modes(retriever, data, xq, k, oversample, metrics, depth, xb=xb)
    out: dict[str, Any] = {"modes": modes, "best_mode": winner(modes, ndcg)}
    if calibrate_weights:
        if log:
            log(f"calibrating the fusion weight on {len(data.queries)} labelled queries")
        out["calibration"] = calibrate(retriever, data, xq, k, oversample, metrics, ndcg)
    return out


def save_calibration(store: str, calibration: dict[str, Any], dataset: str) -> str:
    """Store the best calibrated fusion in ``store``'s manifest; returns the store path."""
    from rag.fusion import save_fusion

    best = calibration["best"]
    save_fusion(store, FusionSettings(best["dense_weight"], best["adaptive"]), f"rag eval --calibrate on {dataset}",
                {key: value for key, value in best.items() if key not in ("dense_weight", "adaptive")})
    return str(store)


def format_modes(report: dict[str, Any], k: int) -> str:
    """The modes table and which mode wins, plus the calibration when there is one."""
    ndcg, depth = f"ndcg@{k}", report.get("recall_depth", 100)
    lines = [f"search modes on the default store ({report['best_mode']} wins on nDCG@{k}):",
             f"{'mode':<8}  {'nDCG@' + str(k):>8}  {'R@' + str(k):>6}  {'R@' + str(depth):>6}  {'MRR@' + str(k):>7}  {'p50 ms':>7}"
             f"  {'float32 nDCG':>12}  {'kept':>7}"]
    for mode, m in report["modes"].items():
        ref = f"  {m['float32'][ndcg]:>12.4f}  {100 * m['kept']:>6.1f}%" if m.get("kept") else ""
        lines.append(f"{mode:<8}  {m[ndcg]:>8.4f}  {m[f'recall@{k}']:>6.3f}  {m[f'recall@{depth}']:>6.3f}  {m[f'mrr@{k}']:>7.4f}  {m['p50_ms']:>7.3f}"
                     + ref + ("  *" if mode == report["best_mode"] else ""))
    if "calibration" in report:
        c = report["calibration"]
        a, b = c["automatic"], c["best"]
        lines.append(f"fusion: automatic (dense weight {a['dense_weight']}, adaptive) nDCG@{k} {a[ndcg]:.4f}; calibrated best "
                     f"(dense weight {b['dense_weight']}, {'adaptive' if b['adaptive'] else 'fixed'}) {b[ndcg]:.4f}"
                     + (f"; saved into {c['saved_to']}" if c.get("saved_to") else "; pass --store DIR to save it"))
    return "\n".join(lines)

