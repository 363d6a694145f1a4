"""Write a new store generation: stream chunks and vectors in, swap the manifest atomically.

Crash safety: everything is written into ``DIR/.tmp-gNNNNNN-PID/``, fsynced, renamed to
``DIR/gNNNNNN/``, and only then does ``manifest.json`` (written by rename) point at it. A crash
at any moment leaves the previous manifest pointing at the previous, untouched generation.
The writer holds the store's lock (``indexing.lock``) from before it reads the current
generation until the commit; cleanup removes only folders the store created
(``indexing.generations``) and keeps the previous generation for readers still opening it.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing.chunk import Chunk, ChunkSettings
from indexing.compress import Float8Codec, Pca, default_pca_dims, fit_pca
from indexing.errors import ConfigError, StoreError
from indexing import keyword
from indexing.first_stage import INDEX_CODES, add_vectors, choose_ann, code_bytes, new_index, reduced_vectors, to_ivf
from indexing.faiss_io import write_index_file
from indexing.files import fsync_path, sha256_file, write_json_atomic
from indexing.generations import MARKER, current_generation, is_ours, mark, new_tmp, next_generation, remove_stale
from indexing.lock import StoreLock
from indexing.manifest import FORMAT, FORMAT_VERSION, MANIFEST, writer_versions
from indexing.store import (
    DB_FILE, FULL_FILES, FULL_SCALE_FILE, INDEX_FILE, PCA_ENERGY_FILE, PCA_FILE, REDUCED_SCALE_FILE, Store,
)

SCHEMA = """
CREATE TABLE documents(path TEXT PRIMARY KEY, source TEXT, title TEXT, sha256 TEXT, chunks INTEGER);
CREATE TABLE chunks(row INTEGER PRIMARY KEY, doc_path TEXT, source TEXT, title TEXT, page INTEGER,
                    start INTEGER, "end" INTEGER, text TEXT, extra TEXT);
