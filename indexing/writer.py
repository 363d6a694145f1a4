"""Write to a store: new documents become one new segment, deleted ones tombstones; one commit.

``StoreWriter`` holds the store's lock (``indexing.lock``) from before it reads the current
state until the commit. An incremental run writes only what changed: a segment of the new
documents (``indexing.segment``), a tombstone file per segment that lost documents, and the
manifest (``indexing.commit``: folders written aside, then one atomic manifest rename). After
the commit, ``indexing.compact.plan`` may merge segments in a second commit under the same lock.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from indexing import keyword
from indexing.basis import BASIS_FILES_ORDER, Basis
from indexing.chunk import Chunk, ChunkSettings
from indexing.chunk_db import DocumentRecord
from indexing.commit import Commit
from indexing.compact import merge_into, plan, refit_basis
from indexing.errors import ConfigError, StoreError
from indexing.lock import StoreLock
from indexing.manifest import FULL_FILE, Compression, Manifest, Segment, Tombstones, writer_versions
from indexing.segment import SegmentWriter, segment_files
from indexing.store import Store

__all__ = ["CompressionSettings", "DocumentRecord", "SegmentSpec", "StoreWriter", "compact_store"]


@dataclass(frozen=True)
class CompressionSettings:
    """First stage: PCA to ``pca_dims`` (or to keep ``pca_variance``), codes in ``dtype``."""

    pca_dims: int | None = None  # None (and no variance): a quarter of the embedding dimension
    pca_variance: float | None = None
    dtype: str = "float8"
    full_dtype: str = "float8"  # rerank vectors: float8 (d bytes) or float16 (2d bytes, more recall at 1M)
    ann: str = "auto"  # per segment: flat below first_stage.IVF_MIN_VECTORS rows, IVF above
    nlist: int | None = None
    fit_sample: int = 50_000  # vectors buffered to fit PCA and scales before streaming the rest


@dataclass(frozen=True)
class SegmentSpec:
    """What a ``SegmentWriter`` in another process needs to write a segment of this store (besides
    its folder and the basis), and the arguments of its ``finish``."""

    dim: int
    dtype: str
    full_dtype: str
    keywords: keyword.KeywordSettings
    ann: str
    nlist: int | None


class StoreWriter:
    """Adds and deletes documents of the store at ``store_dir``. Use as a context manager."""

    def __init__(
        self,
        store_dir: str | Path,
        model: str,
        dim: int,
        chunker: ChunkSettings,
        compression: CompressionSettings = CompressionSettings(),
        base: Store | None = None,
        lock: StoreLock | None = None,
        keywords: keyword.KeywordSettings | None = None,
    ) -> None:
        """``base``: the store's current state (None: a new store, or ``--refit``); ``lock``: the
        store's lock, already held by the caller (who read ``base`` under it); without one the
        writer takes it and refuses a ``base`` that is no longer current."""
        if compression.full_dtype not in FULL_FILE:  # checked before anything is written
            raise ConfigError(f"full_dtype={compression.full_dtype!r} is not one of {', '.join(FULL_FILE)}")
        self.dir = Path(store_dir)
        self._own_lock = lock is None or not lock.held
        self._lock = (lock or StoreLock(self.dir)).acquire() if self._own_lock else lock
        try:
            self._commit = Commit(self.dir)  # reads the current generation under the lock
            if base is not None and base.manifest.generation != self._commit.previous:
                raise StoreError(f"{self.dir} was changed by another writer since it was opened; run again")
            self._base_docs = base.document_records() if base is not None else {}  # reads every segment's database
            self.keywords = (base.keyword_settings if base is not None else None) or keywords or keyword.KeywordSettings()
        except BaseException:  # a damaged base: the lock is not kept (a long-lived process could never write again)
            self._release()
            raise
        self.model, self.dim, self.chunker, self.compression, self.base = model, dim, chunker, compression, base
        # an incremental run keeps the base's dtypes: new segments are searched beside the old
        self.dtype = base.manifest.compression.dtype if base else compression.dtype
        self.full_dtype = base.full_dtype if base else compression.full_dtype
        self.deleted: set[str] = set()
        self._segment: SegmentWriter | None = None
        self._written: list[Segment] = []  # segments written by other processes (indexing.ray_write), in order
        self._written_basis: Basis | None = None

    # -- changes ----------------------------------------------------------------------------
    def keep(self, doc_paths: set[str]) -> None:
        """Keep these documents of the base; every other one is deleted."""
        self.deleted |= set(self._base_docs) - set(doc_paths)

    def delete(self, doc_paths: set[str]) -> None:
        """Delete these documents of the base (paths it does not hold are ignored)."""
        self.deleted |= set(doc_paths) & set(self._base_docs)

    def add(self, doc: DocumentRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Add a document (replacing the base's document at the same path): its chunks and their
        unit-length embeddings (m, d)."""
        if self._written:
            raise ConfigError("this writer already holds segments written elsewhere; add documents there")
        if self._segment is None:
            name, folder = self._commit.new_folder()
            c = self.compression
            self._segment = SegmentWriter(folder, self.dim, self.dtype, self.full_dtype, self.keywords,
                                          self.base.basis if self.base else None, c.pca_dims, c.pca_variance, c.fit_sample, name)
        self._segment.add(doc, chunks, vectors)
        if doc.path in self._base_docs:  # only once added: a refused add deletes nothing
            self.deleted.add(doc.path)

    # -- segments written by other processes (indexing.ray_write) -------------------------------
    @property
    def basis(self) -> Basis | None:
        """The basis new segments are encoded with: the base's (None: a new store fits one)."""
        return self.base.basis if self.base else None

    def segment_spec(self) -> SegmentSpec:
        c = self.compression
        return SegmentSpec(self.dim, self.dtype, self.full_dtype, self.keywords,
                           c.ann if self.base is None else self.base.manifest.compression.ann, c.nlist)

    def segment_folder(self) -> tuple[str, Path]:
        """A new folder of this commit, (name, path), for a segment another process writes with a
        ``SegmentWriter(path, ..., name=name)``; an abort deletes it with the rest. The path is
        absolute: the other process (a Ray worker) has its own working directory."""
        if self._segment is not None:
            raise ConfigError("this writer already writes a segment itself; use add()")
        name, folder = self._commit.new_folder()
        return name, Path(os.path.abspath(folder))

    def add_segment(self, entry: Segment, paths: list[str], basis: Basis | None = None) -> None:
        """A finished segment (``SegmentWriter.finish()``) written into a ``segment_folder``;
        ``paths``: its documents, which replace the base's at the same paths; ``basis``: the one it
        was encoded with, required for a new store (the same for every segment), saved with the
        first. Segments are published in the order they are added; sizes and checksums at commit."""
        if entry.dir not in self._commit.folders or entry.dir in {s.dir for s in self._written}:
            raise StoreError(f"segment {entry.dir} is not a new folder of this commit")
        if self.base is None:
            if basis is None or (self._written_basis is not None and basis is not self._written_basis):
                raise ConfigError("every segment of a new store needs the one basis they were all encoded with")
            self._written_basis = self._written_basis or basis
        self._written.append(entry)
        self.deleted |= set(paths) & set(self._base_docs)

    @property
    def changed(self) -> bool:
        return self._segment is not None or bool(self._written) or bool(self.deleted)

    # -- commit -----------------------------------------------------------------------------
    def commit(self) -> Manifest:
        """Publish the new segment and tombstones (one atomic step), then compact if due."""
        try:
            manifest = self._publish()
            old = self.base is not None and self.base.keyword_settings is None  # no keyword index yet: rewrite it all
            manifest = _compact_if(self.dir, manifest, self.compression, self.keywords, everything=old)
        finally:
            self._release()
        return manifest

    def _publish(self) -> Manifest:
        base, c = self.base, self._commit
        if self._segment is None and not self._written and base is None:
            raise ConfigError("nothing to index: no document produced any text")
        segments = list(base.manifest.segments) if base else []
        documents = base.manifest.documents - len(self.deleted) if base else 0
        for i, seg in enumerate(segments):
            gone = [d for p, (s, d) in self._base_docs.items() if s == i and p in self.deleted]
            if gone:
                segments[i] = self._tombstone(base, i, gone)
        basis_entry = base.manifest.basis if base else None
        basis = base.basis if base else self._written_basis
        new = list(self._written)
        if self._segment is not None:
            spec = self.segment_spec()
            new.append(self._segment.finish(spec.ann, spec.nlist))
            basis = basis or self._segment.basis
        files = list(segment_files(self.full_dtype))
        for entry in new:
            name = entry.dir
            if basis_entry is None:  # a new store: the basis goes with its first segment
                basis.save(c.folders[name])
                basis_entry = (name, c.file_metas(name, BASIS_FILES_ORDER))
            segments.append(replace(entry, files=c.file_metas(name, files)))
            documents += entry.documents
        comp = Compression(basis.pca.dims, float(basis.pca.energy.sum()), basis.fit_vectors, self.dtype,
                           base.manifest.compression.ann if base else self.compression.ann, self.full_dtype, self.dim)
        # a base without a keyword index keeps saying so until the compaction gives all its segments one
        keywords = self.keywords.manifest() if base is None or base.keyword_settings is not None else None
        manifest = Manifest(c.generation, self.model, self.dim, comp, asdict(self.chunker), basis_entry, tuple(segments),
                            documents, keywords, base.manifest.fusion if base else None, writer_versions())
        c.publish(manifest)
        return manifest

    def _tombstone(self, base: Store, i: int, gone: list[DocumentRecord]) -> Segment:
        """Segment ``i`` of the base with the rows of ``gone`` added to its deleted rows."""
        seg = base.segments[i]
        dead = np.zeros(seg.rows, bool) if seg.dead is None else seg.dead.copy()
        for d in gone:
            if d.first_row is None:
                raise StoreError(f"{base.path}: document {d.path!r} has no rows; the store is damaged, rebuild with --refit")
            dead[d.first_row : d.first_row + d.chunks] = True
        name = self._commit.generation
        file = f"deleted-{seg.entry.dir}.npy"
        np.save(self._commit.folders[name] / file, np.flatnonzero(dead).astype(np.int64), allow_pickle=False)
        meta = self._commit.file_metas(name, [file])[file]
        return replace(seg.entry, documents=seg.entry.documents, deleted=Tombstones(name, file, int(dead.sum()), meta))

    def abort(self) -> None:
        """Drop everything written; the store stays as it was."""
        if self._segment is not None:
            self._segment.abort()
        self._commit.abort()
        self._release()

    def _release(self) -> None:
        if self._own_lock:
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()


