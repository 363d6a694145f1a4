"""Index files into a store: load -> chunk -> embed -> compress -> store, incrementally."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from indexing.chunk import Chunk, ChunkSettings, chunk_document
from indexing.embed import DEFAULT_MODEL, Embedder, load_embedder
from indexing.errors import ConfigError, LoadError, StoreError
from indexing.files import sha256_file
from indexing.ray_cluster import RayOptions  # no Ray import: that happens only when a run uses it
from indexing.load import Document, SourceFile, Skipped, discover, load_file
from indexing.lock import StoreLock
from indexing.manifest import MANIFEST, Manifest, is_store
from indexing.store import Store
from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter

Progress = Callable[[str, int, int], None]  # (stage, done, total)
EMBED_BATCH = 256  # chunks embedded per model call


@dataclass
class IndexReport:
    """What an index run did."""

    store: str
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    manifest: Manifest | None = None
    embed_backend: str = ""  # what embedded the documents: torch, openvino-bf16|f32, or the embedder class

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)


def index_paths(
    paths: Iterable[str | Path],
    store: str | Path,
    model: str | None = None,
    pca_dims: int | None = None,
    pca_variance: float | None = None,
    dtype: str | None = None,
    full_dtype: str | None = None,
    ann: str = "auto",
    chunk_tokens: int | None = None,
    overlap: int | None = None,
    refit: bool = False,
    prune: bool = True,
    embed_backend: str = "auto",
    embedder: Embedder | None = None,
    progress: Progress | None = None,
    wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
    ray: RayOptions | None = None,
) -> IndexReport:
    """Index files and folders into ``store``; only new or changed files are embedded.

    With an existing store, the PCA basis, scales and chunker settings are kept, and files that
    were indexed from under ``paths`` but are gone now are removed (``prune``; only under
    folders that exist). ``refit`` rebuilds everything from scratch with the given settings.
    ``embed_backend`` (auto, torch, openvino) runs a sentence-transformers model's document
    embedding (see indexing.embed). The store's lock is taken before the current generation is
    read: while another writer holds it, wait up to ``wait`` seconds (``on_wait(message)`` is
    told once), then raise ``StoreLockedError`` with nothing changed. ``ray`` loads, chunks and
    embeds on a Ray cluster (indexing.ray_index), and Ray actors write the new segments
    (indexing.ray_write; the store must be on a file system the nodes share); one commit here.
    """
    paths = [paths] if isinstance(paths, (str, Path)) else list(paths)
    store = Path(store)
    if ray is not None:
        ray.check()  # Ray missing or a cluster unreachable: fail before any work
    with StoreLock(store, wait, on_wait) as lock:
        return _index_locked(paths, store, lock, model, pca_dims, pca_variance, dtype, full_dtype, ann,
                             chunk_tokens, overlap, refit, prune, embed_backend, embedder, progress, ray)


def _index_locked(  # noqa: PLR0913 - index_paths' arguments, under the store's lock
    paths: list[str | Path], store: Path, lock: StoreLock, model: str | None, pca_dims: int | None,
    pca_variance: float | None, dtype: str | None, full_dtype: str | None, ann: str, chunk_tokens: int | None,
    overlap: int | None, refit: bool, prune: bool, embed_backend: str, embedder: Embedder | None, progress: Progress | None,
    ray: RayOptions | None = None,
) -> IndexReport:
    defaults = ChunkSettings()
    chunker = ChunkSettings(defaults.chunk_tokens if chunk_tokens is None else chunk_tokens,
                            defaults.overlap if overlap is None else overlap)
    compression = CompressionSettings(pca_dims, pca_variance, dtype or "float8", full_dtype or "float8", ann)
    base = _open_base(store, model, embedder, refit)
    if base is not None:
        _check_same_settings(base, pca_dims, dtype, full_dtype, chunk_tokens, overlap)
        try:
            chunker = ChunkSettings(**base.manifest.chunker)
        except (TypeError, ConfigError) as exc:
            raise StoreError(f"{base.path / MANIFEST}: chunker settings are corrupt: {exc}") from exc
    model = base.manifest.model if base else (embedder.model_id if embedder else model or DEFAULT_MODEL)
    report = IndexReport(str(store))
    files, report.skipped = discover(paths)
    if refit:
        files += _carry_over(store, files, report)
    known = base.documents() if base else {}
    fresh: list[tuple[SourceFile, str]] = []
    keep: set[str] = set()
    lock_id = lock.file_id()
    for i, f in enumerate(files):
        try:
            st = f.path.stat()
            if (st.st_dev, st.st_ino) == lock_id:  # a hard link to .lock: closing it would drop the lock
                report.skipped.append(Skipped(str(f.path), "is the store's lock file"))
                continue
            sha = sha256_file(f.path)
        except OSError as exc:
            report.skipped.append(Skipped(str(f.path), f"cannot read: {exc.strerror or exc}"))
            if str(f.path) in known:  # unreadable for now (permissions, I/O): keep what was indexed
                keep.add(str(f.path))
            continue
        if known.get(str(f.path), ("",))[0] == sha:
            keep.add(str(f.path))
            report.unchanged.append(f.source)
        else:
            fresh.append((f, sha))
        if progress:
            progress("hashing", i + 1, len(files))
    seen = {str(f.path) for f in files}
    roots = [r for r in map(_existing_folder, paths) if r]  # a missing folder prunes nothing
    for path in known:
        if path in seen:
            continue
        under = any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)
        if prune and under and _gone(path):  # not found by the walk is not gone (unreadable folder)
            report.removed.append(known[path][2])
        else:
            keep.add(path)
    if base is not None and not fresh and not report.removed:
        report.chunks, report.manifest = base.n, base.manifest
        return report
    embedder = embedder or load_embedder(model, backend=embed_backend)
    with StoreWriter(store, model, embedder.dim, chunker, compression, base, lock=lock) as writer:
        writer.keep(keep)
        for doc in _write_documents(fresh, chunker, embedder, report, progress, ray, writer):
            (report.updated if doc.path in known else report.added).append(doc.source)
        report.embed_backend = report.embed_backend or getattr(embedder, "last_backend", type(embedder).__name__)
        if base is not None and not report.changed:  # every fresh file was skipped: keep the store as is
            writer.abort()
            report.chunks, report.manifest = base.n, base.manifest
            return report
        report.manifest = writer.commit()
    report.chunks = report.manifest.chunks
    return report


def _carry_over(store: Path, files: list[SourceFile], report: IndexReport) -> list[SourceFile]:
    """``--refit`` rebuilds the whole store, not only what ``paths`` hold: the old store's documents
    whose files still exist (other folders, chat uploads) are read again under the same citation
    name; the others (files gone, texts added through LangChain) are reported removed."""
    if not is_store(store):
        return []
    try:
        with Store.open(store, verify=False) as old:
            docs = old.documents()
    except StoreError:  # a damaged store is a reason to refit: nothing of it can be read
        return []
    have = {str(f.path) for f in files}
    carry = []
    for path, (_, _, source) in docs.items():
        if path in have:
            continue
        if os.path.isabs(path) and os.path.isfile(path):
            carry.append(SourceFile(Path(path), source))
        else:
            report.removed.append(source)
    return carry


def _existing_folder(path: str | Path) -> str | None:
    """``path`` resolved when it is a folder; None when it is not, or cannot be checked (too long)."""
    try:
        return str(Path(path).resolve()) if Path(path).is_dir() else None
    except (OSError, RuntimeError):
        return None


def _gone(path: str) -> bool:
    """The file no longer exists. A path that cannot be checked (a folder without read or search
    permission on the way, an I/O error) is not gone: pruning it would lose documents."""
    try:
        os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return True
    except OSError:
        return False
    return False


def _open_base(store: Path, model: str | None, embedder: Embedder | None, refit: bool) -> Store | None:
    if refit or not is_store(store):
        return None
    want = embedder.model_id if embedder else model
    # sizes checked, checksums not (the writer reads only the documents tables and the basis;
    # segments it keeps are not rewritten), and each segment's index is never loaded: an
    # incremental run costs what changed, not what the store holds
    return Store.open(store, model=want, dim=embedder.dim if embedder else None, verify=False, lazy=True)


def _check_same_settings(
    base: Store, pca_dims: int | None, dtype: str | None, full_dtype: str | None, chunk_tokens: int | None, overlap: int | None,
) -> None:
    """An incremental run keeps the store's compression and chunker; asking for others needs --refit."""
    c = base.manifest.compression
    comp = {"pca_dims": c.pca_dims, "dtype": c.dtype, "full_dtype": c.full_dtype}
    comp |= {k: base.manifest.chunker.get(k) for k in ("chunk_tokens", "overlap")}
    asked = (("pca_dims", pca_dims), ("dtype", dtype), ("full_dtype", full_dtype), ("chunk_tokens", chunk_tokens), ("overlap", overlap))
    for name, want in asked:
        if want is not None and want != comp[name]:
            raise ConfigError(f"store {base.path} uses {name}={comp[name]}; you asked for {want}. Pass --refit to rebuild it")


