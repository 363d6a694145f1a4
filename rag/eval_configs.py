"""The search configurations ``rag eval`` compares, all built from the same embeddings.

Each configuration is a first stage (PCA dims, code dtype) with or without the float8
full-vector rerank. Every configuration with PCA, the default store included, is measured
through the product itself: a temporary store written by ``StoreWriter`` and searched by
``Retriever.search_vectors``, so the numbers follow whatever the writer and retriever do. Only
the references without PCA (float32 flat, float8 and SQ8 on full dims), which ``rag index``
cannot build, are flat FAISS indexes in memory.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing.compress import Float8Codec, default_pca_dims
from indexing.errors import ConfigError
from indexing.first_stage import INDEX_CODES, add_vectors, code_bytes, new_index
from indexing.writer import CompressionSettings
from rag.retrieve import DEFAULT_OVERSAMPLE

SearchFn = Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]  # (xq (nq, d), k) -> D, I (nq, k)
FIT_SAMPLE = CompressionSettings().fit_sample  # vectors an index is trained on, as in the writer
SWEEP_DTYPES = ("float32", "float16", "float8", "sq8")


@dataclass(frozen=True)
class SearchConfig:
    """A first stage of ``pca_dims`` in ``dtype``, optionally reranked. With ``pca_dims`` the
    configuration is a real store (``rag index --pca-dims P --dtype D``); ``None`` means no PCA,
    a reference the product cannot build, searched in memory."""

    name: str
    pca_dims: int | None
    dtype: str
    rerank: bool = False
    oversample: int = DEFAULT_OVERSAMPLE
    default: bool = False  # the store ``rag index`` builds with no options

    @property
    def via_store(self) -> bool:
        return self.pca_dims is not None

    @property
    def index_key(self) -> str:
        """A FAISS-factory-like description, e.g. ``PCA96,FP8E4M3+rerank8``."""
        key = (f"PCA{self.pca_dims}," if self.pca_dims else "") + INDEX_CODES[self.dtype]
        return key + (f"+rerank{self.oversample}" if self.rerank else "")


def main_configs(d: int, pca_dims: int | None = None, oversample: int = DEFAULT_OVERSAMPLE) -> list[SearchConfig]:
    """The side-by-side table: float32 baseline first, the default store, references."""
    p = pca_dims or default_pca_dims(d)
    if not 1 <= p <= d:
        raise ConfigError(f"--pca-dims {p} must be between 1 and the embedding dimension {d}")
    if oversample < 1:
        raise ConfigError(f"--oversample {oversample} must be >= 1 (the default is {DEFAULT_OVERSAMPLE})")
    return [
        SearchConfig("float32 flat (baseline)", None, "float32"),
        SearchConfig(f"PCA{p} float32 (PCA only)", p, "float32"),
        SearchConfig("float8 full dims (no PCA)", None, "float8"),
        SearchConfig(f"PCA{p} float8, no rerank", p, "float8"),
        SearchConfig(f"PCA{p} float8 + rerank x{oversample} (default store)", p, "float8", True, oversample, default=True),
        SearchConfig("FAISS SQ8 full dims (reference)", None, "sq8"),
    ]


def dims_grid(d: int) -> list[int]:
    """PCA dims swept: d/16, d/8, d/6, d/4, d/3, d/2 and d (distinct, at least 1)."""
    return sorted({max(1, d // f) for f in (16, 8, 6, 4, 3, 2, 1)})


def sweep_configs(d: int, oversample: int = DEFAULT_OVERSAMPLE) -> list[SearchConfig]:
    """PCA dims x code dtype x rerank off/on, each one a real store (at p = d the PCA is a rotation),
    so every point is exactly what ``rag index --pca-dims P --dtype D`` builds."""
    return [
        SearchConfig(f"PCA{p} {dtype}" + (f" + rerank x{oversample}" if rerank else ""), p, dtype, rerank, oversample)
        for p in dims_grid(d)
        for dtype in SWEEP_DTYPES
        for rerank in (False, True)
    ]


class StorePool:
    """Temporary stores written by ``StoreWriter``, one chunk per document, one store per
    (pca_dims, dtype) with the product's default settings otherwise. Use as a context manager."""

    def __init__(self, xb: np.ndarray, model: str, ids: Sequence[str], titles: Sequence[str], texts: Sequence[str]) -> None:
        self.xb, self.model, self.ids, self.titles, self.texts = xb, model, ids, titles, texts
        self.root = Path(tempfile.mkdtemp(prefix="rag-eval-"))
        self._open: dict[tuple[int, str], Any] = {}  # (p, dtype) -> Retriever

    def retriever(self, pca_dims: int, dtype: str):  # type: ignore[no-untyped-def]
        """The Retriever over the store of (pca_dims, dtype), written on first use."""
        from indexing.chunk import Chunk, ChunkSettings
        from indexing.writer import DocumentRecord, StoreWriter
        from rag.retrieve import Retriever

        key = (pca_dims, dtype)
        if key not in self._open:
            path = self.root / f"PCA{pca_dims}-{dtype}"
            settings = CompressionSettings(pca_dims=pca_dims, dtype=dtype)
            with StoreWriter(path, self.model, self.xb.shape[1], ChunkSettings(), settings) as writer:
                for i, doc_id in enumerate(self.ids):
                    title, text = self.titles[i], self.texts[i]
                    chunk = Chunk(doc_id, doc_id, title, None, 0, len(text), text)
                    writer.add(DocumentRecord(doc_id, doc_id, title, ""), [chunk], self.xb[i : i + 1])
                writer.commit()
            self._open[key] = Retriever.open(path, verify=False)
        return self._open[key]

    def release(self, keep: Sequence[tuple[int, str]] = ()) -> None:
        """Close and delete every store except those in ``keep``."""
        for key in [k for k in self._open if k not in keep]:
            self._open.pop(key).store.close()
            shutil.rmtree(self.root / f"PCA{key[0]}-{key[1]}", ignore_errors=True)

    def close(self) -> None:
        self.release()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> StorePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StoreSearcher:
    """A store searched by ``Retriever.search_vectors``, exactly as ``rag search`` does."""

    def __init__(self, retriever, config: SearchConfig) -> None:  # type: ignore[no-untyped-def]
        self.retriever, self.config = retriever, config
        store = retriever.store
        self.bytes_per_vector = store.bytes_per_vector
        self.rerank_bytes_per_vector = store.manifest.compression.full_bytes_per_vector if config.rerank else 0
        self.ann = store.manifest.segments[0].ann if store.manifest.segments else "flat"

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.retriever.search_vectors(xq, k, self.config.oversample, rerank=self.config.rerank)


