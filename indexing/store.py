"""Open a store for reading: manifest, FAISS first stage, float8 full vectors, chunk metadata.

A store is a folder::

    manifest.json        versioned record; names the current generation and checksums its files
    g000003/index.faiss  first stage: PCA-reduced float8 codes inside FAISS
    g000003/pca.npy      (d, p) projection          g000003/full.e4m3   (n, d) float8 full vectors
    g000003/*scale.npy   float8 scales              g000003/chunks.sqlite  text + metadata

A writer builds a new generation folder beside the current one and then swaps the manifest,
so readers see either the old store or the new one (see ``indexing.writer``). The previous
generation is kept until the next commit; a reader whose generation vanished while it was
opening it (two commits in that moment) reads the manifest again.

A store may come from someone else: SQLite is opened read-only with ``trusted_schema=OFF``,
its schema is checked (the expected tables, no views), and every query runs under a time
limit; ``index.faiss`` is walked (``indexing.faiss_check``) before FAISS reads it.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence
from typing import Any

import numpy as np

from indexing import keyword
from indexing.chunk import Chunk
from indexing.compress import Float8Codec, Pca
from indexing.errors import StoreError, StoreMismatchError
from indexing.faiss_check import check_index_file
from indexing.faiss_io import read_index_file
from indexing.files import sha256_file
from indexing.generations import current_generation
from indexing.manifest import read_manifest

INDEX_FILE = "index.faiss"
PCA_FILE = "pca.npy"
PCA_ENERGY_FILE = "pca_energy.npy"
REDUCED_SCALE_FILE = "reduced_scale.npy"
FULL_SCALE_FILE = "full_scale.npy"
FULL_FILE = "full.e4m3"
FULL_FILES = {"float8_e4m3fn": FULL_FILE, "float16": "full.f16"}  # manifest full_dtype -> file
DB_FILE = "chunks.sqlite"
OPEN_ATTEMPTS = 4  # a generation can vanish under a reader only if two commits land while it opens
QUERY_SECONDS = 30.0  # a chunk-database query running longer is stopped (a hostile view, a huge table)
TABLE_COLUMNS = {
    "documents": {"path", "source", "title", "sha256", "chunks"},
    "chunks": {"row", "doc_path", "source", "title", "page", "start", "end", "text", "extra"},
}


class TimedConnection(sqlite3.Connection):
    """A connection whose every ``execute`` may run at most QUERY_SECONDS (progress handler)."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.deadline = time.monotonic() + QUERY_SECONDS
        self.set_progress_handler(lambda: time.monotonic() > self.deadline, 10_000)

    def execute(self, *args, **kwargs) -> sqlite3.Cursor:  # type: ignore[no-untyped-def, override]
        self.deadline = time.monotonic() + QUERY_SECONDS
        return super().execute(*args, **kwargs)


@dataclass(frozen=True)
class ChunkRow(Chunk):
    """A stored chunk: a Chunk plus its row in the vector files."""

    row: int = -1


