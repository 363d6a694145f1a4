"""Sharded search on a local Ray (segments spread over 2 actors) against one process, same store.

    python -m bench.ray_search [--n 200000] [--segments 4] [--queries 300] [--rounds 3] [--gap-ms 30]
                               [--store DIR] [--json bench/results/ray_search_200000.json]

Store: ``--n`` chunks in ``--segments`` commits written by the product's ``StoreWriter``
(``bench.segments.write``: vectors drawn from the Gaussian fit of MiniLM embeddings, real keyword
index); ``--store DIR`` keeps it there and reuses it on the next run. Queries: ``--queries`` unit
vectors from the same distribution (another seed). Single queries, k = 10, oversample 16:
``indexing.search.search`` in this process and the same query through ``ShardedSearch`` (actors on
a local Ray, ``indexing.ray_search``), interleaved query by query in ``--rounds`` rounds (the order
within a pair alternates), so load drift hits both alike; the load average is recorded per round.

Two ways of pairing, both reported:
- ``idle``: each timed query starts after ``--gap-ms`` of idle time. The float8 kernel's OpenMP
  threads spin after every query (libgomp's default wait policy) for several CPU-ms
  (``driver_spin_cpu_ms``: this process's CPU time during the gap after a single-process query);
  with no gap that spin lands on the next query, so the sharded query would pay for the
  baseline's spin on a 2-core machine. A driver that only serves sharded queries never spins.
- ``back_to_back``: no gap (how the first version of this script paired them).

Also per round: ``roundtrip_p50_ms``, a no-op call to every shard (``_Shard.pid``) and its
``ray.get``: the fixed Ray cost per query; and batched throughput (``--batch`` queries in one call).
Both paths must return the same rows and scores for every query (checked).
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import machine, write_json
from bench.segments import write
from bench.vectors import iter_xb


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def timed_round(calls: list[Callable[[np.ndarray], Any]], xq: np.ndarray, gap: float, flip: int) -> tuple[np.ndarray, np.ndarray]:
    """Every query through every call, each after ``gap`` s idle; the order of calls 0 and 1
    alternates. ms (nq, len(calls)), and this process's CPU ms during the gap after call 0."""
    t = np.empty((len(xq), len(calls)))
    spin = np.full(len(xq), np.nan)
    for i in range(len(xq)):
        q = xq[i : i + 1]
        order = ([0, 1] if (i + flip) % 2 == 0 else [1, 0]) + list(range(2, len(calls)))
        for n, j in enumerate(order):
            c0 = cpu_s()
            time.sleep(gap)
            if n and order[n - 1] == 0:
                spin[i] = (cpu_s() - c0) * 1e3
            t0 = time.perf_counter()
            calls[j](q)
            t[i, j] = (time.perf_counter() - t0) * 1e3
    return t, spin


def batch_qps(call: Callable[[np.ndarray], Any], xq: np.ndarray, reps: int = 3) -> float:
    best = np.inf
    for _ in range(reps):
        t0 = time.perf_counter()
        call(xq)
        best = min(best, time.perf_counter() - t0)
    return len(xq) / best


def p50(x: np.ndarray) -> float:
    return float(np.percentile(x, 50))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--shards", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--gap-ms", type=float, default=30.0)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--store", default=None, help="keep the store here (reused when it exists)")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    xq = next(iter_xb(max(args.queries, args.batch), seed=991))  # (nq, 384)
    with tempfile.TemporaryDirectory(prefix="ray-search-") as tmp:
        path = Path(args.store) if args.store else Path(tmp) / "store"
        if not (path / "manifest.json").exists():
            write(path, args.n, args.segments)
        out = run(path, xq, args)
    print({k: v for k, v in out.items() if k != "rounds"})
    if args.json:
        write_json(args.json, out)


def run(path: Path, xq_all: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    from indexing.ray_cluster import RayOptions
    from indexing.ray_search import ShardedSearch
    from indexing.search import search
    from indexing.store import Store

    xq = xq_all[: args.queries]
    store = Store.open(path, verify=False)
    assert sum(s.rows for s in store.segments) == args.n and len(store.segments) == args.segments, f"{path} holds another store"
    info = machine()
    sharded = ShardedSearch(store, RayOptions(), shards=args.shards)
    single = lambda q: search(store, q, 10, 16)  # noqa: E731
    shard = lambda q: sharded.search(q, 10, 16)  # noqa: E731
    noop = lambda q: sharded.ray.get([a.pid.remote() for a in sharded.actors])  # noqa: E731
    rounds = []
    try:
        threads = sharded.ray.get([a.threads.remote() for a in sharded.actors])
        same = True
        for i in range(len(xq)):
            (D, I), (Ds, Is) = single(xq[i : i + 1]), shard(xq[i : i + 1])
            same &= bool(np.array_equal(I, Is) and np.allclose(D, Ds, rtol=1e-6))
        for r in range(args.rounds):
            load = os.getloadavg()
            t, spin = timed_round([single, shard, noop], xq, args.gap_ms / 1e3, r)
            b2b, _ = timed_round([single, shard], xq, 0.0, r)
            qps_single, qps_sharded = batch_qps(single, xq_all[: args.batch]), batch_qps(shard, xq_all[: args.batch])
            rounds.append({
                "loadavg_1min": load[0], "single_p50_ms": p50(t[:, 0]), "sharded_p50_ms": p50(t[:, 1]),
                "sharded_p95_ms": float(np.percentile(t[:, 1], 95)), "added_p50_ms": p50(t[:, 1]) - p50(t[:, 0]),
                "ratio_p50": p50(t[:, 1]) / p50(t[:, 0]), "roundtrip_p50_ms": p50(t[:, 2]), "driver_spin_cpu_ms": float(np.nanpercentile(spin, 50)),
                "back_to_back_single_p50_ms": p50(b2b[:, 0]), "back_to_back_sharded_p50_ms": p50(b2b[:, 1]),
                "back_to_back_added_p50_ms": p50(b2b[:, 1]) - p50(b2b[:, 0]),
                "batch_qps_single": qps_single, "batch_qps_sharded": qps_sharded})
            print(rounds[-1], flush=True)
    finally:
        sharded.close()
        store.close()
    med = lambda key: float(np.median([r[key] for r in rounds]))  # noqa: E731
    return {"n": args.n, "segments": args.segments, "shards": args.shards, "shard_threads": threads, "queries": args.queries,
            "gap_ms": args.gap_ms, "same_rows_and_scores": same, "rounds": rounds,
            **{f"median_{k}": med(k) for k in ("single_p50_ms", "sharded_p50_ms", "added_p50_ms", "ratio_p50", "roundtrip_p50_ms",
                                               "driver_spin_cpu_ms", "back_to_back_added_p50_ms", "batch_qps_single",
                                               "batch_qps_sharded", "loadavg_1min")},
            "machine": info, "loadavg_end": os.getloadavg(),
            "command": f"python -m bench.ray_search --n {args.n} --segments {args.segments} --queries {args.queries} "
                       f"--rounds {args.rounds} --gap-ms {args.gap_ms:g}"}


if __name__ == "__main__":
    main()
