"""Measure retrieval quality, size and speed of the compressed store on a BEIR-layout dataset.

A dataset is a folder with ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``), ``qrels/test.tsv`` (``query-id``, ``corpus-id``, ``score``) and, for
answer quality, ``answers.jsonl`` (``_id``, ``answers``). Documents are embedded once as
BEIR does (``title + " " + text``) and cached; every configuration of ``rag.eval_configs`` is
then built from the same vectors and scored with pytrec_eval. Nothing here prints: ``evaluate``
returns a dict and the ``rag eval`` command formats it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from indexing.embed import DEFAULT_MODEL, Embedder
from indexing.errors import ConfigError
from rag.eval_configs import (
    MemorySearcher, SearchConfig, StorePool, StoreSearcher, index_command, latency_ms, main_configs,
    pareto_front, plot_sweep, recommend, sweep_configs,
)
from rag.eval_data import (  # noqa: F401 - re-exported: these lived here first
    DEFAULT_CACHE, RECALL_DEPTH, BeirData, embed_cached, load_beir, overlap_at_k, retrieval_metrics, run_from_ids,
)
from rag.retrieve import DEFAULT_OVERSAMPLE, Retriever

Log = Callable[[str], None]
TARGET = 0.99  # share of float32 nDCG the default store should keep
LATENCY_QUERIES = 200


def measure_config(
    searcher: MemorySearcher | StoreSearcher, xq: np.ndarray, data: BeirData, k: int, n_docs: int,
    I_ref: np.ndarray | None = None,
) -> tuple[dict[str, Any], np.ndarray]:
    """One row of the table (quality by pytrec_eval, sizes, single-query latency) and the top-k
    rows I (nq, k). ``I_ref``: the float32 top-k, for the overlap column (None: this is float32)."""
    c = searcher.config
    t0 = time.perf_counter()
    _, I = searcher.search(xq, k)  # (nq, k)
    _, I_deep = searcher.search(xq, RECALL_DEPTH)  # (nq, depth)
    seconds = time.perf_counter() - t0
    metrics = retrieval_metrics(data.qrels, run_from_ids(I, data.query_ids, data.doc_ids),
                                run_from_ids(I_deep, data.query_ids, data.doc_ids), k)
    p50, p95 = latency_ms(searcher.search, xq, k, LATENCY_QUERIES)
    row = {
        "name": c.name, **metrics, f"overlap@{k}_float32": overlap_at_k(I, I if I_ref is None else I_ref),
        "bytes_per_vector": searcher.bytes_per_vector,
        "store_bytes": n_docs * (searcher.bytes_per_vector + searcher.rerank_bytes_per_vector),
        "latency_ms_p50": round(p50, 4), "latency_ms_p95": round(p95, 4), "pct_of_float32": None,
        "index_key": c.index_key, "pca_dims": c.pca_dims or xq.shape[1], "dtype": c.dtype, "rerank": c.rerank,
        "oversample": c.oversample if c.rerank else None, "ann": searcher.ann, "default_store": c.default,
        "measured_via": "store" if c.via_store else "memory (no PCA: not a store rag index builds)",
        "batch_search_seconds": round(seconds, 3),
    }
    return row, I


# -- the whole evaluation ------------------------------------------------------------------------------
def evaluate(
    dataset: str | Path,
    model: str | None = None,
    pca_dims: int | None = None,
    oversample: int = DEFAULT_OVERSAMPLE,
    k: int = 10,
    max_docs: int | None = None,
    max_queries: int | None = None,
    sweep: bool = False,
    budget: int | None = None,
    build_store: str | None = None,
    answer_eval: Callable[[BeirData, Retriever], dict[str, Any]] | None = None,
    cache_dir: str | Path | None = None,
    plot: str | Path | None = None,
    embedder: Embedder | None = None,
    log: Log | None = None,
    calibrate: bool = False,
) -> dict[str, Any]:
    """Evaluate every configuration on ``dataset``; the returned dict is what ``--json`` writes.

    ``answer_eval`` (e.g. ``rag.eval_answers.answer_quality`` with its options bound) is called with
    the data and a ``Retriever`` over the default store; its dict is ``report["answers"]``."""
    import indexing.embed

    if k < 1:
        raise ConfigError(f"-k {k} must be >= 1")
    if budget is not None and budget < 1:
        raise ConfigError(f"--budget {budget} must be a positive number of bytes per vector")
    if pca_dims is not None and pca_dims < 1:
        raise ConfigError(f"--pca-dims {pca_dims} must be >= 1 (or left out for dim/4)")
    cache = Path(cache_dir or DEFAULT_CACHE).expanduser()
    if cache.exists() and not cache.is_dir():
        raise ConfigError(f"--cache-dir {cache} is a file, not a folder; pass a folder for the embedding cache")
    log = log or (lambda message: None)
    model_id = embedder.model_id if embedder is not None else (model or DEFAULT_MODEL)
    loaded: list[Embedder] = [embedder] if embedder is not None else []

    def get_embedder() -> Embedder:
        if not loaded:
            log(f"loading embedding model {model_id}")
            loaded.append(indexing.embed.load_embedder(model_id))
        return loaded[0]

    t_start = time.perf_counter()
    data = load_beir(dataset, max_docs, max_queries)
    if answer_eval is not None and not data.answers:
        raise ConfigError(f"--answers needs {data.path / 'answers.jsonl'} (SQuAD-style answers); drop --answers for this dataset")
    if k > len(data.doc_ids):
        raise ConfigError(f"-k {k} is more than the {len(data.doc_ids)} documents of {data.path}; use -k 10 (or at most {len(data.doc_ids)})")
    log(f"{data.path.name}: {len(data.doc_ids)} documents, {len(data.query_ids)} queries with qrels")
    xb, xq, cache_info = embed_cached(data, model_id, get_embedder, cache_dir, max_docs, log)
    n, d = xb.shape
    report: dict[str, Any] = {
        "dataset": str(data.path), "model": model_id, "n_docs": n, "n_queries": len(xq), "dim": d, "k": k,
        "recall_depth": RECALL_DEPTH, "latency_queries": min(LATENCY_QUERIES, len(xq)), "embedding_cache": cache_info,
        "machine": _machine(),
    }
    ndcg = f"ndcg@{k}"
    configs = main_configs(d, pca_dims, oversample)
    default = next(c for c in configs if c.default)
    keep = [(default.pca_dims, default.dtype)]  # the default store stays open for the answers
    with StorePool(xb, model_id, data.doc_ids, data.titles, data.texts) as pool:
        rows, I_ref = [], None
        for config in configs:  # float32 flat first: its top-k is the overlap reference
            log(f"building and measuring {config.name}")
            row, I = measure_config(_searcher(config, xb, pool, default), xq, data, k, n, I_ref)
            rows.append(row)
            I_ref = I if I_ref is None else I_ref
        pool.release(keep)
        baseline = rows[0][ndcg]
        for r in rows:
            r["pct_of_float32"] = _pct(r[ndcg], baseline)
        report["configs"] = rows
        report["default"] = _verdict(rows[configs.index(default)], baseline, ndcg)
        from rag.eval_modes import modes_report  # dense / keyword / hybrid of the default store

        report.update(modes_report(pool.retriever(default.pca_dims, default.dtype), data, xq, k, oversample, RECALL_DEPTH, calibrate, log,
                                   xb=xb))  # rows of the eval's stores are the documents in order: xb[row]
        if sweep or budget is not None or plot:
            sweep_rows = []
            grid = sweep_configs(d, oversample)
            for i, config in enumerate(grid, start=1):
                log(f"sweep {i}/{len(grid)}: {config.name}")
                row, _ = measure_config(_searcher(config, xb, pool, default), xq, data, k, n, I_ref)
                sweep_rows.append(row | {"pct_of_float32": _pct(row[ndcg], baseline)})
                if config.rerank:  # both variants of this store are measured
                    pool.release(keep)
            front = pareto_front([(r["bytes_per_vector"], r[ndcg]) for r in sweep_rows])
            for i, r in enumerate(sweep_rows):
                r["pareto"] = i in front
            report["sweep"] = sweep_rows
            if plot:
                plot_sweep(sweep_rows, baseline, plot, title=f"{data.path.name}: {n} docs, {len(xq)} queries, {model_id}", metric=ndcg)
                report["plot"] = str(plot)
            if budget is not None:
                best = dict(recommend(sweep_rows, budget, ndcg))
                best["budget"] = budget
                best["command"] = index_command(best, build_store, model)
                best["reaches_target"] = best[ndcg] >= TARGET * baseline
                if not best["rerank"]:
                    best["note"] = "measured without rerank; `rag search` reranks with the float8 full vectors"
                report["recommended"] = best
        if answer_eval is not None:
            log("answering questions over the default store")
            report["answers"] = answer_eval(data, Retriever(pool.retriever(default.pca_dims, default.dtype).store, get_embedder()))
    report["seconds"] = round(time.perf_counter() - t_start, 1)
    return report


def _searcher(config: SearchConfig, xb: np.ndarray, pool: StorePool, default: SearchConfig) -> MemorySearcher | StoreSearcher:
    if config.via_store:
        return StoreSearcher(pool.retriever(config.pca_dims, config.dtype), config)
    if config.dtype != "float8":
        return MemorySearcher(xb, config)
    store = pool.retriever(default.pca_dims, default.dtype).store
    return MemorySearcher(xb, config, store.full_codec)  # the codes are the store's float8 full vectors


def _machine() -> dict[str, Any]:
    """What latencies depend on: cores, FAISS threads, load when measuring started."""
    import faiss

    return {"cpus": os.cpu_count(), "faiss_omp_threads": faiss.omp_get_max_threads(),
            "load_average_1m": round(os.getloadavg()[0], 2), "faiss": faiss.__version__}


def _pct(value: float, baseline: float) -> float:
    return round(100.0 * value / baseline, 2) if baseline > 0 else 0.0


def _verdict(row: dict[str, Any], baseline: float, ndcg: str) -> dict[str, Any]:
    """Whether the default store keeps ``TARGET`` of float32 nDCG, and by how much it misses."""
    need = TARGET * baseline
    return {
        "name": row["name"], ndcg: row[ndcg], "float32": baseline, "pct_of_float32": row["pct_of_float32"],
        "target_pct": 100 * TARGET, "reaches_target": row[ndcg] >= need,
        "shortfall_ndcg": round(max(0.0, need - row[ndcg]), 6),
        "shortfall_points": round(max(0.0, 100 * TARGET - (row["pct_of_float32"] or 0.0)), 2),
    }
