"""Scale benchmark: our PCA+float8 store against FAISS and sentence-transformers peers.

For each corpus size ``n`` every method is built and measured in the same process, one after
the other (each freed before the next). The float32 flat index stays loaded throughout: it gives
the exact top-k, and every single-query latency is measured *paired* with it (flat, then the
method, query by query), so load drift on this shared 2-core machine hits both alike and the
speed-up is a ratio from the same loop.

    python -m bench.scale --n 1000000 --json bench/results/scale_1000000_v3.json
    python -m bench.scale --n 100000 --skip hnsw --json bench/results/scale_100000.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import Timeit, latency, machine, paired_latency, proc_status, recall_at_k, trim_heap, write_json
from bench.vectors import make_xb, queries

METHODS = ("flat", "sq8", "pca_sq8_refine", "hnsw", "st_uint8", "st_binary_int8", "ours_flat", "ours_flat_f16", "ours_ivf", "ours_ivf_f16")
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


def _write_store(xb: np.ndarray, store_dir: Path, ann: str, per_doc: int, full_dtype: str) -> dict[str, Any]:
    from indexing.chunk import Chunk, ChunkSettings
    from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter

    n, d = xb.shape
    with StoreWriter(store_dir, model="bench/gaussian-fit-of-all-MiniLM-L6-v2", dim=d, chunker=ChunkSettings(),
                          compression=CompressionSettings(ann=ann, full_dtype=full_dtype)) as w:
        for i0 in range(0, n, per_doc):
            path = f"/bench/doc{i0 // per_doc:07d}.txt"
            chunks = [Chunk(path, path[1:], "t", None, 16 * j, 16 * j + 16, f"chunk {i0 + j}") for j in range(min(per_doc, n - i0))]
            w.add(DocumentRecord(path, path[1:], "t", "0" * 64), chunks, xb[i0 : i0 + len(chunks)])
        return w.commit()


def build_ours(xb: np.ndarray, k: int, oversample: int, tmp: Path, ann: str, per_doc: int, full_dtype: str = "float8", **_: Any) -> dict[str, Any]:
    """A real store written by indexing.writer.StoreWriter, searched by rag.retrieve.Retriever."""
    from rag.retrieve import Retriever

    store_dir = tmp / f"store_{ann}_{full_dtype}"
    manifest = _write_store(xb, store_dir, ann, per_doc, full_dtype)
    trim_heap()
    retr = Retriever.open(store_dir, verify=True)
    seg, d = manifest.segments[0], xb.shape[1]  # one segment: the store was written in one go
    full_bytes = d * (1 if full_dtype == "float8" else 2)
    return {"search": lambda q: retr.search_vectors(q, k, oversample)[1], "keep": [retr], "retriever": retr, "store_dir": store_dir,
            "info": {"key": manifest.index_key + f" + {full_dtype} full rerank oversample={oversample}", "nprobe": seg.nprobe,
                     "nlist": seg.nlist, "first_stage_bytes": manifest.bytes_per_vector, "oversample": oversample,
                     "query_time_bytes": manifest.bytes_per_vector + full_bytes, "memmapped": f"{full_dtype} full vectors ({full_bytes} B/vector)",
                     "store_file_bytes": {name: meta.bytes for name, meta in {**manifest.basis[1], **seg.files}.items()}}}


# -- measuring -----------------------------------------------------------------------------------------
def measure(name: str, build, flat_search, xq: np.ndarray, kind: np.ndarray, gt: np.ndarray, lat_q: np.ndarray, k: int, **kw: Any):
    trim_heap()
    m0 = proc_status()
    with Timeit(f"{name}: build") as tb:
        obj = build(k=k, xq=xq, gt=gt, **kw)
    trim_heap()
    m1 = proc_status()
    with Timeit(f"{name}: batched search of {len(xq)} queries") as ts:
        I = obj["search"](xq)
    lat = paired_latency(obj["search"], flat_search, lat_q)
    m2 = proc_status()
    row = {"build_s": tb.s, "rss_delta_mib": m1["rss"] - m0["rss"], "anon_delta_mib": m1["anon"] - m0["anon"],
           "mapped_file_rss_after_search_mib": m2["file"] - m0["file"], "batch_ms_per_query": ts.s * 1e3 / len(xq), **lat,
           "recall": recall_at_k(I, gt, k), "recall_synthetic": recall_at_k(I[kind == 0], gt[kind == 0], k),
           "recall_scifact": recall_at_k(I[kind == 1], gt[kind == 1], k), **obj["info"]}
    print(f"  {name}: recall={row['recall']:.4f} p50={row['p50_ms']:.2f}ms (flat {row['flat_p50_ms']:.2f}, {row['speedup_p50']:.1f}x) "
          f"p95={row['p95_ms']:.2f}ms batch={row['batch_ms_per_query']:.3f}ms/q rss+={row['rss_delta_mib']:.0f}MiB", flush=True)
    return row, obj


def ours_curve(retr, flat_search, xq: np.ndarray, gt: np.ndarray, lat_q: np.ndarray, k: int, oversamples: tuple[int, ...]) -> list[dict[str, Any]]:
    """Recall and paired latency of our two-stage search over oversample (and nprobe for IVF)."""
    index = retr.store.segments[0].index
    nlist = int(getattr(index, "nlist", 0))
    nprobes = sorted({nlist // 16, nlist // 8, nlist // 4, nlist // 2} - {0}) if nlist else [0]
    out = []
    for nprobe in nprobes:
        if nprobe:
            index.nprobe = nprobe
        for oversample in oversamples:
            search = lambda q, o=oversample: retr.search_vectors(q, k, o)[1]  # noqa: E731
            t0 = time.perf_counter()
            I = search(xq)
            ms = (time.perf_counter() - t0) * 1e3 / len(xq)
            out.append({"nprobe": nprobe or None, "oversample": oversample, "recall": recall_at_k(I, gt, k), "batch_ms_per_query": ms,
                        **paired_latency(search, flat_search, lat_q[:100])})
            c = out[-1]
            print(f"    nprobe={nprobe} oversample={oversample:3d} recall={c['recall']:.4f} p50={c['p50_ms']:.2f}ms "
                  f"({c['speedup_p50']:.1f}x flat) batch={ms:.3f}ms/q", flush=True)
    if nlist:
        index.nprobe = retr.store.manifest.segments[0].nprobe
    return out


OURS = {"ours_flat": {"ann": "flat"}, "ours_flat_f16": {"ann": "flat", "full_dtype": "float16"},
        "ours_ivf": {"ann": "ivf"}, "ours_ivf_f16": {"ann": "ivf", "full_dtype": "float16"}}


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
        with Timeit(f"generating xb ({n} x 384)"):
            xb = make_xb(n)
        m0 = proc_status()
        with Timeit("flat: build") as tb:
            flat = build_flat(xb, k)
        m1 = proc_status()
        with Timeit(f"flat: batched search of {len(xq)} queries") as ts:
            gt = flat["search"](xq)
        res["methods"]["flat"] = {"build_s": tb.s, "rss_delta_mib": m1["rss"] - m0["rss"], "batch_ms_per_query": ts.s * 1e3 / len(xq),
                                  "recall": 1.0, **latency(flat["search"], lat_q), **flat["info"]}
        common = dict(flat_search=flat["search"], xb=xb, xq=xq, kind=kind, gt=gt, lat_q=lat_q, k=k, train_n=min(n, 100_000),
                      oversample=oversample, tmp=tmp, st_rm=st_rm, per_doc=per_doc)
        plan = [("sq8", build_sq8, {}), ("pca_sq8_refine", build_pca_sq8_refine, {}), ("hnsw", build_hnsw, {"efc": efc}),
                ("st_uint8", build_st_uint8, {}), ("st_binary_int8", build_st_binary_int8, {}),
                ("st_binary_int8_rm16", build_st_binary_int8, {"st_rm": 16}),
                *((name, build_ours, extra) for name, extra in OURS.items())]
        for name, build, extra in plan:
            if name.split("_rm")[0] in skip or name in skip:
                continue
            row, obj = measure(name, build, **{**common, **extra})
            if name in OURS:
                row["curve"] = ours_curve(obj["retriever"], flat["search"], xq, gt, lat_q, k, (8, 16, 32, 64))
                if name == "ours_flat":  # the float8 ceiling: every full vector scored, no first stage
                    sub = np.arange(0, len(xq), max(1, len(xq) // 200))
                    row["exhaustive_float8_recall"] = recall_at_k(obj["retriever"].search_vectors(xq[sub], k, exact=True)[1], gt[sub], k)
                obj["retriever"].store.close()
                shutil.rmtree(obj["store_dir"], ignore_errors=True)
            res["methods"][name] = row
            del obj
            trim_heap()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    res["targets"] = targets(res)
    res["machine"]["loadavg_end"] = os.getloadavg()
    return res


def targets(res: dict[str, Any]) -> dict[str, Any]:
    """Per ours row: the fastest curve point with recall@10 >= 0.98 (else the most accurate), vs flat."""
    m = res["methods"]
    out: dict[str, Any] = {}
    for name in OURS:
        if name not in m:
            continue
        curve = m[name]["curve"]
        ok = [c for c in curve if c["recall"] >= 0.98]
        best = min(ok, key=lambda c: c["p50_ms"]) if ok else max(curve, key=lambda c: c["recall"])
        out[name] = {"setting": {"nprobe": best["nprobe"], "oversample": best["oversample"]}, "recall": best["recall"],
                     "single_query_speedup_p50": best["speedup_p50"], "target_recall_0.98": best["recall"] >= 0.98,
                     "target_10x": best["speedup_p50"] >= 10,
                     "first_stage_ram_ratio": m["flat"]["first_stage_bytes"] / m[name]["first_stage_bytes"]}
        out[name]["target_12x"] = out[name]["first_stage_ram_ratio"] >= 12
    return out


def print_table(res: dict[str, Any]) -> None:
    m = res["methods"]
    print(f"\nn={res['n']} k={res['k']} (speed-ups: paired with float32 flat, query by query; FAISS 1 thread, our kernel 2)")
    print(f"| method | B/vec first stage | B/vec at query time | RSS+ MiB | recall@10 | p50 ms | p95 ms | speed-up p50 | batch ms/q | build s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name, r in m.items():
        print(f"| {r['key']} | {r['first_stage_bytes']:.0f} | {r['query_time_bytes']:.0f} | {r['rss_delta_mib']:.0f} | {r['recall']:.3f} | "
              f"{r['p50_ms']:.2f} | {r['p95_ms']:.2f} | {r.get('speedup_p50', 1.0):.1f} | {r['batch_ms_per_query']:.2f} | {r['build_s']:.0f} |")
    for name in OURS:
        if name in m:
            print(f"{name} curve:")
            for c in m[name]["curve"]:
                print(f"  nprobe={c['nprobe']} oversample={c['oversample']:3d} recall={c['recall']:.4f} p50={c['p50_ms']:.2f}ms "
                      f"({c['speedup_p50']:.1f}x) batch={c['batch_ms_per_query']:.3f}ms/q")
    print("targets:", json.dumps(res["targets"], indent=1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="corpus size")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json", help="write results here")
    ap.add_argument("--skip", default="", help=f"comma-separated subset of {','.join(METHODS)}")
    ap.add_argument("--oversample", type=int, default=None, help="of the ours rows; default: rag.retrieve.DEFAULT_OVERSAMPLE")
    ap.add_argument("--st-rescore-multiplier", type=int, default=4, help="4 as in the sentence-transformers demo")
    ap.add_argument("--hnsw-efc", type=int, default=40, help="HNSW efConstruction (faiss default 40)")
    ap.add_argument("--chunks-per-doc", type=int, default=100)
    ap.add_argument("--max-queries", type=int, default=None, help="batched/recall queries (half synthetic, half SciFact); default all 2109")
    ap.add_argument("--tmp", default=None, help="folder for temporary stores (default: system temp)")
    args = ap.parse_args()
    from rag.retrieve import DEFAULT_OVERSAMPLE

    res = run(args.n, args.k, {s for s in args.skip.split(",") if s}, args.oversample or DEFAULT_OVERSAMPLE,
              args.st_rescore_multiplier, args.hnsw_efc, args.chunks_per_doc, args.tmp, args.max_queries)
    res["command"] = " ".join(sys.argv)
    print_table(res)
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