def _compact_if(store_dir: Path, manifest: Manifest, settings: CompressionSettings, keywords: keyword.KeywordSettings,
                everything: bool = False) -> Manifest:
    """Run the automatic compaction ``compact.plan`` asks for (all segments: ``everything``)."""
    with Store(store_dir, manifest, lazy=True) as store:
        chosen, refit = plan(store, settings.fit_sample)
        if everything:
            chosen = list(range(len(manifest.segments)))
        if not chosen:
            return manifest
        return _compact(store, chosen, refit, settings.fit_sample, keywords)


def compact_store(store_dir: str | Path, refit: bool = False, wait: float = 0.0, fit_sample: int = 50_000) -> tuple[Manifest, Manifest]:
    """``rag compact``: merge every segment into one, dropping deleted rows (``refit``: fit the
    PCA again on the live vectors). Returns the manifests before and after."""
    if not Store.exists(store_dir):  # before the lock, which would make the folder and its .lock
        Store.open(store_dir)  # the StoreError saying it is not a store
    with StoreLock(Path(store_dir), wait) as _, Store.open(store_dir, verify=False, lazy=True) as store:
        keywords = store.keyword_settings or keyword.KeywordSettings()
        return store.manifest, _compact(store, list(range(len(store.segments))), refit, fit_sample, keywords)


