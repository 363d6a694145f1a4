"""Small measuring helpers shared by the bench scripts: memory, timing, recall, JSON."""

from __future__ import annotations

import json
import os
import platform
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def proc_status() -> dict[str, float]:
    """This process's memory from /proc/self/status, in MiB: rss, anon (heap), file (mapped files)."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0]) / 1024.0
    return {"rss": out["VmRSS"], "anon": out.get("RssAnon", 0.0), "file": out.get("RssFile", 0.0), "hwm": out["VmHWM"]}


def peak_rss_mib() -> float:
    """ru_maxrss of this process (KiB on Linux) in MiB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def trim_heap() -> None:
    """Give freed heap back to the OS so RSS deltas measure what is still held (glibc only)."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass


class Timeit:
    """``with Timeit("training PCA") as t: ...`` then ``t.s`` seconds; prints when verbose."""

    def __init__(self, what: str, verbose: bool = True) -> None:
        self.what, self.verbose, self.s = what, verbose, 0.0

    def __enter__(self) -> Timeit:
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.s = time.perf_counter() - self.t0
        if self.verbose:
            print(f"  [{self.s:8.2f} s] {self.what}", flush=True)


def recall_at_k(I: np.ndarray, gt: np.ndarray, k: int) -> float:
    """Mean over queries of |I[:, :k] & gt[:, :k]| / k. I, gt: (nq, >=k) row ids; gt is complete."""
    from rag.evaluate import overlap_at_k

    return overlap_at_k(I[:, :k], gt[:, :k])


def per_query_ms(searches: Sequence[Callable[[np.ndarray], Any]], xq: np.ndarray, warmup: int = 5) -> np.ndarray:
    """Each query row through every search in turn, one call each: ms per call, (nq, len(searches)).

    FAISS runs with 1 OpenMP thread during the loop (then back to 2): a single query uses one
    thread in most FAISS indexes anyway, and on a loaded 2-core machine an idle second OpenMP
    thread waiting at a barrier turns a 2 ms search into 24 ms (measured)."""
    import faiss

    faiss.omp_set_num_threads(1)
    try:
        for i in range(min(warmup, len(xq))):
            for search in searches:
                search(xq[i : i + 1])
        t = np.empty((len(xq), len(searches)))
        for i in range(len(xq)):
            for j, search in enumerate(searches):
                t0 = time.perf_counter()
                search(xq[i : i + 1])
                t[i, j] = time.perf_counter() - t0
    finally:
        faiss.omp_set_num_threads(2)
    return t * 1e3


def _stats(t: np.ndarray) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(t, 50)), "p95_ms": float(np.percentile(t, 95)), "mean_ms": float(t.mean())}


def latency(search: Callable[[np.ndarray], Any], xq: np.ndarray, warmup: int = 5) -> dict[str, float]:
    """Single-query latency: p50/p95/mean in ms over the rows of xq."""
    return _stats(per_query_ms([search], xq, warmup)[:, 0])


def paired_latency(search: Callable[[np.ndarray], Any], baseline: Callable[[np.ndarray], Any], xq: np.ndarray,
                   warmup: int = 5) -> dict[str, float]:
    """Single-query latency of ``search`` measured query by query right after ``baseline`` on the
    same query, so load drift hits both alike: its p50/p95/mean, the baseline's p50, and
    ``speedup_p50`` = baseline p50 / search p50 from this one loop."""
    t = per_query_ms([baseline, search], xq, warmup)  # (nq, 2)
    flat_p50 = float(np.percentile(t[:, 0], 50))
    out = _stats(t[:, 1])
    return {**out, "flat_p50_ms": flat_p50, "speedup_p50": flat_p50 / out["p50_ms"]}


def machine() -> dict[str, Any]:
    import faiss

    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "faiss": faiss.__version__,
        "numpy": np.__version__,
        "faiss_compile": faiss.get_compile_options(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "loadavg_start": os.getloadavg(),
    }


def write_json(file: str | Path, obj: Any) -> None:
    file = Path(file)
    file.parent.mkdir(parents=True, exist_ok=True)
    tmp = file.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=float) + "\n")
    os.replace(tmp, file)
