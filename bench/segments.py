"""Segments at scale: what one small change costs against rewriting the whole store (what every
`rag index` run and chat upload cost before segments), search over 10 segments against one
compacted segment, and the memory of a compaction against the writer's.

Store: ``--n`` chunks (1M by default) written by the product's ``StoreWriter``: vectors from
``bench.vectors`` (a Gaussian fitted to MiniLM embeddings of SciFact), 10 chunks per document,
24 words per chunk drawn (seeded) from a 2,000-word vocabulary, so the keyword index is real.

Rounds (``--rounds``, interleaved so load drift hits all alike), each on the same store:
- add: open the store as an index run does (lazy, sizes checked) and commit one new 1-chunk file;
- delete: the same, deleting one 10-chunk file;
- rewrite: ``compact_store``, which copies every live chunk, code and vector into a new segment
  and rebuilds its keyword index: the work the pre-segment writer did on every run (it also read
  every kept row back), so it is the baseline of the ratios.
Bytes written = sizes of the files that are new after the step (folders + manifest).

Search: the same n rows written as 10 segments (10 commits) and as one (its compacted copy);
single-query ``Retriever.search_vectors`` (k=10, oversample 16; the float8 kernel and rerank)
paired query by query on 300 real SciFact claim embeddings.

Memory: peak RSS (VmHWM) of a child process compacting the 10-segment store, and of a child
process writing the 1M store (the writer) for comparison.

    python -m bench.segments --n 1000000 --json bench/results/segments_1000000.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.common import machine, paired_latency
from bench.vectors import iter_xb, scifact_queries
from indexing.chunk import Chunk, ChunkSettings
from indexing.store import Store
from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter, compact_store

MODEL, DIM, PER_DOC, WORDS = "bench/gaussian-fit-of-all-MiniLM-L6-v2", 384, 10, 24
VOCAB = np.array([f"w{i:04d}" for i in range(2000)])


def docs(n: int, start: int = 0, seed: int = 0):  # type: ignore[no-untyped-def]
    """Yield (record, chunks, vectors (m, d)) for n rows, 10 per document."""
    rng = np.random.default_rng(seed)
    row, doc = start, start // PER_DOC
    for xb in iter_xb(n, seed=seed + 1):
        for d0 in range(0, len(xb), PER_DOC):
            part = xb[d0 : d0 + PER_DOC]  # a batch boundary may cut a document short: it stays one path
            path = f"/bench/d{doc}.txt"
            doc += 1
            ids = rng.zipf(1.3, (len(part), WORDS)) % len(VOCAB)
            chunks = [Chunk(path, path, "", None, i, i + 1, " ".join(VOCAB[r])) for i, r in enumerate(ids)]
            yield DocumentRecord(path, path, "", f"sha{row}"), chunks, part
            row += len(part)


def write(path: Path, n: int, segments: int = 1) -> None:
    """An n-chunk store in ``segments`` commits."""
    per = n // segments
    for s in range(segments):
        base = Store.open(path, verify=False, lazy=True) if s else None
        settings = CompressionSettings(fit_sample=min(50_000, per))  # a basis fitted on enough rows: no refit between commits
        with StoreWriter(path, MODEL, DIM, ChunkSettings(), settings, base=base) as w:
            for rec, chunks, x in docs(per, s * per, seed=s):
                w.add(rec, chunks, x)
            w.commit()


def files(path: Path) -> dict[str, int]:
    return {str(f): f.stat().st_size for f in path.rglob("*") if f.is_file()}


def step(path: Path, what: str, i: int) -> dict[str, float]:
    """One change, timed; bytes of the files it created, and the store's own bytes before it."""
    before = files(path)
    with Store.open(path, verify=False, lazy=True) as s:
        store_bytes = s.store_bytes  # what the manifest names (not the previous state kept for readers)
    x = next(iter_xb(1, seed=1000 + i))  # (1, d): made before the clock starts
    t0 = time.perf_counter()
    if what == "rewrite":
        compact_store(path)
    else:
        base = Store.open(path, verify=False, lazy=True)  # as indexing.build opens its base
        with StoreWriter(path, MODEL, DIM, ChunkSettings(), base=base) as w:
            if what == "add":
                doc = f"/bench/new{i}.txt"
                w.add(DocumentRecord(doc, doc, "", f"new{i}"), [Chunk(doc, doc, "", None, 0, 1, "w0001 w0002 w0003")], x)
            else:
                w.delete({f"/bench/d{i}.txt"})
            w.commit()
        base.close()
    seconds = time.perf_counter() - t0
    after = files(path)
    written = sum(size for f, size in after.items() if before.get(f) != size or f.endswith("manifest.json"))
    return {"seconds": seconds, "bytes_written": written, "store_bytes": store_bytes}


def child_hwm(code: str) -> float:
    """Peak RSS in MiB of a child process running ``code``."""
    run = code + "\nprint(open('/proc/self/status').read().split('VmHWM:')[1].split()[0])"
    out = subprocess.run([sys.executable, "-c", run], capture_output=True, text=True, check=True).stdout.split()
    return int(out[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    out: dict = {"n": args.n, "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench_segments_") as tmp:
        one, ten = Path(tmp) / "one", Path(tmp) / "ten"
        out["writer_peak_rss_mib"] = child_hwm(f"from bench.segments import write; from pathlib import Path; write(Path({str(one)!r}), {args.n})")
        rounds = []
        for r in range(args.rounds):
            rounds.append({what: step(one, what, r) for what in ("add", "delete", "rewrite")})
            print(json.dumps(rounds[-1]), flush=True)
        out["rounds"] = rounds
        for what in ("add", "delete"):
            out[what] = {
                "bytes_share_of_store": float(np.median([r[what]["bytes_written"] / r[what]["store_bytes"] for r in rounds])),
                "time_ratio_to_rewrite": float(np.median([r[what]["seconds"] / r["rewrite"]["seconds"] for r in rounds])),
            }
        write(ten, args.n, segments=10)
        shutil.copytree(ten, Path(tmp) / "ten-copy")
        with Store.open(ten, verify=False) as s10:
            out["segments_written"] = len(s10.segments)
        out["compaction_peak_rss_mib"] = child_hwm(
            f"from indexing.writer import compact_store; compact_store({str(Path(tmp) / 'ten-copy')!r})")
        from rag.retrieve import Retriever

        xq = scifact_queries()[:300]  # (300, d) real claims embedded with MiniLM
        with Store.open(ten, verify=False) as s10, Store.open(Path(tmp) / "ten-copy", verify=False) as s1:
            r10, r1 = Retriever(s10), Retriever(s1)
            lat = paired_latency(lambda q: r10.search_vectors(q, 10), lambda q: r1.search_vectors(q, 10), xq)
            same = np.mean([np.array_equal(np.asarray([c.text for c in s10.chunks(r10.search_vectors(q[None], 10)[1][0].tolist())]),
                                           np.asarray([c.text for c in s1.chunks(r1.search_vectors(q[None], 10)[1][0].tolist())]))
                            for q in xq[:100]])
        out["search"] = {"ten_segments_p50_ms": lat["p50_ms"], "one_segment_p50_ms": lat["flat_p50_ms"],
                         "latency_ratio_p50": lat["p50_ms"] / lat["flat_p50_ms"], "same_top10_share": float(same)}
    print(json.dumps({k: v for k, v in out.items() if k not in ("rounds", "machine")}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
