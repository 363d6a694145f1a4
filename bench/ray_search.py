"""Sharded search on a local Ray (segments spread over 2 actors) against one process, same store.

    python -m bench.ray_search [--n 200000] [--segments 4] [--queries 300] [--json bench/results/ray_search_200000.json]

Store: ``--n`` chunks in ``--segments`` commits written by the product's ``StoreWriter``
(``bench.segments.write``: vectors drawn from the Gaussian fit of MiniLM embeddings, real keyword
index). Queries: ``--queries`` unit vectors from the same distribution (another seed). Single
queries, k = 10, oversample 16: ``indexing.search.search`` in this process, then the same query
through ``ShardedSearch`` (2 actors on a local Ray, ``indexing.ray_search``), query by query
(``bench.common.paired_latency``), so load drift hits both alike. Also checks that both return
the same rows for every query.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.common import machine, paired_latency, write_json
from bench.segments import write
from bench.vectors import iter_xb


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from indexing.ray_cluster import RayOptions
    from indexing.ray_search import ShardedSearch
    from indexing.search import search
    from indexing.store import Store

    xq = next(iter_xb(args.queries, seed=991))[: args.queries]  # (nq, 384)
    with tempfile.TemporaryDirectory(prefix="ray-search-") as tmp:
        path = Path(tmp) / "store"
        write(path, args.n, args.segments)
        store = Store.open(path, verify=False)
        sharded = ShardedSearch(store, RayOptions(), shards=args.shards)
        try:
            same = all(np.array_equal(search(store, xq[i : i + 1], 10, 16)[1], sharded.search(xq[i : i + 1], 10, 16)[1])
                       for i in range(len(xq)))
            stats = paired_latency(lambda q: sharded.search(q, 10, 16), lambda q: search(store, q, 10, 16), xq)
        finally:
            sharded.close()
            store.close()
    out = {"n": args.n, "segments": args.segments, "shards": args.shards, "queries": args.queries, "same_rows": same,
           "single_p50_ms": stats["flat_p50_ms"], "sharded_p50_ms": stats["p50_ms"], "sharded_p95_ms": stats["p95_ms"],
           "added_p50_ms": stats["p50_ms"] - stats["flat_p50_ms"], "machine": machine(),
           "command": f"python -m bench.ray_search --n {args.n} --segments {args.segments} --queries {args.queries}"}
    print(out)
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