class Store:
    """A read-only view of one generation of a store. Cheap to open: vectors are memory-mapped."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self.manifest = manifest
        self.gen_dir = path / manifest["generation"]
        comp = manifest["compression"]
        self.n = manifest["counts"]["chunks"]
        self.dim = manifest["embedding"]["dim"]
        self.pca = Pca(self._npy(PCA_FILE, (self.dim, comp["pca_dims"])), self._npy(PCA_ENERGY_FILE, (comp["pca_dims"],)))
        self.reduced_codec = Float8Codec(self._npy(REDUCED_SCALE_FILE, (comp["pca_dims"],)))
        self.full_codec = Float8Codec(self._npy(FULL_SCALE_FILE, (self.dim,)))
        self.full_dtype = manifest["compression"]["full_dtype"]
        self.full = self._full_vectors()  # (n, d) float8 codes (uint8) or float16, memory-mapped
        self.index = self._read_index()
        self._db = self._connect()

    @classmethod
    def open(cls, path: str | Path, model: str | None = None, dim: int | None = None, verify: bool = True) -> Store:
        """Open the store at ``path``; with ``model``/``dim``, fail unless they match the store's.

        A writer that replaced the generation while it was being opened is not damage: the
        open starts again from the new manifest."""
        path = Path(path)
        for _ in range(OPEN_ATTEMPTS):
            manifest = read_manifest(path)
            try:
                return cls._open_generation(path, manifest, model, dim, verify)
            except StoreMismatchError:
                raise
            except (StoreError, OSError) as exc:
                if current_generation(path) == manifest["generation"]:  # not replaced: the error is real
                    if isinstance(exc, OSError):
                        raise StoreError(f"{path}: cannot read {manifest['generation']}: {exc}") from exc
                    raise
        raise StoreError(f"{path} was replaced by writers {OPEN_ATTEMPTS} times while it was being opened; try again")

    @classmethod
    def _open_generation(cls, path: Path, manifest: dict[str, Any], model: str | None, dim: int | None, verify: bool) -> Store:
        emb = manifest["embedding"]
        if (model is not None and model != emb["model"]) or (dim is not None and dim != emb["dim"]):
            raise StoreMismatchError(
                f"store {path} was built with embedding model {emb['model']!r} (dim {emb['dim']}), "
                f"but {model!r} (dim {dim}) was asked for; use the store's model or rebuild with --refit"
            )
        gen_dir = path / manifest["generation"]
        for name, meta in manifest["files"].items():
            file = gen_dir / name
            if not file.is_file():
                raise StoreError(f"{file} is missing; the store is damaged, rebuild with `rag index ... --refit`")
            if file.stat().st_size != meta["bytes"]:
                raise StoreError(f"{file} has {file.stat().st_size} bytes, the manifest says {meta['bytes']}: damaged")
            if verify and sha256_file(file) != meta["sha256"]:
                raise StoreError(f"{file} does not match its checksum in the manifest: damaged or tampered with")
        return cls(path, manifest)

    # -- reading the files ------------------------------------------------------------------
    def _file(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise StoreError(f"{self.path / 'manifest.json'} does not list {name}")
        return self.gen_dir / name

    def _npy(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        file = self._file(name)
        try:
            arr = np.load(file, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - a damaged header raises SyntaxError, TokenError, ...
            raise StoreError(f"{file} is not a readable .npy array: {exc}") from exc
        if arr.shape != shape or arr.dtype != np.float32 or not np.all(np.isfinite(arr)):
            raise StoreError(f"{file} holds {arr.dtype}{arr.shape}, expected finite float32{shape}")
        return arr

    def _full_vectors(self) -> np.ndarray:
        if self.full_dtype not in FULL_FILES:
            raise StoreError(f"{self.path / 'manifest.json'}: full_dtype {self.full_dtype!r} is not one of {sorted(FULL_FILES)}")
        file = self._file(FULL_FILES[self.full_dtype])
        dtype = np.dtype(np.uint8 if self.full_dtype == "float8_e4m3fn" else np.float16)
        if file.stat().st_size != self.n * self.dim * dtype.itemsize:
            raise StoreError(f"{file} has {file.stat().st_size} bytes, expected {self.n} x {self.dim} {dtype}")
        if self.n == 0:
            return np.zeros((0, self.dim), dtype)
        return np.memmap(file, dtype=dtype, mode="r", shape=(self.n, self.dim))

    def _read_index(self):  # type: ignore[no-untyped-def]
        import faiss

        file = self._file(INDEX_FILE)
        check_index_file(file, self.n, self.pca.dims)  # before FAISS trusts a size in it
        try:
            index = read_index_file(file)  # any path, also one that is not UTF-8
        except RuntimeError as exc:
            raise StoreError(f"{file} is not a readable FAISS index: {exc}") from exc
        if isinstance(index, faiss.IndexIVF) != (self.manifest["compression"]["ann"] == "ivf"):
            raise StoreError(f"{file} does not hold the index kind the manifest says")
        if index.ntotal != self.n or index.d != self.pca.dims:
            raise StoreError(f"{file} holds {index.ntotal} x {index.d}, the manifest says {self.n} x {self.pca.dims}")
        return index

    def _connect(self) -> sqlite3.Connection:
        file = self._file(DB_FILE)
        try:
            db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, factory=TimedConnection)
            db.execute("PRAGMA trusted_schema=OFF")
            _check_schema(db, file)
            (count,) = db.execute("SELECT count(*) FROM chunks").fetchone()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{file} is not a readable chunk database: {exc}") from exc
        if count != self.n:
            raise StoreError(f"{file} has {count} chunks, the manifest says {self.n}")
        return db

    # -- queries ----------------------------------------------------------------------------
    def chunks(self, rows: list[int]) -> list[ChunkRow]:
        """The chunks at ``rows``, in that order."""
        if not rows:
            return []
        marks = ",".join("?" * len(rows))
        found = {r[-1]: ChunkRow(*r) for r in self.read(
            f'SELECT doc_path, source, title, page, start, "end", text, extra, row FROM chunks WHERE row IN ({marks})',
            [int(r) for r in rows],
        )}
        missing = [r for r in rows if r not in found]
        if missing:
            raise StoreError(f"{self._file(DB_FILE)} has no chunk rows {missing[:5]}: damaged")
        return [found[int(r)] for r in rows]

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only SQL statement on the chunk database, through the hardened
        connection (time limit, schema checked); an unreadable database is a StoreError."""
        try:
            return self._db.execute(sql, list(params)).fetchall()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self._file(DB_FILE)} cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc

    def documents(self) -> dict[str, tuple[str, int, str]]:
        """Indexed documents: path -> (sha256, number of chunks, source shown in citations)."""
        return {p: (h, n, src) for p, h, n, src in self.read("SELECT path, sha256, chunks, source FROM documents")}

    def document_rows(self, doc_paths: set[str]) -> list[tuple[str, str, str, str, int]]:
        """Rows (path, source, title, sha256, chunks) of the given documents."""
        return [r for r in self.read("SELECT path, source, title, sha256, chunks FROM documents") if r[0] in doc_paths]

    def rows_of(self, doc_paths: set[str]) -> np.ndarray:
        """Rows of every chunk of the given documents, ascending: (m,) int64."""
        try:  # streamed, not read(): a store may hold millions of chunks and few of them are asked for
            rows = [r for (r, p) in self._db.execute("SELECT row, doc_path FROM chunks ORDER BY row") if p in doc_paths]
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self._file(DB_FILE)} cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc
        return np.asarray(rows, np.int64)

    @property
    def keyword_settings(self) -> keyword.KeywordSettings | None:
        """How the keyword index was tokenised; None for a store written before it existed."""
        return keyword.settings_from_manifest(self.manifest, self.path)

    def keyword_search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top ``k`` of ``query``: scores (m,), rows (m,), m <= k (see indexing.keyword)."""
        return keyword.search(self._db, query, k, keyword.require(self.keyword_settings).language)

    def keyword_all(self, query: str) -> tuple[np.ndarray, np.ndarray]:
        """BM25 of every chunk matching ``query``, unsorted: scores (m,), rows (m,)."""
        return keyword.search_all(self._db, query, keyword.require(self.keyword_settings).language)

    def keyword_ideal(self, query: str) -> float:
        """Sum of the IDFs of the query's terms (see indexing.keyword.ideal_score)."""
        return keyword.ideal_score(self._db, query, self.n, keyword.require(self.keyword_settings).language)

    def keyword_bytes(self) -> int | None:
        """Bytes of the keyword index inside chunks.sqlite (None: no keyword index)."""
        return keyword.index_bytes(self._db) if self.keyword_settings else None

    def decode_full(self, rows: np.ndarray) -> np.ndarray:
        """rows: (m,) -> (m, d) float32 full vectors from the float8 (or float16) file."""
        stored = self.full[np.asarray(rows, np.int64)]
        if self.full_dtype == "float16":
            return stored.astype(np.float32)
        return self.full_codec.decode(stored)

    @property
    def bytes_per_vector(self) -> int:
        """First-stage bytes per vector (what a search scans)."""
        return int(self.manifest["compression"]["bytes_per_vector"])

    @property
    def store_bytes(self) -> int:
        return sum(meta["bytes"] for meta in self.manifest["files"].values())

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _check_schema(db: sqlite3.Connection, file: Path) -> None:
    """Tables with the columns the store reads, and no views: a view runs arbitrary SQL on every
    read (a recursive one never ends). Triggers never fire on a read-only connection."""
    kinds = dict(db.execute("SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view')").fetchall())
    views = sorted(name for name, kind in kinds.items() if kind == "view")
    if views:
        raise StoreError(f"{file} holds views ({', '.join(map(repr, views[:3]))}); a store's database has tables only")
    for table, columns in TABLE_COLUMNS.items():
        have = {row[1] for row in db.execute(f'PRAGMA table_info("{table}")')} if kinds.get(table) == "table" else set()
        if not columns <= have:
            raise StoreError(f"{file}: table {table!r} is missing or lacks columns {sorted(columns - have)}")
