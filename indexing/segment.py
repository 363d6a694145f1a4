"""One immutable segment: first-stage codes (a FAISS index file), full vectors, chunk database.

``SegmentWriter`` writes a new segment into a folder (fitting the store's basis first when the
store has none yet); ``SegmentReader`` reads one, with its deleted rows (tombstones) applied to
every search. Rows are local to the segment; ``indexing.store`` numbers them globally.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from indexing import keyword
from indexing.basis import Basis
from indexing.chunk import Chunk
from indexing.chunk_db import DB_FILE, ChunkDb, ChunkDbWriter, DocumentRecord
from indexing.errors import ConfigError, StoreError
from indexing.faiss_check import check_index_file
from indexing.faiss_io import read_index_file, write_index_file
from indexing.first_stage import add_vectors, choose_ann, code_bytes, new_index, to_ivf
from indexing.float8_scan import codes_view, float8_search
from indexing.manifest import FULL_FILE, Segment

INDEX_FILE = "index.faiss"
# over-fetch when a segment has deleted rows: ask for c * rows / live * OVERFETCH (+ 16) first;
# if some query still has fewer than c live rows, ask again for c + deleted (always enough)
OVERFETCH = 1.25


class SegmentWriter:
    """Streams documents into a new segment in ``folder``. Without a ``basis`` it buffers the
    first ``fit_sample`` vectors, fits one on them (see ``Basis.fit``), then streams the rest."""

    def __init__(self, folder: Path, dim: int, dtype: str, full_dtype: str, keywords: keyword.KeywordSettings,
                 basis: Basis | None = None, pca_dims: int | None = None, pca_variance: float | None = None,
                 fit_sample: int = 50_000, name: str | None = None) -> None:
        """``name``: the folder's name once published (the commit writes into a temporary one)."""
        if full_dtype not in FULL_FILE:
            raise ConfigError(f"full_dtype={full_dtype!r} is not one of {', '.join(FULL_FILE)}")
        self.folder, self.dim, self.dtype, self.full_dtype = folder, dim, dtype, full_dtype
        self.name = name or folder.name
        self.fit = (pca_dims, pca_variance, fit_sample)
        self.db = ChunkDbWriter(folder / DB_FILE, keywords)
        self._full = open(folder / FULL_FILE[full_dtype], "wb")  # noqa: SIM115
        self.basis = basis
        self.index = None  # made at the first vectors: a sq8 index is trained on them
        self._pending: list[np.ndarray] = []  # (m, d) float32 batches waiting for the fit
        self._pending_n = 0

    @property
    def n(self) -> int:
        return self.db.n

    def _ensure_index(self, xr: np.ndarray) -> None:
        """Streamed into a flat index (trained on the first reduced vectors xr (m, p) where the
        dtype needs it); IVF is built in finish(), when the size (hence nlist) is known."""
        if self.index is None:
            self.index = new_index(xr, self.dtype, "flat", codec=self.basis.reduced_codec)

    def add(self, doc: DocumentRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        """Append a document: its chunks and their unit-length embeddings (m, d)."""
        if vectors.shape != (len(chunks), self.dim):
            raise ConfigError(f"got {vectors.shape} vectors for {len(chunks)} chunks of dim {self.dim}")
        self.db.add(doc, chunks)
        if self.basis is None:
            self._pending.append(np.asarray(vectors, np.float32))
            self._pending_n += len(vectors)
            if self._pending_n >= self.fit[2]:
                self._fit_and_flush()
        else:
            self.add_vectors(vectors)

    def add_vectors(self, x: np.ndarray) -> None:
        """Full vectors x (m, d) of rows already added to the database."""
        if self.full_dtype == "float16":
            self._full.write(np.asarray(x, np.float16).tobytes())  # (m, d) float16
        else:
            self._full.write(self.basis.full_codec.encode(x).tobytes())  # (m, d) uint8
        xr = self.basis.pca.transform(x)  # (m, p)
        self._ensure_index(xr)
        add_vectors(self.index, xr, self.basis.reduced_codec)

    def add_encoded(self, full: np.ndarray, codes: np.ndarray) -> None:
        """Stored vectors copied byte for byte: full (m, d) as on disk, first-stage codes (m, p)."""
        self._full.write(np.ascontiguousarray(full).tobytes())
        self._ensure_index(np.zeros((0, self.basis.pca.dims), np.float32))
        self.index.add_sa_codes(np.ascontiguousarray(codes, np.uint8))

    def add_stored(self, full: np.ndarray, xr: np.ndarray) -> None:
        """Stored vectors of the same basis: full (m, d) as on disk, byte for byte, and the decoded
        first-stage vectors xr (m, p), which encode to the same codes (float8, float16, float32)."""
        self._full.write(np.ascontiguousarray(full).tobytes())
        self._ensure_index(xr)
        add_vectors(self.index, xr, self.basis.reduced_codec)

    def _fit_and_flush(self) -> None:
        x = np.concatenate(self._pending) if self._pending else np.zeros((0, self.dim), np.float32)  # (m, d)
        self.basis = Basis.fit(x, *self.fit)
        self._pending, self._pending_n = [], 0
        self.add_vectors(x)

    def finish(self, ann: str = "auto", nlist: int | None = None) -> Segment:
        """Close the files; the entry's ``files`` are filled in by the commit (checksums)."""
        import faiss

        if self.basis is None:
            if self._pending_n == 0:
                raise ConfigError("nothing to index: no document produced any text")
            self._fit_and_flush()
        n_docs = self.db.finish()
        self._full.close()
        self._ensure_index(np.zeros((0, self.basis.pca.dims), np.float32))  # an empty segment (all rows gone)
        if self.n and choose_ann(ann, self.n) == "ivf" and not isinstance(self.index, faiss.IndexIVF):  # nothing to cluster: flat
            self.index = to_ivf(self.index, self.dtype, self.basis.reduced_codec, nlist)
        write_index_file(self.index, self.folder / INDEX_FILE)  # any path, also one that is not UTF-8
        ivf = isinstance(self.index, faiss.IndexIVF)
        return Segment(self.name, self.n, n_docs, {}, "ivf" if ivf else "flat",
                       int(self.index.nlist) if ivf else None, int(self.index.nprobe) if ivf else None, code_bytes(self.index))

    def abort(self) -> None:
        for closer in (self.db.close, self._full.close):
            try:
                closer()
            except Exception:  # noqa: BLE001 - best effort while already failing
                pass


def segment_files(entry_full_dtype: str) -> tuple[str, ...]:
    """The files a segment holds."""
    return INDEX_FILE, FULL_FILE[entry_full_dtype], DB_FILE


def live_top(search, rows: int, live: int, is_dead, c: int) -> tuple[np.ndarray, np.ndarray]:  # type: ignore[no-untyped-def]
    """The ``c`` best live rows of ``rows`` (``live`` of them live) for a ``search(m) -> D, I (nq, m)``
    over all rows, ``is_dead(I) -> bool mask`` (None: nothing deleted): D, I (nq, c), -1 where none.
    Over-fetches ``c * rows / live * OVERFETCH + 16``; if a query still lacks ``c`` live rows,
    fetches ``c + (rows - live)``, which always holds them."""
    c = max(1, min(c, live))
    if is_dead is None:
        return search(c)
    m = min(rows, int(c * rows / max(1, live) * OVERFETCH) + 16)
    D, I = search(m)
    keep = (I >= 0) & ~is_dead(np.maximum(I, 0))  # (nq, m)
    if m < rows and keep.sum(axis=1).min() < c:  # deleted rows crowd the top: fetch enough
        D, I = search(min(rows, c + rows - live))
        keep = (I >= 0) & ~is_dead(np.maximum(I, 0))
    order = np.argsort(~keep, axis=1, kind="stable")[:, :c]  # live first, in score order
    D, I = np.take_along_axis(D, order, 1), np.take_along_axis(I, order, 1)
    gone = ~np.take_along_axis(keep, order, 1)
    D[gone], I[gone] = -np.inf, -1
    return D, I


class SegmentReader:
    """A read-only segment: codes in FAISS, memory-mapped full vectors, its chunk database, and
    the mask of its deleted rows."""

    def __init__(self, store_dir: Path, entry: Segment, basis: Basis, dtype: str, full_dtype: str, lazy: bool = False) -> None:
        self.entry, self.basis, self.dtype, self.full_dtype = entry, basis, dtype, full_dtype
        self.folder = store_dir / entry.dir
        self.rows = entry.rows
        self.full = self._full_vectors()  # (rows, d) uint8 float8 codes or float16, memory-mapped
        self.dead = self._tombstones(store_dir)  # (rows,) bool, or None; after the size check above bounds rows
        self._index = None
        self._db: ChunkDb | None = None
        if not lazy:
            self.index, self.db  # noqa: B018 - read and checked now, not at the first search

    @property
    def live(self) -> int:
        return self.entry.live

    @property
    def index(self):  # type: ignore[no-untyped-def]
        if self._index is None:
            self._index = self._read_index()
        return self._index

    @property
    def db(self) -> ChunkDb:
        if self._db is None:
            self._db = ChunkDb(self.folder / DB_FILE, self.rows)
        return self._db

    def _tombstones(self, store_dir: Path) -> np.ndarray | None:
        t = self.entry.deleted
        if t is None or t.count == 0:
            return None
        file = store_dir / t.dir / t.file
        try:
            rows = np.load(file, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - a damaged header raises SyntaxError, ValueError, ...
            raise StoreError(f"{file} is not a readable tombstone file: {exc}") from exc
        if rows.dtype != np.int64 or rows.shape != (t.count,) or (len(rows) and (rows[0] < 0 or rows[-1] >= self.rows)) \
                or np.any(np.diff(rows) <= 0):
            raise StoreError(f"{file} does not hold {t.count} sorted rows of segment {self.entry.dir}: damaged")
        dead = np.zeros(self.rows, bool)
        dead[rows] = True
        return dead

    def _full_vectors(self) -> np.ndarray:
        file = self.folder / FULL_FILE[self.full_dtype]
        dtype = np.dtype(np.uint8 if self.full_dtype == "float8" else np.float16)
        d = self.basis.pca.components.shape[0]
        if file.stat().st_size != self.rows * d * dtype.itemsize:
            raise StoreError(f"{file} has {file.stat().st_size} bytes, expected {self.rows} x {d} {dtype}")
        if self.rows == 0:
            return np.zeros((0, d), dtype)
        return np.memmap(file, dtype=dtype, mode="r", shape=(self.rows, d))

    def _read_index(self):  # type: ignore[no-untyped-def]
        import faiss

        file = self.folder / INDEX_FILE
        p = self.basis.pca.dims
        check_index_file(file, self.rows, p)  # before FAISS trusts a size in it
        try:
            index = read_index_file(file)  # any path, also one that is not UTF-8
        except RuntimeError as exc:
            raise StoreError(f"{file} is not a readable FAISS index: {exc}") from exc
        if isinstance(index, faiss.IndexIVF) != (self.entry.ann == "ivf"):
            raise StoreError(f"{file} does not hold the index kind the manifest says")
        if index.ntotal != self.rows or index.d != p:
            raise StoreError(f"{file} holds {index.ntotal} x {index.d}, the manifest says {self.rows} x {p}")
        if self.entry.nprobe:
            index.nprobe = self.entry.nprobe
        return index

    # -- reading ----------------------------------------------------------------------------
    def decode_full(self, rows: np.ndarray) -> np.ndarray:
        """Local rows (m,) -> (m, d) float32 full vectors."""
        stored = self.full[np.asarray(rows, np.int64)]
        return stored.astype(np.float32) if self.full_dtype == "float16" else self.basis.full_codec.decode(stored)

    def read_full(self, rows: np.ndarray) -> np.ndarray:
        """Stored full vectors of ascending local rows (m,), as on disk: (m, d) uint8 or float16.
        Read from the file (the span from the first to the last row), not through the memory map,
        so a compaction streaming a whole segment does not keep every page it touched resident."""
        rows = np.asarray(rows, np.int64)
        if not len(rows):
            return self.full[:0].copy()
        row_bytes = self.full.shape[1] * self.full.dtype.itemsize
        with open(self.folder / FULL_FILE[self.full_dtype], "rb") as fh:
            fh.seek(int(rows[0]) * row_bytes)
            span = np.fromfile(fh, self.full.dtype, (int(rows[-1]) - int(rows[0]) + 1) * self.full.shape[1])
        return span.reshape(-1, self.full.shape[1])[rows - rows[0]]

    def codes(self, rows: np.ndarray) -> np.ndarray:
        """First-stage float8 codes of local rows (m,) of a flat float8 segment: (m, p) uint8."""
        return codes_view(self.index)[np.asarray(rows, np.int64)]

    def live_rows(self) -> np.ndarray:
        """Local rows not deleted, ascending: (live,) int64."""
        return np.arange(self.rows, dtype=np.int64) if self.dead is None else np.flatnonzero(~self.dead)

    def top(self, xr: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``c`` best live rows for reduced queries xr (nq, p): D, I (nq, c) local (-1: none)."""
        dead = self.dead
        return live_top(lambda m: self._search(xr, m), self.rows, self.live, None if dead is None else lambda I: dead[I], c)

    @property
    def flat_float8(self) -> bool:
        """Codes the float8 kernel scans (a flat float8 index), so many segments go in one call."""
        import faiss

        return self.dtype == "float8" and isinstance(self.index, faiss.IndexPQ)

    def _search(self, xr: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        import faiss

        index = self.index
        if isinstance(index, faiss.IndexPQ) and self.dtype == "float8":
            return float8_search(index, self.basis.reduced_codec, xr, c)
        return index.search(np.ascontiguousarray(xr, np.float32), c)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
