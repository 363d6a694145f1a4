"""Scale benchmark: our PCA+float8 store against FAISS and sentence-transformers peers.

For each corpus size ``n`` every method is built and measured in the same process, one after
the other (each freed before the next), so CPU contention from other jobs hits them alike;
compare ratios against the float32 flat baseline of the same run.

    python -m bench.scale --n 100000 --json bench/results/scale_100000.json
    python -m bench.scale --n 1000000 --skip hnsw --json bench/results/scale_1000000.json
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Timeit, latency, machine, proc_status, recall_at_k, trim_heap, write_json
from bench.vectors import make_xb, queries

METHODS = ("flat", "sq8", "pca_sq8_refine", "hnsw", "st_uint8", "st_binary_int8", "ours_flat", "ours_ivf", "scan", "rerank")
D_FIRST = 96  # reduced dims of the FAISS PCA peer and of the scan comparison (our writer's default is d/4 = 96)


# -- the methods: each build returns {"search": xq -> I (nq, k), "info": {...}, "keep": [objects]} --------
def build_flat(xb: np.ndarray, k: int, **_: Any) -> dict[str, Any]:
    import faiss

    index = faiss.IndexFlatIP(xb.shape[1])  # LangChain's FAISS default is IndexFlatL2: same scan, same ranking on unit vectors
    index.add(xb)
    d = xb.shape[1]
    return {"search": lambda q: index.search(q, k)[1], "keep": [index],
            "info": {"key": "Flat (float32, IP)", "first_stage_bytes": 4 * d, "query_time_bytes": 4 * d, "memmapped": "none"}}


def build_sq8(xb: np.ndarray, k: int, train_n: int, **_: Any) -> dict[str, Any]:
    import faiss

    d = xb.shape[1]
    index = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    index.train(xb[:train_n])
    index.add(xb)
    return {"search": lambda q: index.search(q, k)[1], "keep": [index],
            "info": {"key": "SQ8 (no rerank)", "first_stage_bytes": d, "query_time_bytes": d, "memmapped": "none"}}


def build_pca_sq8_refine(xb: np.ndarray, k: int, train_n: int, oversample: int, **_: Any) -> dict[str, Any]:
    import faiss

    d = xb.shape[1]
    index = faiss.index_factory(d, f"PCA{D_FIRST},SQ8,Refine(Flat)", faiss.METRIC_INNER_PRODUCT)
    index.train(xb[:train_n])
    index.add(xb)
    index.k_factor = oversample  # same candidate count as ours (factory default is 1)
    return {"search": lambda q: index.search(q, k)[1], "keep": [index],
            "info": {"key": f"PCA{D_FIRST},SQ8,Refine(Flat) k_factor={oversample}", "first_stage_bytes": D_FIRST,
                     "query_time_bytes": D_FIRST + 4 * d, "memmapped": "none (refine vectors float32 in RAM)"}}


def build_hnsw(xb: np.ndarray, k: int, efc: int, xq: np.ndarray, gt: np.ndarray, **_: Any) -> dict[str, Any]:
    import faiss

    d = xb.shape[1]
    index = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = efc
    index.add(xb)
    curve = []
    for ef in (16, 32, 48, 64, 96, 128, 192, 256, 384, 512):
        index.hnsw.efSearch = ef
        t0 = time.perf_counter()
        I = index.search(xq, k)[1]
        ms = (time.perf_counter() - t0) * 1e3 / len(xq)
        curve.append({"efSearch": ef, "recall": recall_at_k(I, gt, k), "batch_ms_per_query": ms})
        if curve[-1]["recall"] >= 0.98:
            break
    links = index.hnsw.neighbors.size() * 4 / index.ntotal + 12  # neighbour ids + offsets + levels
    return {"search": lambda q: index.search(q, k)[1], "keep": [index],
            "info": {"key": f"HNSW32,Flat efConstruction={efc} efSearch={index.hnsw.efSearch}", "efSearch": int(index.hnsw.efSearch),
                     "efConstruction": efc, "ef_curve": curve, "first_stage_bytes": round(4 * d + links, 1),
                     "query_time_bytes": round(4 * d + links, 1), "memmapped": "none"}}


def _to_ids(results: list[list[dict[str, Any]]], k: int) -> np.ndarray:
    I = np.full((len(results), k), -1, np.int64)
    for i, hits in enumerate(results):
        ids = [h["corpus_id"] for h in hits][:k]
        I[i, : len(ids)] = ids
    return I


def build_st_uint8(xb: np.ndarray, k: int, train_n: int, st_rm: int, **_: Any) -> dict[str, Any]:
    """sentence-transformers' own helper: quantize_embeddings(uint8) + semantic_search_faiss(rescore)."""
    import faiss
    from sentence_transformers.util.quantization import quantize_embeddings, semantic_search_faiss

    d = xb.shape[1]
    ranges = np.vstack([xb[:train_n].min(0), xb[:train_n].max(0)])  # what calibration_embeddings would give
    index = faiss.IndexFlatIP(d)  # what semantic_search_faiss builds for "uint8": the codes are stored as float32
    for i0 in range(0, len(xb), 65_536):
        index.add(quantize_embeddings(xb[i0 : i0 + 65_536], "uint8", ranges=ranges).astype(np.float32))

    def search(q: np.ndarray) -> np.ndarray:
        res, _t = semantic_search_faiss(q, corpus_index=index, corpus_precision="uint8", top_k=k, ranges=ranges,
                                        rescore=True, rescore_multiplier=st_rm)
        return _to_ids(res, k)

    return {"search": search, "keep": [index],
            "info": {"key": f"st uint8 semantic_search_faiss rescore_multiplier={st_rm}", "first_stage_bytes": 4 * d,
                     "query_time_bytes": 4 * d, "memmapped": "none",
                     "note": "semantic_search_faiss puts uint8 codes in an IndexFlatIP, i.e. as float32 (4 B/dim); rescoring uses the dequantized codes"}}