class MemorySearcher:
    """A reference without PCA, in a flat FAISS index of the full vectors. ``float8`` uses the
    given codec (pass the store's ``full_codec``, so its codes are the store's full vectors)."""

    def __init__(self, xb: np.ndarray, config: SearchConfig, codec: Float8Codec | None = None) -> None:
        if config.pca_dims is not None or config.rerank:
            raise ConfigError(f"{config.name}: in-memory references have no PCA and no rerank; use a store")
        if config.dtype == "float8" and codec is None:
            raise ConfigError("a float8 reference needs the store's full-vector Float8Codec")
        self.config = config
        self.index = new_index(xb[:FIT_SAMPLE], config.dtype, "flat", codec=codec)
        add_vectors(self.index, xb, codec)
        self.bytes_per_vector = code_bytes(self.index)
        self.rerank_bytes_per_vector = 0
        self.ann = "flat"

    def search(self, xq: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        return self.index.search(np.ascontiguousarray(xq, np.float32), k)


def latency_ms(search: SearchFn, xq: np.ndarray, k: int, max_queries: int = 200, warmup: int = 5) -> tuple[float, float]:
    """p50 and p95 milliseconds of ``search`` called with one query at a time (search only)."""
    xq = np.ascontiguousarray(xq[:max_queries], np.float32)
    if len(xq) == 0:
        return 0.0, 0.0
    for i in range(min(warmup, len(xq))):
        search(xq[i : i + 1], k)
    times = []
    for i in range(len(xq)):
        t0 = time.perf_counter()
        search(xq[i : i + 1], k)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 95))


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices of the (cost, quality) points no other point beats: cheaper-or-equal and at least as
    good, strictly better in one. Sorted by cost; of exact duplicates only the first is kept."""
    order = sorted(range(len(points)), key=lambda i: (points[i][0], -points[i][1], i))
    front: list[int] = []
    best = -np.inf
    for i in order:
        if points[i][1] > best:
            front.append(i)
            best = points[i][1]
    return front


def recommend(rows: Sequence[dict[str, Any]], budget: int, metric: str = "ndcg@10") -> dict[str, Any]:
    """The best measured row whose first-stage ``bytes_per_vector`` fits ``budget``; ties go to fewer
    bytes, then lower p50 latency."""
    fits = [r for r in rows if r["bytes_per_vector"] <= budget]
    if not fits:
        smallest = min((r["bytes_per_vector"] for r in rows), default=None)
        raise ConfigError(f"no measured configuration fits --budget {budget} bytes per vector; the smallest takes {smallest}")
    return max(fits, key=lambda r: (r[metric], -r["bytes_per_vector"], -r["latency_ms_p50"]))


def index_command(row: dict[str, Any], store_dir: str | None = None, model: str | None = None) -> str:
    """The ``rag index`` command line that builds a store with ``row``'s first stage."""
    cmd = f"rag index <FILES...> --store {store_dir or '<STORE>'}"
    if model:
        cmd += f" --model {model}"
    return cmd + f" --pca-dims {row['pca_dims']} --dtype {row['dtype']}"