CREATE INDEX chunks_doc ON chunks(doc_path);
"""


@dataclass(frozen=True)
class CompressionSettings:
    """First stage: PCA to ``pca_dims`` (or to keep ``pca_variance``), codes in ``dtype``."""

    pca_dims: int | None = None  # None (and no variance): a quarter of the embedding dimension
    pca_variance: float | None = None
    dtype: str = "float8"
    full_dtype: str = "float8"  # rerank vectors: float8 (d bytes) or float16 (2d bytes, more recall at 1M)
    ann: str = "auto"  # flat below first_stage.IVF_MIN_VECTORS vectors, IVF above
    nlist: int | None = None
    fit_sample: int = 50_000  # vectors buffered to fit PCA and scales before streaming the rest


@dataclass(frozen=True)
class DocumentRecord:
    path: str
    source: str
    title: str
    sha256: str


class GenerationWriter:
    """Builds the next generation of the store at ``store_dir``. Use as a context manager."""

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
        """``lock``: the store's lock, already held by the caller (who read ``base`` under it);
        without one the writer takes it and refuses a ``base`` that is no longer current."""
        if compression.full_dtype not in ("float8", "float16"):  # checked before anything is written
            raise ConfigError(f"full_dtype={compression.full_dtype!r} is not one of float8, float16")
        self.dir = Path(store_dir)
        self._own_lock = lock is None or not lock.held
        self._lock = (lock or StoreLock(self.dir)).acquire() if self._own_lock else lock
        try:
            self.previous = current_generation(self.dir)  # read under the lock
            if base is not None and base.manifest["generation"] != self.previous:
                raise StoreError(f"{self.dir} was changed by another writer since it was opened; run again")
            self.generation = next_generation(self.dir, self.previous)
            self.tmp = new_tmp(self.dir, self.generation, os.getpid())
        except BaseException:
            self._release()
            raise
        self.model, self.dim, self.chunker, self.compression, self.base = model, dim, chunker, compression, base
        self._db = sqlite3.connect(self.tmp / DB_FILE)
        self._db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
        # the keyword index lives in the same file: an incremental run keeps the base's language
        self.keywords = base.keyword_settings if base is not None and base.keyword_settings else (keywords or keyword.KeywordSettings())
        keyword.create(self._db, self.keywords)
        # an incremental run keeps the base's dtypes: kept rows are copied byte for byte
        self.dtype = base.manifest["compression"]["dtype"] if base else compression.dtype
        self.full_dtype = base.full_dtype if base else ("float8_e4m3fn" if compression.full_dtype == "float8" else "float16")
        self._full = open(self.tmp / FULL_FILES[self.full_dtype], "wb")  # noqa: SIM115
        self.n = 0
        self._pending: list[np.ndarray] = []  # (m, d) float32 batches waiting for the fit
        self._pending_n = 0
        self.pca: Pca | None = None
        self.index = None
        self.fit_vectors = 0  # how many vectors the PCA basis was fitted on
        if base is not None:  # incremental: keep the basis, scales and trained index
            self.fit_vectors = int(base.manifest["compression"].get("pca_fit_vectors", base.n))
            self.pca, self.reduced_codec, self.full_codec = base.pca, base.reduced_codec, base.full_codec
            import faiss

            self.index = faiss.clone_index(base.index)
            self.index.reset()

    # -- adding content ---------------------------------------------------------------------
    def keep(self, doc_paths: set[str], batch: int = 65_536) -> None:
        """Copy the given documents' chunks and vectors from the base generation, unchanged."""
        if self.base is None or not doc_paths:
            return
        self._db.executemany("INSERT INTO documents VALUES (?,?,?,?,?)", self.base.document_rows(doc_paths))
        rows = self.base.rows_of(doc_paths)
        for i in range(0, len(rows), batch):
            part = rows[i : i + batch]  # (b,)
            self._insert_chunks(self.base.chunks(part.tolist()))
            self._full.write(np.ascontiguousarray(self.base.full[part]).tobytes())
            add_vectors(self.index, reduced_vectors(self.base.index, part), self.reduced_codec)

    def add(self, doc: DocumentRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Add a new document: its chunks and their unit-length embeddings (m, d)."""
        if vectors.shape != (len(chunks), self.dim):
            raise ConfigError(f"got {vectors.shape} vectors for {len(chunks)} chunks of dim {self.dim}")
        self._db.execute("INSERT OR REPLACE INTO documents VALUES (?,?,?,?,?)", (doc.path, doc.source, doc.title, doc.sha256, len(chunks)))
        self._insert_chunks(chunks)
        if self.pca is None:
            self._pending.append(np.asarray(vectors, np.float32))
            self._pending_n += len(vectors)
            if self._pending_n >= self.compression.fit_sample:
                self._fit_and_flush()
        else:
            self._write_vectors(vectors)

    def _insert_chunks(self, chunks: Iterable[Chunk]) -> None:
        rows = []
        for c in chunks:
            rows.append((self.n, c.doc_path, c.source, c.title, c.page, c.start, c.end, c.text, c.extra))
            self.n += 1
        self._db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)", rows)
        keyword.add(self._db, [(r[0], r[3], r[7]) for r in rows])

    def _fit_and_flush(self) -> None:
        x = np.concatenate(self._pending) if self._pending else np.zeros((0, self.dim), np.float32)  # (m, d)
        c = self.compression
        dims = c.pca_dims if c.pca_dims is not None or c.pca_variance is not None else default_pca_dims(self.dim)
        self.pca = fit_pca(x, dims=dims, variance=c.pca_variance, max_samples=c.fit_sample)
        self.fit_vectors = min(len(x), c.fit_sample)
        xr = self.pca.transform(x)  # (m, p)
        self.reduced_codec = Float8Codec.for_unit_vectors(self.pca.dims)
        self.full_codec = Float8Codec.for_unit_vectors(self.dim)
        # Stream into a flat index; IVF is built at commit, when the corpus size (hence nlist) is known.
        self.index = new_index(xr, self.dtype, "flat", codec=self.reduced_codec)
        self._pending, self._pending_n = [], 0
        self._write_vectors(x)

    def _write_vectors(self, x: np.ndarray) -> None:
        if self.full_dtype == "float16":
            self._full.write(np.asarray(x, np.float16).tobytes())  # (m, d) float16
        else:
            self._full.write(self.full_codec.encode(x).tobytes())  # (m, d) uint8
        add_vectors(self.index, self.pca.transform(x), self.reduced_codec)

    def _refit_if_outgrown(self, batch: int = 65_536) -> None:
        """A basis fitted on few vectors (say, a store started from one small file) is refitted
        once the store holds more than twice as many, from the stored full vectors: no
        re-embedding. Bases fitted on ``fit_sample`` vectors or more are kept for good."""
        if self.base is None or self.fit_vectors >= min(self.compression.fit_sample, self.n // 2):
            return
        self._full.flush()
        stored = np.memmap(self._full.name, mode="r", shape=(self.n, self.dim),
                           dtype=np.float16 if self.full_dtype == "float16" else np.uint8)

        def full(rows: np.ndarray | slice) -> np.ndarray:  # -> (m, d) float32
            part = stored[rows]
            return part.astype(np.float32) if self.full_dtype == "float16" else self.full_codec.decode(part)

        rng = np.random.default_rng(0)
        sample = np.sort(rng.choice(self.n, min(self.n, self.compression.fit_sample), replace=False))
        x = full(sample)  # (s, d)
        self.pca = fit_pca(x, dims=self.pca.dims)
        self.fit_vectors = len(x)
        self.index = new_index(self.pca.transform(x), self.dtype, "flat", codec=self.reduced_codec)
        for i0 in range(0, self.n, batch):
            add_vectors(self.index, self.pca.transform(full(slice(i0, i0 + batch))), self.reduced_codec)

    # -- finishing --------------------------------------------------------------------------
    def commit(self) -> dict[str, Any]:
        """Write the remaining files, switch the manifest to this generation, drop old ones."""
        import faiss

        if self.pca is None:
            if self._pending_n == 0:
                raise ConfigError("nothing to index: no document produced any text")
            self._fit_and_flush()
        self._refit_if_outgrown()
        keyword.finish(self._db)
        if choose_ann(self.compression.ann, self.n) == "ivf" and not isinstance(self.index, faiss.IndexIVF):
            self.index = to_ivf(self.index, self.dtype, self.reduced_codec, self.compression.nlist)
        self._db.commit()
        n_docs = self._db.execute("SELECT count(*) FROM documents").fetchone()[0]
        self._db.close()
        self._full.close()
        write_index_file(self.index, self.tmp / INDEX_FILE)  # any path, also one that is not UTF-8
        for name, arr in ((PCA_FILE, self.pca.components), (PCA_ENERGY_FILE, self.pca.energy),
                          (REDUCED_SCALE_FILE, self.reduced_codec.scale), (FULL_SCALE_FILE, self.full_codec.scale)):
            np.save(self.tmp / name, np.ascontiguousarray(arr, np.float32), allow_pickle=False)
        files = {}
        for file in sorted(f for f in self.tmp.iterdir() if f.name != MARKER):
            fsync_path(file)
            files[file.name] = {"bytes": file.stat().st_size, "sha256": sha256_file(file)}
        fsync_path(self.tmp)
        final = self.dir / self.generation  # next_generation() picked a name no folder has
        os.replace(self.tmp, final)
        fsync_path(self.dir)
        manifest = self._manifest(files, n_docs)
        write_json_atomic(self.dir / MANIFEST, manifest)
        self._cleanup()
        return manifest

    def _manifest(self, files: dict[str, Any], n_docs: int) -> dict[str, Any]:
        import faiss

        p = self.pca.dims
        ivf = isinstance(self.index, faiss.IndexIVF)
        code = INDEX_CODES[self.dtype]
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "writer": writer_versions(),
            "generation": self.generation,
            "embedding": {"model": self.model, "dim": self.dim, "normalized": True},
            "compression": {
                "pca_dims": p,
                "pca_energy_kept": float(self.pca.energy.sum()),
                "pca_fit_vectors": self.fit_vectors,
                "pca_centered": False,
                "dtype": self.dtype,
                "ann": "ivf" if ivf else "flat",
                "nlist": int(self.index.nlist) if ivf else None,
                "nprobe": int(self.index.nprobe) if ivf else None,
                "index_key": f"PCA{p}," + (f"IVF{self.index.nlist}," if ivf else "") + code,
                "bytes_per_vector": code_bytes(self.index),
                "full_dtype": self.full_dtype,
                "full_bytes_per_vector": self.dim * (2 if self.full_dtype == "float16" else 1),
            },
            "chunker": asdict(self.chunker),
            "keyword": self.keywords.manifest(),
            **({"fusion": self.base.manifest["fusion"]} if self.base is not None and "fusion" in self.base.manifest else {}),
            "counts": {"chunks": self.n, "documents": n_docs},
            "files": files,
        }

    def _cleanup(self) -> None:
        """Drop what earlier runs left, keeping this generation and the one it replaced."""
        if self.previous:
            mark(self.dir / self.previous)  # the store made it: the next commit may drop it
        remove_stale(self.dir, {self.generation, self.previous or self.generation})
        self._release()

    def abort(self) -> None:
        """Drop the unfinished generation; the store stays as it was."""
        for closer in (self._db.close, self._full.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort while already failing
                pass
        if is_ours(self.tmp):
            shutil.rmtree(self.tmp, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._own_lock:
            self._lock.release()

    def __enter__(self) -> GenerationWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is not None:
            self.abort()

