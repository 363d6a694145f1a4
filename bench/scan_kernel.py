"""The float8 first-stage scan per byte: our C kernel vs FAISS's IndexPQ table scan vs FAISS SQ8.

    python -m bench.scan_kernel [--n 1000000] [--dims 96] [--json bench/results/scan_kernel.json]

All three scan the same n x dims codes (1 byte per dimension) with 2 threads, no rerank; the
timings are interleaved round by round so machine load hits every method alike. Reports time per
GB scanned and the ratios to SQ8 (target: float8 within 1.2x of SQ8 per byte).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import write_json


def main() -> None:
    import faiss

    from indexing.compress import Float8Codec
    from indexing.first_stage import add_vectors, new_index
    from indexing.float8_scan import float8_search, kernel_available

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--dims", type=int, default=96)
    ap.add_argument("--k", type=int, default=160, help="candidates kept per query (k * oversample)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", default="bench/results/scan_kernel.json")
    args = ap.parse_args()
    assert kernel_available(), "build the extension first: pip install -e ."
    faiss.omp_set_num_threads(2)
    rng = np.random.default_rng(0)
    n, p = args.n, args.dims
    xr = rng.standard_normal((n, p), dtype=np.float32) * np.linspace(1.0, 0.1, p, dtype=np.float32)  # (n, p)
    xr /= np.linalg.norm(xr, axis=1, keepdims=True)
    codec = Float8Codec.for_unit_vectors(p)
    pq = new_index(xr[:1000], "float8", "flat", codec=codec)
    add_vectors(pq, xr, codec)
    sq = faiss.IndexScalarQuantizer(p, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    sq.train(xr[:100_000])
    sq.add(xr)
    del xr
    xq = rng.standard_normal((128, p), dtype=np.float32)  # (nq, p)
    methods = {
        "float8 C kernel": lambda q: float8_search(pq, codec, q, args.k),
        "float8 FAISS IndexPQ": lambda q: pq.search(q, args.k),
        "FAISS SQ8": lambda q: sq.search(q, args.k),
    }
    D0, I0 = methods["float8 C kernel"](xq[:8])
    D1, I1 = methods["float8 FAISS IndexPQ"](xq[:8])
    assert np.allclose(D0, D1, atol=1e-5), "kernel and IndexPQ disagree"
    single: dict[str, list[float]] = {m: [] for m in methods}
    batch: dict[str, list[float]] = {m: [] for m in methods}
    for _ in range(args.rounds):
        for name, search in methods.items():
            for i in range(8):
                t0 = time.perf_counter()
                search(xq[i : i + 1])
                single[name].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            search(xq)
            batch[name].append((time.perf_counter() - t0) / len(xq))
    gb = n * p / 1e9
    rows = {}
    for name in methods:
        s, b = float(np.median(single[name])), float(np.median(batch[name]))
        rows[name] = {"single_query_ms": s * 1e3, "single_s_per_GB": s / gb, "batch_ms_per_query": b * 1e3, "batch_s_per_GB": b / gb}
    sq8 = rows["FAISS SQ8"]
    for r in rows.values():
        r["single_vs_sq8"] = r["single_query_ms"] / sq8["single_query_ms"]
        r["batch_vs_sq8"] = r["batch_ms_per_query"] / sq8["batch_ms_per_query"]
    print(f"n={n} dims={p} k={args.k} threads=2 (medians of {args.rounds} interleaved rounds)")
    print(f"{'method':<22}{'1 query ms':>11}{'s/GB':>8}{'x SQ8':>7}{'batch ms/q':>12}{'s/GB':>8}{'x SQ8':>7}")
    for name, r in rows.items():
        print(f"{name:<22}{r['single_query_ms']:>11.2f}{r['single_s_per_GB']:>8.3f}{r['single_vs_sq8']:>7.2f}"
              f"{r['batch_ms_per_query']:>12.3f}{r['batch_s_per_GB']:>8.3f}{r['batch_vs_sq8']:>7.2f}")
    write_json(args.json, {"n": n, "dims": p, "k": args.k, "threads": 2, "rounds": args.rounds, "methods": rows,
                           "command": f"python -m bench.scan_kernel --n {n} --dims {p}"})


if __name__ == "__main__":
    main()