def _compact(store: Store, chosen: list[int], refit: bool, fit_sample: int, keywords: keyword.KeywordSettings) -> Manifest:
    """One commit replacing segments ``chosen`` by one merged segment (none if nothing is live)."""
    m = store.manifest
    commit = Commit(store.path)
    try:
        if refit:
            chosen = list(range(len(m.segments)))
        basis = refit_basis(store, chosen, fit_sample) if refit and store.n else store.basis
        name, folder = commit.new_folder()
        writer = SegmentWriter(folder, m.dim, m.compression.dtype, m.compression.full_dtype, keywords, basis, name=name)
        merge_into(writer, store, chosen, same_basis=basis is store.basis)
        entry = writer.finish(m.compression.ann)
        merged = [replace(entry, files=commit.file_metas(name, segment_files(m.compression.full_dtype)))] if entry.rows else []
        basis_entry = m.basis
        if basis is not store.basis:
            basis.save(folder)
            basis_entry = (name, commit.file_metas(name, BASIS_FILES_ORDER))
        segments = [s for i, s in enumerate(m.segments) if i not in chosen]
        at = min(chosen, default=0)  # no segment at all: every document was deleted
        segments[at:at] = merged
        comp = replace(m.compression, pca_energy_kept=float(basis.pca.energy.sum()), pca_fit_vectors=basis.fit_vectors)
        new = replace(m, generation=commit.generation, segments=tuple(segments), basis=basis_entry, compression=comp,
                      keyword=keywords.manifest(), writer=writer_versions(), format_version=2)
        commit.publish(new)
    except BaseException:
        commit.abort()
        raise
    return new


def set_fusion(store_dir: str | Path, section: dict, lock: StoreLock) -> None:
    """Record the store's fusion weights (``rag eval --calibrate``) in its manifest; the caller
    holds ``lock``. Nothing else changes (same generation, same files)."""
    from indexing.files import write_json_atomic
    from indexing.manifest import MANIFEST, read_manifest

    if not lock.held:
        raise StoreError("set_fusion needs the store's lock held")
    store_dir = Path(store_dir)
    write_json_atomic(store_dir / MANIFEST, read_manifest(store_dir).with_fusion(section).to_json())
