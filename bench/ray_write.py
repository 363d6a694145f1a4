"""The write path of ``rag index --ray`` alone: the driver's CPU when Ray actors write the segments,
against one process writing them (``StoreWriter.add``), same documents.

    python -m bench.ray_write [--chunks 100000] [--rounds 2] [--json bench/results/ray_write.json]

Documents of 4 chunks (40 words each from a 2,000-word vocabulary, so the FTS5 keyword index has
real work) with seeded random 384-d unit vectors, no embedding: what is timed is what follows it.
``single``: ``StoreWriter.add`` for every document, then ``commit``. ``ray``: the same documents
through ``indexing.ray_write``'s router (basis fitted on the driver on the first 50,000 vectors,
then segment writer actors), then ``commit``. For each: wall seconds, and the driver's CPU seconds
(``time.process_time``: all its threads, Ray's serialization included). The two take turns,
round after round, inside one local Ray session; every store must hold the same chunk count.
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

import numpy as np

from bench.common import machine, write_json

D, PER_DOC, WORDS = 384, 4, 40


def documents(n_chunks: int, seed: int = 0) -> list[tuple[Any, list[Any], np.ndarray]]:
    from indexing.chunk import Chunk
    from indexing.chunk_db import DocumentRecord

    rng = np.random.default_rng(seed)
    vocab = [f"w{i}x{rng.integers(1000)}" for i in range(2000)]
    out = []
    for d in range(n_chunks // PER_DOC):
        path = f"/bench/doc{d:07d}.txt"
        chunks = []
        for c in range(PER_DOC):
            text = " ".join(vocab[j] for j in rng.integers(0, len(vocab), WORDS))
            chunks.append(Chunk(path, f"doc{d}.txt", f"doc {d}", None, c * 400, c * 400 + len(text), text))
        x = rng.standard_normal((PER_DOC, D)).astype(np.float32)  # (4, d)
        out.append((DocumentRecord(path, f"doc{d}.txt", f"doc {d}", f"{d:064x}"), chunks, x / np.linalg.norm(x, axis=1, keepdims=True)))
    return out


def one_run(docs: list, work: Path, ray: Any | None) -> dict[str, Any]:
    from indexing.chunk import ChunkSettings
    from indexing.ray_write import _Router
    from indexing.writer import StoreWriter

    store = Path(tempfile.mkdtemp(prefix="store-", dir=work))
    wall, cpu = time.perf_counter(), time.process_time()
    with StoreWriter(store, "bench/random-384", D, ChunkSettings()) as writer:
        if ray is None:
            for doc, chunks, x in docs:
                writer.add(doc, chunks, x)
        else:
            router = _Router(ray, writer)
            try:
                for doc in docs:
                    router.add(*doc)
                router.finish()
            finally:
                router.close()
        before_commit = time.perf_counter()
        manifest = writer.commit()
    out = {"seconds": time.perf_counter() - wall, "driver_cpu_s": time.process_time() - cpu,
           "commit_s": time.perf_counter() - before_commit, "chunks": manifest.chunks,
           "segments": len(manifest.segments), "loadavg": os.getloadavg()[0]}
    shutil.rmtree(store)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default="bench/results/ray_write.json")
    args = parser.parse_args()
    from indexing.ray_cluster import RayOptions, ray_session

    docs = documents(args.chunks)
    runs: dict[str, list[dict[str, Any]]] = {"single": [], "ray": []}
    info: dict[str, Any] = {"machine": machine(), "chunks_asked": args.chunks, "rounds": args.rounds}
    with tempfile.TemporaryDirectory(prefix="ray-write-") as tmp, ray_session(RayOptions()) as ray:
        for r in range(args.rounds):
            for name in runs:
                run = one_run(docs, Path(tmp), ray if name == "ray" else None)
                runs[name].append(run)
                print(f"round {r} {name:>6}: {run['chunks']} chunks, {run['seconds']:.1f} s wall, "
                      f"driver CPU {run['driver_cpu_s']:.1f} s, commit {run['commit_s']:.1f} s", flush=True)
    chunks = {run["chunks"] for rs in runs.values() for run in rs}
    assert len(chunks) == 1, f"the runs wrote different stores: {chunks}"
    n = chunks.pop()
    summary = {name: {"wall_s": sum(r["seconds"] for r in rs) / len(rs),
                      "driver_cpu_us_per_chunk": 1e6 * sum(r["driver_cpu_s"] for r in rs) / len(rs) / n,
                      "commit_s": sum(r["commit_s"] for r in rs) / len(rs)} for name, rs in runs.items()}
    summary["ray"]["driver_cpu_ratio_to_single"] = summary["ray"]["driver_cpu_us_per_chunk"] / summary["single"]["driver_cpu_us_per_chunk"]
    summary["ray"]["wall_ratio_to_single"] = summary["ray"]["wall_s"] / summary["single"]["wall_s"]
    info.update(chunks=n, runs=runs, summary=summary, loadavg_end=os.getloadavg())
    print(json.dumps(summary, indent=2))
    write_json(args.json, info)


if __name__ == "__main__":
    main()
