"""Interleaved single-query latency: float32 flat vs our IVF float8 pipeline, query by query.

The big scale run shares the machine with other jobs whose load drifts over its 40 minutes; here
both searches answer the same query back to back (1 FAISS thread), so drift hits both alike.
Our pipeline is assembled from the library pieces the writer uses (fit_pca on 50k, new_index
IVF float8, float8 full vectors in RAM, rag.retrieve.rerank_full) without the SQLite store.

    python -m bench.latency_recheck --n 1000000 --nprobe 256 --oversample 32
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.common import recall_at_k, write_json
from bench.vectors import make_xb, queries


class _Full:
    """What rerank_full needs from a Store: n and decode_full, from float8 codes held in RAM."""

    def __init__(self, codes: np.ndarray, codec) -> None:  # type: ignore[no-untyped-def]
        self.full, self.full_codec, self.n = codes, codec, len(codes)

    def decode_full(self, rows: np.ndarray) -> np.ndarray:
        return self.full_codec.decode(self.full[np.asarray(rows, np.int64)])


def main() -> None:
    import faiss

    from indexing.compress import Float8Codec, fit_pca
    from indexing.first_stage import add_vectors, new_index
    from rag.retrieve import rerank_full

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--nprobe", type=int, action="append")
    ap.add_argument("--oversample", type=int, default=32)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--json")
    args = ap.parse_args()
    k = args.k
    xb = make_xb(args.n)
    xq, kind = queries()
    lat_q = np.concatenate([xq[kind == 0][:100], xq[kind == 1][:100]])  # (200, d)
    flat = faiss.IndexFlatIP(xb.shape[1])
    flat.add(xb)
    pca = fit_pca(xb[:50_000], dims=96)
    rc, fc = Float8Codec.for_unit_vectors(96), Float8Codec.for_unit_vectors(xb.shape[1])
    ivf = new_index(pca.transform(xb[:50_000]), "float8", "ivf", codec=rc)  # nlist from the 50k fit sample, as the writer does
    for i0 in range(0, len(xb), 65_536):
        add_vectors(ivf, pca.transform(xb[i0 : i0 + 65_536]), rc)
    full = _Full(np.concatenate([fc.encode(xb[i0 : i0 + 65_536]) for i0 in range(0, len(xb), 65_536)]), fc)
    faiss.omp_set_num_threads(1)
    gt = flat.search(lat_q, k)[1]
    res = {"n": args.n, "nlist": int(ivf.nlist), "oversample": args.oversample, "rows": []}
    for nprobe in args.nprobe or [128, 256]:
        ivf.nprobe = nprobe
        tf, to, I = [], [], []
        for i in range(len(lat_q)):
            q = lat_q[i : i + 1]
            t0 = time.perf_counter()
            flat.search(q, k)
            t1 = time.perf_counter()
            cand = ivf.search(pca.transform(q), k * args.oversample)[1]
            I.append(rerank_full(full, q, cand, k)[1][0])
            t2 = time.perf_counter()
            tf.append(t1 - t0)
            to.append(t2 - t1)
        row = {"nprobe": nprobe, "flat_p50_ms": float(np.median(tf) * 1e3), "ours_p50_ms": float(np.median(to) * 1e3),
               "flat_p95_ms": float(np.percentile(tf, 95) * 1e3), "ours_p95_ms": float(np.percentile(to, 95) * 1e3),
               "recall_200": recall_at_k(np.array(I), gt, k)}
        row["speedup_p50"] = row["flat_p50_ms"] / row["ours_p50_ms"]
        res["rows"].append(row)
        print(row, flush=True)
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
