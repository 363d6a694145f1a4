"""Peak RSS of indexing n chunks through ``indexing.writer.StoreWriter``, per corpus size.

Each size runs in a fresh subprocess (so ``ru_maxrss`` is that run's own peak). Chunks come
from a fast deterministic fake embedder (a text's blake2b digest gives 16 coefficients on a
fixed seeded basis: structure of intrinsic dimension 16 spread over 384 dims), so the
measurement is the store pipeline's memory, not a model's. The writer buffers
``CompressionSettings.fit_sample`` vectors to fit PCA, then streams; what should grow with
``n`` is only the first-stage codes held by the FAISS index (``bytes_per_vector``).

    python -m bench.index_memory --sizes 20000,50000,100000 --json bench/results/index_memory_v2.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DIM = 384


class FakeEmbedder:
    """Deterministic, model-free: unit vectors from each text's hash (no network, ~µs per text)."""

    model_id = "bench/fake-blake2b-16x384"
    dim = DIM

    def __init__(self, seed: int = 0) -> None:
        self.basis = np.random.default_rng(seed).standard_normal((16, DIM)).astype(np.float32)  # (16, d)

    def embed_documents(self, texts: Sequence[str]) -> np.ndarray:
        h = np.frombuffer(b"".join(hashlib.blake2b(t.encode(), digest_size=16).digest() for t in texts), np.uint8)
        c = h.reshape(len(texts), 16).astype(np.float32) - 127.5  # (n, 16)
        x = c @ self.basis  # (n, d)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def child(n: int, chunks_per_doc: int, embed_batch: int, ann: str, out: str) -> None:
    from bench.common import peak_rss_mib, proc_status
    from indexing.chunk import Chunk, ChunkSettings
    from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter

    import faiss  # noqa: F401 - imported before the baseline so its libraries count there

    emb = FakeEmbedder()
    emb.embed_documents(["warm up"])
    base = proc_status()
    t0 = time.perf_counter()
    rss_trace = []
    with tempfile.TemporaryDirectory(prefix="bench_index_memory_") as tmp:
        with StoreWriter(Path(tmp) / "store", emb.model_id, DIM, ChunkSettings(), CompressionSettings(ann=ann)) as w:
            for b0 in range(0, n, embed_batch):  # like indexing.build: embed a batch of chunks, add per document
                ids = range(b0, min(b0 + embed_batch, n))
                texts = [f"document {i // chunks_per_doc} chunk {i % chunks_per_doc}: " + "lorem ipsum dolor sit amet " * 7 for i in ids]
                x = emb.embed_documents(texts)  # (b, d)
                for j0 in range(0, len(texts), chunks_per_doc):
                    doc = f"/corpus/doc{(b0 + j0) // chunks_per_doc:07d}.txt"
                    part = texts[j0 : j0 + chunks_per_doc]
                    chunks = [Chunk(doc, doc[1:], "title", None, 200 * j, 200 * j + len(t), t) for j, t in enumerate(part)]
                    w.add(DocumentRecord(doc, doc[1:], "title", hashlib.sha256(doc.encode()).hexdigest()), chunks, x[j0 : j0 + len(part)])
                if (b0 // embed_batch) % 10 == 0:
                    rss_trace.append((b0, proc_status()["rss"]))
            manifest = w.commit()
        store_bytes = manifest.store_bytes
    result = {
        "n": n, "ann": ann, "seconds": time.perf_counter() - t0, "baseline_rss_mib": base["rss"],
        "peak_rss_mib": peak_rss_mib(), "peak_minus_baseline_mib": peak_rss_mib() - base["rss"],
        "bytes_per_vector": manifest.bytes_per_vector, "index_key": manifest.index_key,
        "store_bytes": store_bytes, "rss_trace_mib": rss_trace,
    }
    Path(out).write_text(json.dumps(result))


def moment_blocked(x: np.ndarray, block: int = 8192) -> np.ndarray:
    """Prototype for indexing.compress.fit_pca: X^T X / n accumulated in float64 over row blocks,
    instead of two full float64 copies of the sample. x: (n, d) -> (d, d) float64."""
    m = np.zeros((x.shape[1], x.shape[1]), np.float64)
    for i0 in range(0, len(x), block):
        b = x[i0 : i0 + block].astype(np.float64)  # (block, d)
        m += b.T @ b
    return m / len(x)


def fit_child(which: str, n: int, out: str) -> None:
    """Peak RSS of fitting the PCA moment on an (n, 384) float32 sample, library vs blocked prototype."""
    from bench.common import peak_rss_mib, proc_status

    x = np.random.default_rng(0).standard_normal((n, DIM), dtype=np.float32)
    base = proc_status()["rss"]
    t0 = time.perf_counter()
    if which == "library":
        from indexing.compress import fit_pca

        pca = fit_pca(x, dims=96, max_samples=n)
        comp = pca.components
    else:
        w, v = np.linalg.eigh(moment_blocked(x))
        comp = v[:, ::-1][:, :96]
    Path(out).write_text(json.dumps({"which": which, "n": n, "peak_minus_baseline_mib": peak_rss_mib() - base,
                                     "seconds": time.perf_counter() - t0, "component0_abs_sum": float(np.abs(comp[:, 0]).sum())}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000,50000,100000")
    ap.add_argument("--chunks-per-doc", type=int, default=10)
    ap.add_argument("--embed-batch", type=int, default=1000)
    ap.add_argument("--ann", default="flat")
    ap.add_argument("--json")
    ap.add_argument("--fit-proto", type=int, default=50_000, help="sample size for the fit_pca memory prototype (0: skip)")
    ap.add_argument("--fit-child", help=argparse.SUPPRESS)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.fit_child:
        fit_child(args.fit_child, args.fit_proto, args.out)
        return
    if args.child:
        child(args.child, args.chunks_per_doc, args.embed_batch, args.ann, args.out)
        return
    from bench.common import write_json

    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, "-m", "bench.index_memory", "--child", str(n), "--out", f.name, "--ann", args.ann,
                            "--chunks-per-doc", str(args.chunks_per_doc), "--embed-batch", str(args.embed_batch)], check=True)
            rows.append(json.loads(Path(f.name).read_text()))
        r = rows[-1]
        print(f"n={n:8d} peak RSS {r['peak_rss_mib']:7.1f} MiB (baseline {r['baseline_rss_mib']:.1f}, +{r['peak_minus_baseline_mib']:.1f}) "
              f"{r['seconds']:.1f}s  {r['index_key']} {r['bytes_per_vector']} B/vector  store {r['store_bytes'] / 2**20:.1f} MiB", flush=True)
    growth = []
    for a, b in zip(rows, rows[1:]):
        per_vec = (b["peak_minus_baseline_mib"] - a["peak_minus_baseline_mib"]) * 2**20 / (b["n"] - a["n"])
        growth.append({"from": a["n"], "to": b["n"], "peak_growth_bytes_per_vector": per_vec})
        print(f"  {a['n']} -> {b['n']}: peak grows {per_vec:.0f} B per added vector (index holds {b['bytes_per_vector']} B/vector)")
    fit = []
    for which in ("library", "blocked") if args.fit_proto else ():
        with tempfile.NamedTemporaryFile(suffix=".json") as f:
            subprocess.run([sys.executable, "-m", "bench.index_memory", "--fit-child", which, "--fit-proto", str(args.fit_proto),
                            "--out", f.name], check=True)
            fit.append(json.loads(Path(f.name).read_text()))
        print(f"  fit_pca moment on {args.fit_proto} x {DIM} ({which}): peak +{fit[-1]['peak_minus_baseline_mib']:.1f} MiB, {fit[-1]['seconds']:.2f}s")
    res = {"rows": rows, "growth": growth, "fit_pca_prototype": fit, "command": " ".join(sys.argv)}
    if args.json:
        write_json(args.json, res)


if __name__ == "__main__":
    main()
