"""Indexing throughput on a local Ray (1 and 2 embedding workers) against one process, same corpus.

    python -m bench.ray_index [--docs 1500] [--rounds 2] [--json bench/results/ray_index.json]

Corpus: the first ``--docs`` SciFact abstracts, each written as ``<id>.txt`` (title, blank line,
abstract). Every run is a whole ``index_paths`` into a new store with the bundled MiniLM model and
``--embed-backend auto`` (OpenVINO from 256 chunks), as ``rag index`` does: model load and
conversion (once per process, or once per Ray actor) included. The three configurations take
turns, round after round (``single``, ``ray-1``, ``ray-2``, ``single``, ...), so load from other
jobs on the machine falls on all of them; throughput is chunks / summed seconds, and the ratios
come from this one run. Ray runs inside one local Ray session (as on a cluster that is already
up); the session's start-up and shutdown are timed apart and added for a "cold" figure (what a
one-off ``rag index --ray`` costs). Each run also records the store's chunk count, so all three
must agree.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import machine, write_json
from bench.vectors import SCIFACT


def write_corpus(folder: Path, n_docs: int) -> int:
    """The first ``n_docs`` SciFact abstracts as text files; returns how many were written."""
    folder.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(SCIFACT / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if n == n_docs:
                break
            doc = json.loads(line)
            (folder / f"{doc['_id']}.txt").write_text(f"{doc['title']}\n\n{doc['text']}\n", encoding="utf-8")
            n += 1
    return n


def one_run(docs: Path, work: Path, workers: int | None) -> dict[str, Any]:
    """Index ``docs`` into a new store (on Ray with ``workers`` actors, or in this process)."""
    from indexing.build import index_paths
    from indexing.ray_cluster import RayOptions

    store = Path(tempfile.mkdtemp(prefix="store-", dir=work))
    t0 = time.perf_counter()
    report = index_paths([docs], store, ray=RayOptions(workers=workers) if workers else None)
    seconds = time.perf_counter() - t0
    shutil.rmtree(store)
    return {"seconds": seconds, "chunks": report.chunks, "files": len(report.added),
            "embedded_with": report.embed_backend, "loadavg": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default="bench/results/ray_index.json")
    args = parser.parse_args()
    from indexing.ray_cluster import RayOptions, ray_session

    configs = {"single": None, "ray-1": 1, "ray-2": 2}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in configs}
    info: dict[str, Any] = {"machine": machine(), "docs": args.docs, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="ray-bench-") as tmp:
        work = Path(tmp)
        info["docs"] = write_corpus(work / "docs", args.docs)
        t0 = time.perf_counter()
        session = ray_session(RayOptions())
        session.__enter__()
        info["ray_start_s"] = time.perf_counter() - t0
        try:
            for r in range(args.rounds):
                for name, workers in configs.items():
                    run = one_run(work / "docs", work, workers)
                    runs[name].append(run)
                    print(f"round {r} {name:>6}: {run['chunks']} chunks in {run['seconds']:.1f} s "
                          f"({run['chunks'] / run['seconds']:.1f} chunks/s, {run['embedded_with']})", flush=True)
        finally:
            t0 = time.perf_counter()
            session.__exit__(None, None, None)
            info["ray_stop_s"] = time.perf_counter() - t0
    chunks = {run["chunks"] for rs in runs.values() for run in rs}
    assert len(chunks) == 1, f"the configurations built different stores: {chunks}"
    summary = {}
    for name, rs in runs.items():
        total = sum(run["seconds"] for run in rs)
        summary[name] = {"chunks_per_s": rs[0]["chunks"] * len(rs) / total, "seconds_per_run": total / len(rs)}
    cold = info["ray_start_s"] + info["ray_stop_s"]
    for name in ("ray-1", "ray-2"):
        s = summary[name]
        s["ratio_to_single"] = s["chunks_per_s"] / summary["single"]["chunks_per_s"]
        s["cold_seconds_per_run"] = s["seconds_per_run"] + cold
        s["cold_ratio_to_single"] = summary["single"]["seconds_per_run"] / s["cold_seconds_per_run"]
    info.update(chunks=chunks.pop(), runs=runs, summary=summary, loadavg_end=os.getloadavg())
    print(json.dumps(summary, indent=2))
    write_json(args.json, info)


if __name__ == "__main__":
    main()
