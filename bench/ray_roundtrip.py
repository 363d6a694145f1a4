"""The fixed Ray cost of one sharded query: two local actors answering at once, no search work.

    python -m bench.ray_roundtrip [--calls 300] [--idle-s 10] [--json bench/results/ray_roundtrip.json]

Each actor returns candidates shaped like a shard's (k = 10, oversample 16: three (1, 160) arrays)
for a (1, 384) query, in three ways, interleaved call by call (each after 5 ms idle):
- ``numpy``: the query and the three arrays as numpy objects (Ray pickles them with out-of-band
  buffers), as ``ShardedSearch`` did first;
- ``bytes``: one bytes message each way (``indexing.ray_search.pack_query`` / ``pack_candidates``),
  as ``ShardedSearch`` does now;
- ``compiled``: the same bytes through a Ray Compiled Graph (``InputNode`` -> both actors ->
  ``MultiOutputNode``, ``experimental_compile()``; shared-memory channels).
Then the CPU the two actors burn while idle for ``--idle-s`` seconds, with ordinary actors and
with the compiled graph set up (its actors wait on their input channels).
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

import numpy as np

from bench.common import machine, write_json

C = 160


class Echo:
    """Answers like a shard without searching."""

    def numpy(self, xq: np.ndarray, c: int) -> tuple[np.ndarray, ...]:
        n = len(xq)
        return np.zeros((n, c), np.float32), np.zeros((n, c), np.int64), np.zeros((n, c), np.float32)

    def bytes(self, msg: bytes) -> bytes:
        from indexing.ray_search import pack_candidates, unpack_query

        xq, c = unpack_query(msg)
        return pack_candidates(*self.numpy(xq, c))

    def pid(self) -> int:
        return os.getpid()


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu_percent(pids: list[int], seconds: float) -> list[float]:
    time.sleep(1.0)
    before = [cpu_s(p) for p in pids]
    time.sleep(seconds)
    return [100 * (cpu_s(p) - b) / seconds for p, b in zip(pids, before)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from ray.dag import InputNode, MultiOutputNode

    from indexing.ray_cluster import RayOptions, ray_session
    from indexing.ray_search import pack_query, unpack_candidates

    out: dict[str, Any] = {"machine": machine()}
    with ray_session(RayOptions()) as ray:
        actors = [ray.remote(num_cpus=0)(Echo).remote() for _ in range(2)]
        pids = ray.get([a.pid.remote() for a in actors])
        out["idle_cpu_percent_plain"] = idle_cpu_percent(pids, args.idle_s)
        with InputNode() as inp:
            dag = MultiOutputNode([a.bytes.bind(inp) for a in actors])
        graph = dag.experimental_compile()
        try:
            xq = np.random.default_rng(0).standard_normal((1, 384)).astype(np.float32)
            calls = {
                "numpy": lambda: ray.get([a.numpy.remote(xq, C) for a in actors]),
                "bytes": lambda: [unpack_candidates(m) for m in ray.get([a.bytes.remote(pack_query(xq, C)) for a in actors])],
                "compiled": lambda: [unpack_candidates(m) for m in ray.get(graph.execute(pack_query(xq, C)))],
            }
            for call in calls.values():
                for _ in range(20):
                    call()
            t = {name: np.empty(args.calls) for name in calls}
            load = os.getloadavg()
            for i in range(args.calls):
                for name, call in calls.items():
                    time.sleep(0.005)
                    t0 = time.perf_counter()
                    call()
                    t[name][i] = (time.perf_counter() - t0) * 1e3
            out["loadavg_during"] = [load, os.getloadavg()]
            for name, ms in t.items():
                out[f"{name}_p50_ms"], out[f"{name}_p95_ms"] = float(np.percentile(ms, 50)), float(np.percentile(ms, 95))
            out["idle_cpu_percent_compiled"] = idle_cpu_percent(pids, args.idle_s)
        finally:
            graph.teardown()
    out["command"] = f"python -m bench.ray_roundtrip --calls {args.calls} --idle-s {args.idle_s:g}"
    print(out)
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
