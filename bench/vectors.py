"""Synthetic corpora with the second-order structure of real embeddings.

A Gaussian (mean + full covariance) is fitted once to real embeddings of the first SciFact
abstracts and cached in ``bench/results/gaussian_fit.npz`` (keyed by model id and number of
documents). Database vectors ``xb`` and synthetic queries ``xq`` are drawn from it and
normalised; they are generated in fixed-size chunks from one seeded stream, so the corpus of
size ``n`` is always the prefix of any larger one. Real SciFact queries embedded with the same
model are added to the query set.

    python -m bench.vectors --n 100000     # fit (or load) the Gaussian, print a summary
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
SCIFACT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "scifact"  # ../shared beside the repo
FIT_FILE = RESULTS / "gaussian_fit.npz"
FIT_DOCS = 3000
CHUNK = 65_536  # rows generated per step; fixed so prefixes agree across sizes
SEED_XB, SEED_XQ = 1234, 5678


def _read_jsonl(file: Path, limit: int | None = None) -> list[dict]:
    rows = []
    with open(file) as f:
        for line in f:
            if line.strip():
                rows.append(json.loads(line))
            if limit is not None and len(rows) >= limit:
                break
    return rows


def _model_id(model: str | None) -> str:
    from indexing.embed import DEFAULT_MODEL

    return model or DEFAULT_MODEL


def gaussian_fit(model: str | None = None, n_docs: int = FIT_DOCS, cache: Path = FIT_FILE) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d,) and covariance (d, d) of real document embeddings; cached by model id and n_docs."""
    model = _model_id(model)
    key = f"{model}|scifact-corpus|first{n_docs}|title+text"
    if cache.is_file():
        z = np.load(cache, allow_pickle=False)
        if str(z["key"]) == key:
            return z["mean"].astype(np.float64), z["cov"].astype(np.float64)
    from indexing.embed import load_embedder

    docs = _read_jsonl(SCIFACT / "corpus.jsonl", n_docs)
    texts = [(d.get("title", "") + ". " + d["text"]).strip() for d in docs]
    x = load_embedder(model).embed_documents(texts).astype(np.float64)  # (n_docs, d), unit rows
    mean = x.mean(0)
    cov = np.cov(x, rowvar=False)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(cache, key=np.array(key), mean=mean.astype(np.float32), cov=cov.astype(np.float32))
    return mean, cov


def _sampler(mean: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """A (d, d) factor ``A`` with ``A A^T = cov`` (eigendecomposition: cov may be near-singular)."""
    w, v = np.linalg.eigh(cov)
    return (v * np.sqrt(np.clip(w, 0.0, None))).astype(np.float32)


def iter_xb(n: int, model: str | None = None, seed: int = SEED_XB, chunk: int = CHUNK) -> Iterator[np.ndarray]:
    """Yield database vectors in chunks: (<= chunk, d) float32 unit rows, n rows in total."""
    mean, cov = gaussian_fit(model)
    A = _sampler(mean, cov)  # (d, d)
    mu = mean.astype(np.float32)
    rng = np.random.default_rng(seed)
    d = len(mean)
    for i0 in range(0, n, chunk):
        z = rng.standard_normal((chunk, d), dtype=np.float32)[: min(chunk, n - i0)]  # always draw a full chunk
        x = z @ A.T + mu  # (m, d)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        yield x


def make_xb(n: int, model: str | None = None, seed: int = SEED_XB) -> np.ndarray:
    """(n, d) float32 unit database vectors, allocated once and filled chunk by chunk."""
    xb = None
    i0 = 0
    for x in iter_xb(n, model, seed):
        if xb is None:
            xb = np.empty((n, x.shape[1]), np.float32)
        xb[i0 : i0 + len(x)] = x
        i0 += len(x)
    return xb


def synthetic_queries(nq: int = 1000, model: str | None = None, seed: int = SEED_XQ) -> np.ndarray:
    """(nq, d) float32 unit queries from the same Gaussian, a different seed."""
    return make_xb(nq, model, seed)


def scifact_queries(model: str | None = None, cache_dir: Path = RESULTS) -> np.ndarray:
    """(1109, d) real SciFact queries embedded with ``model``; cached as a git-ignored .npy."""
    model = _model_id(model)
    file = cache_dir / f"scifact_queries_{re.sub(r'[^A-Za-z0-9]+', '_', model)}.npy"
    texts = [q["text"] for q in _read_jsonl(SCIFACT / "queries.jsonl")]
    if file.is_file():
        x = np.load(file)
        if len(x) == len(texts):
            return x
    from indexing.embed import load_embedder

    x = load_embedder(model).embed_queries(texts)
    np.save(file, x)
    return x


def queries(model: str | None = None, n_synthetic: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """xq: (n_synthetic + 1109, d) float32; kind: (nq,) 0 = synthetic, 1 = real SciFact."""
    xs, xr = synthetic_queries(n_synthetic, model), scifact_queries(model)
    kind = np.concatenate([np.zeros(len(xs), np.int8), np.ones(len(xr), np.int8)])
    return np.ascontiguousarray(np.concatenate([xs, xr]), np.float32), kind


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=10_000)
    args = ap.parse_args()
    mean, cov = gaussian_fit()
    xb = make_xb(args.n)
    xq, kind = queries()
    w = np.linalg.eigvalsh(cov)[::-1]
    print(f"fit: |mean|={np.linalg.norm(mean):.3f} trace(cov)={w.sum():.3f} top-96 share of cov={w[:96].sum() / w.sum():.3f}")
    print(f"xb {xb.shape} mean cos to mean dir={float((xb @ (mean / np.linalg.norm(mean))).mean()):.3f}; xq {xq.shape} real={int(kind.sum())}")
    real = xq[kind == 1]
    print(f"real query top-1 IP over xb: {float((real @ xb.T).max(1).mean()):.3f}; synthetic: {float((xq[kind == 0] @ xb.T).max(1).mean()):.3f}")


if __name__ == "__main__":
    main()