def _write_documents(
    fresh: list[tuple[SourceFile, str]], chunker: ChunkSettings, embedder: Embedder, report: IndexReport,
    progress: Progress | None, ray: RayOptions | None, writer: StoreWriter,
):  # type: ignore[no-untyped-def]
    """Embed the fresh files and add them to ``writer``, yielding each document added: in this
    process, or on Ray, where worker actors write the segments (indexing.ray_write)."""
    if ray is not None:
        from indexing.ray_write import write_documents_ray

        yield from write_documents_ray(fresh, chunker, embedder, report, progress, ray, writer)
        return
    for doc, chunks, vectors in _embed_documents(fresh, chunker, embedder, report, progress):
        record = DocumentRecord(doc.path, doc.source, doc.title, doc.sha256)
        writer.add(record, chunks, vectors)
        yield record


def _embed_documents(
    fresh: list[tuple[SourceFile, str]],
    chunker: ChunkSettings,
    embedder: Embedder,
    report: IndexReport,
    progress: Progress | None,
):  # type: ignore[no-untyped-def]
    """Yield (document, chunks, vectors) for each loadable file, embedding in large batches."""
    group: list[tuple[Document, list[Chunk]]] = []
    pending = 0
    for i, (f, sha) in enumerate(fresh):
        try:
            doc = load_file(f.path, f.source, sha)
            chunks = chunk_document(doc, chunker)  # LoadError past the per-file chunk limit
        except LoadError as exc:
            report.skipped.append(Skipped(str(f.path), str(exc)))
            continue
        if not chunks:
            report.skipped.append(Skipped(str(f.path), "no text after chunking"))
            continue
        group.append((doc, chunks))
        pending += len(chunks)
        if pending >= EMBED_BATCH or i == len(fresh) - 1:
            yield from _embed_group(group, embedder)
            group, pending = [], 0
        if progress:
            progress("embedding", i + 1, len(fresh))
    yield from _embed_group(group, embedder)


def _embed_group(group: list[tuple[Document, list[Chunk]]], embedder: Embedder):  # type: ignore[no-untyped-def]
    if not group:
        return
    vectors = embedder.embed_documents([c.text for _, chunks in group for c in chunks])  # (m, d)
    start = 0
    for doc, chunks in group:
        yield doc, chunks, vectors[start : start + len(chunks)]
        start += len(chunks)
