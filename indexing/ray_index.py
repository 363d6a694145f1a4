"""Distributed embedding for ``rag index --ray``: the same (document, chunks, vectors) stream as
``indexing.build._embed_documents``, computed on a Ray cluster.

Pipeline (Ray Data, order preserved): the files to embed -> load + chunk (Ray tasks, a few files
each, one row per chunk, one row per skipped file) -> embed (a ``map_batches`` pool of
``workers`` actors, the model loaded once per actor, ``num_gpus`` per actor where the cluster has
GPUs, restarted and retried up to ``RETRIES`` times when one dies) -> streamed back to the driver,
which regroups rows by file, in order, and routes them to segment writer actors
(``indexing.ray_write``). Rows carry documents and chunks as JSON (their fields are strings and integers; no pickle of ours).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import json
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from indexing.chunk import Chunk, ChunkSettings, chunk_document
from indexing.embed import Embedder, SentenceTransformerEmbedder
from indexing.errors import ClusterError, ConfigError, EmbeddingError, LoadError
from indexing.load import Document, SourceFile, Skipped, load_file
from indexing.ray_cluster import RayOptions, cluster_cpus, cluster_gpus, error_line, import_ray, ray_session

EMBED_BATCH = 256  # chunks per actor call (as indexing.build.EMBED_BATCH)
FILES_PER_TASK = 8  # files loaded and chunked per Ray task
LOAD_CPUS = 0.25  # logical CPUs a load task asks for: reading and chunking are cheap next to embedding
RETRIES = 3  # restarts of a dead embedding actor, and retries of its batch, before the run fails
Triple = tuple[Document, list[Chunk], np.ndarray]


def embed_documents_ray(
    fresh: list[tuple[SourceFile, str]],
    chunker: ChunkSettings,
    embedder: Embedder,
    report: Any,
    progress: Callable[[str, int, int], None] | None,
    options: RayOptions,
    reserve_cpus: float = 0.0,
) -> Iterator[Triple]:
    """Yield (document, chunks, vectors) for each loadable file of ``fresh`` in order; skipped
    files go to ``report.skipped`` in order, as ``indexing.build._embed_documents`` does.
    ``reserve_cpus``: logical CPUs left to other actors of the run (the segment writers)."""
    if not fresh:
        return
    factory = options.embedder_factory or embedder_factory(embedder)
    with ray_session(options) as ray:
        dataset = _pipeline(ray, fresh, chunker, factory, options, embedder.dim, reserve_cpus)
        done = 0
        try:
            for i, doc, chunks, vectors, skip, backend in _regroup(dataset):
                for j in range(done, i + 1):  # files before i were all emitted (order is preserved)
                    if progress:
                        progress("embedding", j + 1, len(fresh))
                done = i + 1
                if skip:
                    report.skipped.append(Skipped(str(fresh[i][0].path), skip))
                    continue
                report.embed_backend = f"ray:{backend}"
                yield doc, chunks, vectors
        except ray.exceptions.RayError as exc:
            raise ClusterError(f"the Ray indexing run failed, the store is unchanged: {error_line(exc)}") from None


def embedder_factory(embedder: Embedder) -> Callable[[], Embedder]:
    """What each actor calls to build its embedder: a sentence-transformers model is loaded again by
    name (not shipped), any other embedder is shipped as it is (it must pickle)."""
    if isinstance(embedder, SentenceTransformerEmbedder):
        return functools.partial(_sentence_transformer, embedder.model_id, embedder.backend)
    try:
        import_ray().cloudpickle.dumps(embedder)
    except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
        raise ConfigError(f"the embedder {type(embedder).__name__} cannot be sent to Ray workers ({exc}); "
                          "pass RayOptions(embedder_factory=...) that builds it") from None
    return functools.partial(_same, embedder)


def _same(embedder: Embedder, device: str = "cpu") -> Embedder:  # noqa: ARG001 - a shipped embedder keeps its device
    return embedder


def _sentence_transformer(model: str, backend: str, device: str = "cpu") -> Embedder:
    """An actor embeds the whole run with one model, so ``auto`` converts to OpenVINO at once (the
    conversion is paid once per actor, and no short batch falls back to torch); torch if it cannot."""
    if device != "cpu":
        return SentenceTransformerEmbedder(model, backend="torch", device=device)
    if backend == "auto":
        try:
            return SentenceTransformerEmbedder(model, backend="openvino")
        except EmbeddingError:
            backend = "torch"
    return SentenceTransformerEmbedder(model, backend=backend)


def _pipeline(ray: Any, fresh: list[tuple[SourceFile, str]], chunker: ChunkSettings,
              factory: Callable[[], Embedder], options: RayOptions, dim: int, reserve_cpus: float = 0.0) -> Any:
    """The lazy Ray Data pipeline: file rows -> chunk rows -> chunk rows with vectors."""
    cpus = cluster_cpus(ray)
    blocks = max(1, -(-len(fresh) // FILES_PER_TASK))  # load tasks, each one input of the embedding
    workers = min(options.workers or min(cpus, 64), blocks)  # more actors than inputs load the model for nothing
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if cluster_gpus(ray) >= workers else 0.0
    actor_cpus = max(0.5, (cpus - LOAD_CPUS - reserve_cpus) / workers) if gpus == 0 else 1.0
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    items = [{"i": i, "path": os.fsencode(f.path), "source": _b(f.source), "sha": sha} for i, (f, sha) in enumerate(fresh)]
    ds = ray.data.from_items(items, override_num_blocks=blocks)
    ds = ds.map_batches(_load_and_chunk, batch_size=FILES_PER_TASK, batch_format="numpy",
                        fn_kwargs={"chunker": chunker}, num_cpus=LOAD_CPUS)
    with warnings.catch_warnings():  # max_restarts has no named parameter yet (deprecated as **kwargs, Ray 2.64)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ds.map_batches(
            _EmbedActor, batch_size=EMBED_BATCH, batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=workers),
            fn_constructor_kwargs={"factory": factory, "threads": max(1, round(actor_cpus)), "dim": dim,
                                   "device": "cuda" if gpus else "cpu"},
            num_cpus=actor_cpus, num_gpus=gpus, max_restarts=RETRIES, max_task_retries=RETRIES,
        )


def _b(text: str) -> bytes:
    """Text as bytes for Arrow (which holds only valid UTF-8): undecodable file-name bytes survive."""
    return text.encode("utf-8", "surrogateescape")


def _load_and_chunk(batch: dict[str, np.ndarray], chunker: ChunkSettings) -> dict[str, np.ndarray]:
    """A Ray task: load and chunk a few files; one row per chunk, one row per skipped file."""
    rows: dict[str, list[Any]] = {"i": [], "doc": [], "chunk": [], "text": [], "skip": []}

    def add(i: int, doc: bytes, chunk: bytes, text: bytes, skip: str) -> None:
        for key, value in zip(rows, (i, doc, chunk, text, _b(skip))):
            rows[key].append(value)

    for i, path, source, sha in zip(batch["i"], batch["path"], batch["source"], batch["sha"]):
        try:
            doc = load_file(os.fsdecode(path), bytes(source).decode("utf-8", "surrogateescape"), str(sha))
            chunks = chunk_document(doc, chunker)
        except LoadError as exc:
            add(int(i), b"", b"", b"", str(exc))
            continue
        if not chunks:
            add(int(i), b"", b"", b"", "no text after chunking")
            continue
        head = _to_json([doc.path, doc.source, doc.title, doc.sha256])  # pages are not needed
        for n, c in enumerate(chunks):
            add(int(i), head if n == 0 else b"", _to_json(dataclasses.astuple(c)), c.text.encode("utf-8", "surrogatepass"), "")
    return {"i": np.asarray(rows["i"], np.int64), **{k: np.asarray(v, object) for k, v in rows.items() if k != "i"}}


class _EmbedActor:
    """Holds one embedding model for its whole life (Ray Data's actor pool creates ``workers`` of these)."""

    def __init__(self, factory: Callable[..., Embedder], threads: int, dim: int, device: str) -> None:
        from indexing import embed_openvino

        embed_openvino.INFERENCE_THREADS = threads  # this actor's share of the node's cores
        self.embedder = factory(device=device) if device != "cpu" else factory()
        if "torch" in sys.modules:  # this actor's share of the node's cores
            sys.modules["torch"].set_num_threads(threads)
        if self.embedder.dim != dim:
            raise ConfigError(f"the embedder on a Ray worker has dimension {self.embedder.dim}, the driver's {dim}")
        self.dim = dim

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        keep = np.array([not s for s in batch["skip"]], bool)  # (n,)
        texts = [bytes(t).decode("utf-8", "surrogatepass") for t, k in zip(batch["text"], keep) if k]
        vectors = np.zeros((len(keep), self.dim), np.float32)  # (n, d); skipped files' rows stay zero
        if texts:
            vectors[keep] = self.embedder.embed_documents(texts)
        backend = getattr(self.embedder, "last_backend", "") or type(self.embedder).__name__
        return {"i": batch["i"], "doc": batch["doc"], "chunk": batch["chunk"], "skip": batch["skip"],
                "vectors": vectors, "backend": np.asarray([backend] * len(keep), object)}


def _regroup(dataset: Any) -> Iterator[tuple[int, Document | None, list[Chunk], np.ndarray, str, str]]:
    """(file index, document, chunks, vectors (m, d), skip reason, backend) per file, in order."""
    cur: int | None = None
    doc: Document | None = None
    chunks: list[Chunk] = []
    parts: list[np.ndarray] = []
    backend = ""
    for batch in dataset.iter_batches(batch_size=None, batch_format="numpy"):
        for r in range(len(batch["i"])):
            i = int(batch["i"][r])
            if i != cur and cur is not None and chunks:
                yield cur, doc, chunks, np.concatenate(parts), "", backend
                chunks, parts = [], []
            cur = i
            skip = bytes(batch["skip"][r]).decode("utf-8", "surrogateescape")
            if skip:
                yield i, None, [], np.zeros((0, 0), np.float32), skip, ""
                continue
            if batch["doc"][r]:
                doc = Document(*json.loads(bytes(batch["doc"][r])))
            chunks.append(Chunk(*json.loads(bytes(batch["chunk"][r]))))
            parts.append(batch["vectors"][r : r + 1])  # (1, d)
            backend = str(batch["backend"][r])
    if chunks:
        yield cur, doc, chunks, np.concatenate(parts), "", backend  # type: ignore[misc]


def _to_json(values: Any) -> bytes:
    """JSON bytes of a document's or chunk's fields (lone surrogates of undecodable file names
    survive as \\u escapes)."""
    return json.dumps(list(values)).encode("ascii")