def plot_sweep(rows: Sequence[dict[str, Any]], baseline: float, path: str | Path, title: str = "", metric: str = "ndcg@10") -> None:
    """Quality against first-stage bytes per vector (log x); colour = dtype, marker = rerank."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = dict(zip(SWEEP_DTYPES, ("tab:blue", "tab:green", "tab:red", "tab:purple")))
    fig, ax = plt.subplots(figsize=(8, 5.5))
    for dtype in sorted(SWEEP_DTYPES, key=lambda t: t == "float8"):  # the product's dtype drawn on top
        for rerank, marker, face in ((False, "o", "none"), (True, "s", None)):
            sel = [r for r in rows if r["dtype"] == dtype and r["rerank"] == rerank]
            if sel:
                ax.scatter([r["bytes_per_vector"] for r in sel], [r[metric] for r in sel], marker=marker, s=36,
                           edgecolors=colours[dtype], facecolors=face or colours[dtype],
                           label=f"{dtype}, " + ("rerank" if rerank else "no rerank"))
    front = [rows[i] for i in pareto_front([(r["bytes_per_vector"], r[metric]) for r in rows])]
    ax.step([r["bytes_per_vector"] for r in front], [r[metric] for r in front], where="post", color="black", lw=1,
            label="Pareto front")
    ax.scatter([r["bytes_per_vector"] for r in front], [r[metric] for r in front], s=140, facecolors="none",
               edgecolors="black", lw=0.8)
    for r in front:
        ax.annotate(f"PCA{r['pca_dims']} {r['dtype']}", (r["bytes_per_vector"], r[metric]), textcoords="offset points",
                    xytext=(4, -10), fontsize=7)
    ax.axhline(baseline, color="grey", ls="--", lw=1, label=f"float32 flat {baseline:.4f}")
    ax.axhline(0.99 * baseline, color="grey", ls=":", lw=1, label="99% of float32")
    ax.set_xscale("log")
    ax.set_xlabel("first-stage bytes per vector (log)")
    ax.set_ylabel(metric.replace("ndcg", "nDCG"))
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