def build_st_binary_int8(xb: np.ndarray, k: int, train_n: int, st_rm: int, tmp: Path, **_: Any) -> dict[str, Any]:
    """The sentence-transformers quantized-retrieval recipe: ubinary IndexBinaryFlat in RAM searched for
    k * rescore_multiplier, rescored with float32 query . int8 embeddings memory-mapped from disk."""
    import faiss
    from sentence_transformers.util.quantization import quantize_embeddings

    n, d = xb.shape
    ranges = np.vstack([xb[:train_n].min(0), xb[:train_n].max(0)])
    bindex = faiss.IndexBinaryFlat(d)
    file = tmp / "int8.bin"
    mm = np.memmap(file, np.int8, "w+", shape=(n, d))
    for i0 in range(0, n, 65_536):
        part = xb[i0 : i0 + 65_536]
        bindex.add(quantize_embeddings(part, "ubinary"))
        mm[i0 : i0 + len(part)] = quantize_embeddings(part, "int8", ranges=ranges)
    mm.flush()
    del mm
    int8_view = np.memmap(file, np.int8, "r", shape=(n, d))

    def search(q: np.ndarray) -> np.ndarray:
        _, ids = bindex.search(quantize_embeddings(q, "ubinary"), k * st_rm)  # (nq, c)
        cand = int8_view[np.where(ids >= 0, ids, 0).ravel()].reshape(len(q), -1, d).astype(np.float32)  # (nq, c, d)
        scores = np.einsum("qd,qcd->qc", q, cand)
        scores[ids < 0] = -np.inf
        order = np.argsort(-scores, axis=1)[:, :k]
        return np.take_along_axis(ids, order, 1)

    return {"search": search, "keep": [bindex, int8_view],
            "info": {"key": f"st ubinary IndexBinaryFlat + int8 rescore rescore_multiplier={st_rm}", "first_stage_bytes": d // 8,
                     "query_time_bytes": d // 8 + d, "memmapped": f"int8 rescore vectors ({d} B/vector) from disk"}}


def _write_store(xb: np.ndarray, store_dir: Path, ann: str, per_doc: int, dtype: str = "float8") -> dict[str, Any]:
    from indexing.chunk import Chunk, ChunkSettings
    from indexing.writer import CompressionSettings, DocumentRecord, GenerationWriter

    n, d = xb.shape
    with GenerationWriter(store_dir, model="bench/gaussian-fit-of-all-MiniLM-L6-v2", dim=d, chunker=ChunkSettings(),
                          compression=CompressionSettings(ann=ann, dtype=dtype)) as w:
        for i0 in range(0, n, per_doc):
            path = f"/bench/doc{i0 // per_doc:07d}.txt"
            chunks = [Chunk(path, path[1:], "t", None, 16 * j, 16 * j + 16, f"chunk {i0 + j}") for j in range(min(per_doc, n - i0))]
            w.add(DocumentRecord(path, path[1:], "t", "0" * 64), chunks, xb[i0 : i0 + len(chunks)])
        return w.commit()


def build_ours(xb: np.ndarray, k: int, oversample: int, tmp: Path, ann: str, per_doc: int, dtype: str = "float8", **_: Any) -> dict[str, Any]:
    from rag.retrieve import Retriever

    store_dir = tmp / f"store_{ann}"
    manifest = _write_store(xb, store_dir, ann, per_doc, dtype)
    trim_heap()
    retr = Retriever.open(store_dir, verify=True)
    comp = manifest["compression"]
    files = manifest["files"]
    d = xb.shape[1]
    return {"search": lambda q: retr.search_vectors(q, k, oversample)[1], "keep": [retr], "retriever": retr,
            "info": {"key": comp["index_key"] + f" + float8 full rerank oversample={oversample}", "nprobe": comp["nprobe"],
                     "nlist": comp["nlist"], "first_stage_bytes": comp["bytes_per_vector"],
                     "query_time_bytes": comp["bytes_per_vector"] + d, "memmapped": f"float8 full vectors ({d} B/vector, full.e4m3)",
                     "store_file_bytes": {name: meta["bytes"] for name, meta in files.items()}}}


# -- measuring -----------------------------------------------------------------------------------------
def measure(name: str, build, xq: np.ndarray, kind: np.ndarray, gt: np.ndarray | None, lat_q: np.ndarray, k: int, **kw: Any):
    trim_heap()
    m0 = proc_status()
    with Timeit(f"{name}: build") as tb:
        obj = build(k=k, xq=xq, gt=gt, **kw)
    trim_heap()
    m1 = proc_status()
    with Timeit(f"{name}: batched search of {len(xq)} queries") as ts:
        I = obj["search"](xq)
    lat = latency(obj["search"], lat_q)
    m2 = proc_status()
    row = {"build_s": tb.s, "rss_delta_mib": m1["rss"] - m0["rss"], "anon_delta_mib": m1["anon"] - m0["anon"],
           "mapped_file_rss_after_search_mib": m2["file"] - m0["file"], "batch_ms_per_query": ts.s * 1e3 / len(xq), **lat}
    if gt is not None:
        row.update(recall=recall_at_k(I, gt, k), recall_synthetic=recall_at_k(I[kind == 0], gt[kind == 0], k),
                   recall_scifact=recall_at_k(I[kind == 1], gt[kind == 1], k))
    row.update(obj["info"])
    print(f"  {name}: recall={row.get('recall', 1.0):.4f} p50={row['p50_ms']:.2f}ms p95={row['p95_ms']:.2f}ms "
          f"batch={row['batch_ms_per_query']:.3f}ms/q rss+={row['rss_delta_mib']:.0f}MiB", flush=True)
    return row, obj, I


def f16_rerank_recall(retr, xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, k: int, oversample: int) -> float:
    """Prototype: the same first-stage candidates reranked with float16 full vectors (768 B/vector on disk)."""
    store = retr.store
    cand = store.index.search(store.pca.transform(xq), k * oversample)[1]  # (nq, c)
    v = xb[np.where(cand >= 0, cand, 0).ravel()].astype(np.float16).astype(np.float32).reshape(*cand.shape, -1)
    sc = np.einsum("bcd,bd->bc", v, xq)
    sc[cand < 0] = -np.inf
    return recall_at_k(np.take_along_axis(cand, np.argsort(-sc, 1)[:, :k], 1), gt, k)


def oversample_curve(retr, xq: np.ndarray, gt: np.ndarray, lat_q: np.ndarray, k: int, xb: np.ndarray) -> list[dict[str, Any]]:
    """Recall and latency of our two-stage search as the candidate count k * oversample grows."""
    out = []
    for oversample in (4, 8, 16, 32):
        t0 = time.perf_counter()
        I = retr.search_vectors(xq, k, oversample)[1]
        ms = (time.perf_counter() - t0) * 1e3 / len(xq)
        lat = latency(lambda q: retr.search_vectors(q, k, oversample), lat_q[:100])
        out.append({"oversample": oversample, "recall": recall_at_k(I, gt, k), "batch_ms_per_query": ms, **lat,
                    "recall_float16_rerank_proto": f16_rerank_recall(retr, xb, xq, gt, k, oversample)})
        print(f"    oversample={oversample:3d} recall={out[-1]['recall']:.4f} (f16 rerank {out[-1]['recall_float16_rerank_proto']:.4f}) p50={lat['p50_ms']:.2f}ms batch={ms:.3f}ms/q", flush=True)
    return out


def ivf_curve(retr, xq: np.ndarray, gt: np.ndarray, lat_q: np.ndarray, k: int, oversamples: tuple[int, ...], xb: np.ndarray) -> list[dict[str, Any]]:
    index = retr.store.index
    default = int(index.nprobe)
    out = []
    for oversample in oversamples:
        for nprobe in sorted({1, 2, 4, 8, 16, 32, 64, 128, 256, 512, default} & set(range(1, int(index.nlist) + 1))):
            index.nprobe = nprobe
            t0 = time.perf_counter()
            I = retr.search_vectors(xq, k, oversample)[1]
            ms = (time.perf_counter() - t0) * 1e3 / len(xq)
            lat = latency(lambda q: retr.search_vectors(q, k, oversample), lat_q[:100])
            out.append({"oversample": oversample, "nprobe": nprobe, "recall": recall_at_k(I, gt, k), "batch_ms_per_query": ms, **lat,
                        "recall_float16_rerank_proto": f16_rerank_recall(retr, xb, xq, gt, k, oversample)})
            print(f"    oversample={oversample} nprobe={nprobe:4d} recall={out[-1]['recall']:.4f} (f16 {out[-1]['recall_float16_rerank_proto']:.4f}) p50={lat['p50_ms']:.2f}ms batch={ms:.3f}ms/q", flush=True)
            if out[-1]["recall_float16_rerank_proto"] >= 0.995 or (len(out) > 1 and out[-1]["recall"] - out[-2]["recall"] < 0.002 and out[-1]["oversample"] == out[-2]["oversample"]):
                break
    index.nprobe = default
    return out


def scan_compare(xb: np.ndarray, xq: np.ndarray, k: int, nq_batch: int = 128) -> dict[str, Any]:
    """Flat scan, no rerank, on the same 96 reduced dims: our IndexPQ-float8 vs IndexScalarQuantizer SQ8,
    both with 2 OpenMP threads; plus prototypes (2 threaded shards for nq=1, decode+GEMM for batches)."""
    import faiss

    from indexing.compress import FLOAT8_VALUES, Float8Codec, fit_pca
    from indexing.first_stage import add_vectors, new_index

    faiss.omp_set_num_threads(2)
    n = len(xb)
    pca = fit_pca(xb[:50_000], dims=D_FIRST)
    xr = np.empty((n, D_FIRST), np.float32)
    for i0 in range(0, n, 65_536):
        xr[i0 : i0 + 65_536] = pca.transform(xb[i0 : i0 + 65_536])
    codec = Float8Codec.for_unit_vectors(D_FIRST)
    pq = new_index(xr[:50_000], "float8", "flat", codec=codec)
    add_vectors(pq, xr, codec)
    sq = faiss.IndexScalarQuantizer(D_FIRST, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq.train(xr[:50_000])
    sq.add(xr)
    codes = faiss.vector_to_array(pq.codes).reshape(n, D_FIRST)  # (n, p) uint8 float8 bytes
    del xr
    qr = pca.transform(xq[:nq_batch])  # (nq, p)
    out: dict[str, Any] = {"n": n, "dims": D_FIRST, "nq_batch": nq_batch, "threads": 2}

    def best_of(fn, reps: int = 3) -> float:
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - t0)
        return min(ts)

    gb_batch = nq_batch * n * D_FIRST / 1e9
    for name, index in (("float8_pq", pq), ("sq8", sq)):
        t = best_of(lambda: index.search(qr, k))
        faiss.omp_set_num_threads(1)
        t1 = best_of(lambda: [index.search(qr[i : i + 1], k) for i in range(16)], 2) / 16
        faiss.omp_set_num_threads(2)
        out[name] = {"batch_s": t, "batch_s_per_GB": t / gb_batch, "single_query_ms": t1 * 1e3,
                     "single_s_per_GB": t1 / (n * D_FIRST / 1e9)}
    out["ratio_float8_over_sq8_batch"] = out["float8_pq"]["batch_s"] / out["sq8"]["batch_s"]
    out["ratio_float8_over_sq8_single"] = out["float8_pq"]["single_query_ms"] / out["sq8"]["single_query_ms"]

    # prototype 1: the same IndexPQ split into 2 threaded shards, so a single query uses both cores
    shards = faiss.IndexShards(D_FIRST, True, True)
    halves = []
    for lo, hi in ((0, n // 2), (n // 2, n)):
        h = new_index(qr, "float8", "flat", codec=codec)
        h.add_sa_codes(np.ascontiguousarray(codes[lo:hi]))
        halves.append(h)
        shards.add_shard(h)
    faiss.omp_set_num_threads(1)  # each shard scans in its own std::thread
    t1 = best_of(lambda: [shards.search(qr[i : i + 1], k) for i in range(16)], 2) / 16
    faiss.omp_set_num_threads(2)
    out["proto_float8_2shards"] = {"single_query_ms": t1 * 1e3, "speedup_vs_float8_pq": out["float8_pq"]["single_query_ms"] / (t1 * 1e3)}
    assert np.array_equal(np.sort(shards.search(qr[:4], k)[0], 1), np.sort(pq.search(qr[:4], k)[0], 1))

    # prototype 2: batches decode float8 blocks with the table (scale folded into the query) and use BLAS
    table = FLOAT8_VALUES  # (256,) float32
    qs = (qr * codec.scale).astype(np.float32)  # (nq, p)

    def gemm_scan(block: int = 32_768) -> tuple[np.ndarray, np.ndarray]:
        D = np.full((len(qs), k), -np.inf, np.float32)
        I = np.full((len(qs), k), -1, np.int64)
        for i0 in range(0, n, block):
            s = qs @ table[codes[i0 : i0 + block]].T  # (nq, b)
            top = np.argpartition(-s, k - 1, axis=1)[:, :k] if s.shape[1] > k else np.argsort(-s, 1)[:, :k]
            allD = np.concatenate([D, np.take_along_axis(s, top, 1)], 1)
            allI = np.concatenate([I, top + i0], 1)
            o = np.argsort(-allD, 1)[:, :k]
            D, I = np.take_along_axis(allD, o, 1), np.take_along_axis(allI, o, 1)
        return D, I

    t = best_of(gemm_scan)
    Dg, _ = gemm_scan()
    Dp, _ = pq.search(qr, k)
    out["proto_float8_decode_gemm"] = {"batch_s": t, "batch_s_per_GB": t / gb_batch,
                                       "ratio_vs_sq8_batch": t / out["sq8"]["batch_s"],
                                       "max_abs_score_diff_vs_pq": float(np.abs(np.sort(Dg, 1) - np.sort(Dp, 1)).max())}
    print(f"  scan: float8 {out['float8_pq']['batch_s_per_GB']:.3f} s/GB vs SQ8 {out['sq8']['batch_s_per_GB']:.3f} s/GB "
          f"(ratio {out['ratio_float8_over_sq8_batch']:.2f}); single {out['float8_pq']['single_query_ms']:.2f} vs "
          f"{out['sq8']['single_query_ms']:.2f} ms; 2 shards {t1 * 1e3:.2f} ms; decode+GEMM ratio {t / out['sq8']['batch_s']:.2f}", flush=True)
    return out


def rerank_precision(retr, xb: np.ndarray, xq: np.ndarray, gt: np.ndarray, k: int) -> dict[str, Any]:
    """Recall@k of the same first-stage candidates reranked with float8 (the library), float16 and float32
    full vectors, and of an exhaustive float8 scan (exact=True): where the recall ceiling comes from."""
    import faiss

    store = retr.store
    out: dict[str, Any] = {"queries": len(xq)}
    sq = faiss.ScalarQuantizer(xb.shape[1], faiss.ScalarQuantizer.QT_8bit)  # uniform int8, per-dim min/max: same 1 B/dim
    sq.train(xb[:100_000])
    for oversample in (8, 32):
        cand = store.index.search(store.pca.transform(xq), k * oversample)[1]  # (nq, c)
        for name, full in (("float8", None), ("sq8", "sq8"), ("float16", np.float16), ("float32", np.float32)):
            if full is None:
                I = retr.search_vectors(xq, k, oversample)[1]
            else:
                v = xb[np.where(cand >= 0, cand, 0).ravel()]  # (nq * c, d)
                v = sq.decode(sq.compute_codes(v)) if full == "sq8" else v.astype(full).astype(np.float32)
                v = v.reshape(*cand.shape, -1)  # (nq, c, d)
                sc = np.einsum("bcd,bd->bc", v, xq)
                I = np.take_along_axis(cand, np.argsort(-sc, 1)[:, :k], 1)
            out[f"oversample{oversample}_{name}_rerank_recall"] = recall_at_k(I, gt, k)
    out["exact_float8_scan_recall"] = recall_at_k(retr.search_vectors(xq, k, exact=True)[1], gt, k)
    print(f"  rerank precision: {out}", flush=True)
    return out


def rerank_compare(retr, xq: np.ndarray, k: int, oversample: int) -> dict[str, Any]:
    """rag.retrieve.rerank_full vs a prototype that folds the scale into the query (one pass fewer)."""
    from indexing.compress import FLOAT8_VALUES
    from rag.retrieve import rerank_full

    store = retr.store
    cand = store.index.search(store.pca.transform(xq), k * oversample)[1]  # (nq, c) first-stage candidates

    def rerank_fast(xq: np.ndarray, cand: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        nq, c = cand.shape
        valid = cand >= 0
        qs = xq * store.full_codec.scale  # (nq, d): scale folded into the query
        full = FLOAT8_VALUES[store.full[np.where(valid, cand, 0).ravel()]].reshape(nq, c, -1)  # (nq, c, d)
        scores = np.einsum("bcd,bd->bc", full, qs)  # (nq, c): no per-element scale multiply
        scores[~valid] = -np.inf
        order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
        D = np.take_along_axis(scores, order, 1)
        return D, np.where(np.isfinite(D), np.take_along_axis(cand, order, 1), -1)

    out = {}
    for label, q, c in (("batch", xq, cand), ("single", xq[:1], cand[:1])):
        reps = 3 if label == "batch" else 200
        for name, fn in (("rerank_full", lambda q, c: rerank_full(store, q, c, k)), ("proto_fast", lambda q, c: rerank_fast(q, c, k))):
            fn(q, c)
            t0 = time.perf_counter()
            for _ in range(reps):
                fn(q, c)
            out[f"{label}_{name}_ms"] = (time.perf_counter() - t0) * 1e3 / reps
        out[f"{label}_speedup"] = out[f"{label}_rerank_full_ms"] / out[f"{label}_proto_fast_ms"]
    Da, Ia = rerank_full(store, xq, cand, k)
    Db, Ib = rerank_fast(xq, cand, k)
    out["same_ids_fraction"] = float((Ia == Ib).mean())
    out["max_abs_score_diff"] = float(np.abs(Da - Db).max())
    # single-query breakdown of search_vectors
    q1 = xq[:1]
    parts = {}
    for name, fn in (("pca_transform", lambda: store.pca.transform(q1)),
                     ("first_stage_search", lambda: store.index.search(store.pca.transform(q1), k * oversample)),
                     ("search_vectors_total", lambda: retr.search_vectors(q1, k, oversample))):
        fn()
        t0 = time.perf_counter()
        for _ in range(50):
            fn()
        parts[name + "_ms"] = (time.perf_counter() - t0) * 1e3 / 50
    out["single_query_breakdown"] = parts
    print(f"  rerank: batch {out['batch_rerank_full_ms']:.1f} -> {out['batch_proto_fast_ms']:.1f} ms ({out['batch_speedup']:.2f}x), "
          f"single {out['single_rerank_full_ms']:.3f} -> {out['single_proto_fast_ms']:.3f} ms; breakdown {parts}", flush=True)
    return out


def run(n: int, k: int, skip: set[str], oversample: int, st_rm: int, efc: int, per_doc: int, tmp_root: str | None,
        max_queries: int | None = None) -> dict[str, Any]:
    import faiss

    faiss.omp_set_num_threads(2)
    tmp = Path(tempfile.mkdtemp(prefix=f"bench_scale_{n}_", dir=tmp_root))
    res: dict[str, Any] = {"n": n, "k": k, "oversample": oversample, "machine": machine(), "methods": {}}
    try:
        xq, kind = queries()
        lat_q = np.concatenate([xq[kind == 0][:100], xq[kind == 1][:100]])  # 200 single queries
        if max_queries and len(xq) > max_queries:  # half synthetic, half real SciFact
            keep = np.concatenate([np.flatnonzero(kind == 0)[: max_queries // 2], np.flatnonzero(kind == 1)[: max_queries - max_queries // 2]])
            xq, kind = np.ascontiguousarray(xq[keep]), kind[keep]
        res["queries"] = {"batch_and_recall": len(xq), "real_scifact": int(kind.sum()), "single_query_latency": len(lat_q)}
        m0 = proc_status()
        with Timeit(f"generating xb ({n} x 384)"):
            xb = make_xb(n)
        res["xb_rss_mib"] = proc_status()["rss"] - m0["rss"]
        train_n = min(n, 100_000)
        common = dict(xb=xb, xq=xq, kind=kind, lat_q=lat_q, k=k, train_n=train_n, oversample=oversample, tmp=tmp, st_rm=st_rm)

        row, obj, gt = measure("flat", build_flat, gt=None, **common)
        row.update(recall=1.0, recall_synthetic=1.0, recall_scifact=1.0)
        res["methods"]["flat"] = row
        del obj
        common["gt"] = gt
        plan = [("sq8", build_sq8, {}), ("pca_sq8_refine", build_pca_sq8_refine, {}), ("hnsw", build_hnsw, {"efc": efc}),
                ("st_uint8", build_st_uint8, {}), ("st_binary_int8", build_st_binary_int8, {}),
                ("st_binary_int8_rm8", build_st_binary_int8, {"st_rm": oversample}),
                ("ours_flat", build_ours, {"ann": "flat", "per_doc": per_doc}), ("ours_ivf", build_ours, {"ann": "ivf", "per_doc": per_doc}),
                ("ours_flat_sq8", build_ours, {"ann": "flat", "per_doc": per_doc, "dtype": "sq8"})]
        for name, build, extra in plan:
            if name.split("_rm")[0] in skip or name in skip:
                continue
            kw = {**common, **extra}
            row, obj, _ = measure(name, build, **kw)
            sub = np.arange(len(xq))
            if name == "ours_flat_sq8":
                row["note"] = "the library's existing dtype='sq8' first stage (same 96 B/vector), float8 full rerank"
            if name == "ours_flat":
                if "rerank" not in skip:
                    res["rerank"] = rerank_compare(obj["retriever"], xq, k, oversample)
                row["oversample_curve"] = oversample_curve(obj["retriever"], xq[sub], gt[sub], lat_q, k, xb)
                psub = sub if len(sub) <= 1000 or n <= 200_000 else sub[::2]
                res["rerank_precision"] = rerank_precision(obj["retriever"], xb, xq[psub], gt[psub], k)
                row["curve_queries"] = len(sub)
            if name == "ours_ivf":
                row["nprobe_curve"] = ivf_curve(obj["retriever"], xq[sub], gt[sub], lat_q, k, (oversample, 2 * oversample, 4 * oversample), xb)
                row["curve_queries"] = len(sub)
                ok = [c for c in row["nprobe_curve"] if c["recall"] >= 0.98]
                ok = sorted(ok, key=lambda c: c["p50_ms"])
                row["nprobe_for_recall_0.98"] = {"nprobe": ok[0]["nprobe"], "oversample": ok[0]["oversample"]} if ok else None
                ok16 = sorted([c for c in row["nprobe_curve"] if c["recall_float16_rerank_proto"] >= 0.98], key=lambda c: c["p50_ms"])
                row["float16_rerank_proto_best_at_0.98"] = ok16[0] if ok16 else None
                index = obj["retriever"].store.index
                if ok:  # single-query latency at that setting, and with probes scanned in parallel (parallel_mode=1)
                    index.nprobe = ok[0]["nprobe"]
                    obj["search"] = lambda q, r=obj["retriever"], o=ok[0]["oversample"]: r.search_vectors(q, k, o)[1]
                    row["at_recall_0.98"] = {"nprobe": ok[0]["nprobe"], "oversample": ok[0]["oversample"], "recall": ok[0]["recall"], **latency(obj["search"], lat_q)}
                    index.parallel_mode = 1
                    row["at_recall_0.98_parallel_mode_1_2threads"] = latency(obj["search"], lat_q, threads=2)
                    index.parallel_mode = 0
                    row["at_recall_0.98_2threads"] = latency(obj["search"], lat_q, threads=2)
            res["methods"][name] = row
            if name.startswith("ours"):
                obj["retriever"].store.close()
            del obj
            if name.startswith("ours"):
                shutil.rmtree(tmp / f"store_{extra['ann']}", ignore_errors=True)
            trim_heap()
        if "scan" not in skip:
            with Timeit("scan comparison"):
                res["scan"] = scan_compare(xb, xq, k)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["targets"] = targets(res)
    res["machine"]["loadavg_end"] = __import__("os").getloadavg()
    return res


def targets(res: dict[str, Any]) -> dict[str, Any]:
    m = res["methods"]
    flat = m["flat"]
    out: dict[str, Any] = {}
    for name in ("ours_flat", "ours_ivf"):
        if name not in m:
            continue
        r = m[name]
        p50 = r.get("at_recall_0.98", r)["p50_ms"]
        out[name] = {
            "single_query_speedup_p50": flat["p50_ms"] / p50, "target_10x": flat["p50_ms"] / p50 >= 10,
            "first_stage_ram_ratio": flat["first_stage_bytes"] / r["first_stage_bytes"], "target_12x": flat["first_stage_bytes"] / r["first_stage_bytes"] >= 12,
            "recall": r.get("at_recall_0.98", r)["recall"], "setting": {k2: r.get("at_recall_0.98", r).get(k2) for k2 in ("nprobe", "oversample")},
        }
        out[name]["target_recall_0.98"] = out[name]["recall"] >= 0.98
    if "scan" in res:
        out["scan_float8_over_sq8_per_byte"] = res["scan"]["ratio_float8_over_sq8_batch"]
        out["target_scan_1.2x"] = res["scan"]["ratio_float8_over_sq8_batch"] <= 1.2
    return out


def print_table(res: dict[str, Any]) -> None:
    m = res["methods"]
    flat = m["flat"]
    print(f"\nn={res['n']} k={res['k']}  (ratios vs float32 flat from this run; single-query latency with 1 FAISS thread, batch with 2)")
    hdr = f"{'method':22s} {'B/vec 1st':>9s} {'B/vec qt':>9s} {'RSS+MiB':>8s} {'recall':>7s} {'p50 ms':>8s} {'p95 ms':>8s} {'x p50':>6s} {'ms/q bat':>9s} {'build s':>8s}"
    print(hdr)
    for name, r in m.items():
        print(f"{name:22s} {r['first_stage_bytes']:9.0f} {r['query_time_bytes']:9.0f} {r['rss_delta_mib']:8.0f} {r.get('recall', 1):7.4f} "
              f"{r['p50_ms']:8.2f} {r['p95_ms']:8.2f} {flat['p50_ms'] / r['p50_ms']:6.1f} {r['batch_ms_per_query']:9.3f} {r['build_s']:8.1f}")
    if "ours_ivf" in m and m["ours_ivf"].get("nprobe_curve"):
        print("ours_ivf nprobe curve (nlist=%s):" % m["ours_ivf"]["nlist"])
        for c in m["ours_ivf"]["nprobe_curve"]:
            print(f"  oversample={c['oversample']:3d} nprobe={c['nprobe']:4d} recall={c['recall']:.4f} f16-rerank={c['recall_float16_rerank_proto']:.4f} p50={c['p50_ms']:.2f}ms p95={c['p95_ms']:.2f}ms batch={c['batch_ms_per_query']:.3f}ms/q")
    if "ours_flat" in m and m["ours_flat"].get("oversample_curve"):
        print("ours_flat oversample curve:")
        for c in m["ours_flat"]["oversample_curve"]:
            print(f"  oversample={c['oversample']:3d} recall={c['recall']:.4f} f16-rerank={c['recall_float16_rerank_proto']:.4f} p50={c['p50_ms']:.2f}ms p95={c['p95_ms']:.2f}ms batch={c['batch_ms_per_query']:.3f}ms/q")
    print("targets:", res["targets"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, action="append", help="corpus size (repeatable); default 100000")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json", help="write results here (one size) or use {n} in the name")
    ap.add_argument("--skip", default="", help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--oversample", type=int, default=None, help="default: rag.retrieve.DEFAULT_OVERSAMPLE")
    ap.add_argument("--st-rescore-multiplier", type=int, default=4, help="4 as in the sentence-transformers demo")
    ap.add_argument("--hnsw-efc", type=int, default=40, help="HNSW efConstruction (faiss default 40)")
    ap.add_argument("--chunks-per-doc", type=int, default=20)
    ap.add_argument("--max-queries", type=int, default=None, help="batched/recall queries (half synthetic, half SciFact); default all 2109")
    ap.add_argument("--tmp", default=None, help="folder for temporary stores (default: system temp)")
    args = ap.parse_args()
    from rag.retrieve import DEFAULT_OVERSAMPLE

    for n in args.n or [100_000]:
        res = run(n, args.k, {s for s in args.skip.split(",") if s}, args.oversample or DEFAULT_OVERSAMPLE,
                  args.st_rescore_multiplier, args.hnsw_efc, args.chunks_per_doc, args.tmp, args.max_queries)
        res["command"] = " ".join(__import__("sys").argv)
        print_table(res)
        if args.json:
            write_json(args.json.replace("{n}", str(n)) if "{n}" in args.json or len(args.n or [1]) == 1 else
                       Path(args.json).with_name(f"scale_{n}.json"), res)


if __name__ == "__main__":
    main()
