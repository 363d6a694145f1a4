"""Open a store for reading: its manifest, basis and segments, as one searchable whole.

A store is a folder (docs/store-format.md)::

    manifest.json             the catalogue: basis, ordered segments, tombstones, checksums
    g000001/pca.npy ...       the basis (PCA, float8 scales), in the folder of the commit that fitted it
    g000001/index.faiss       a segment: first-stage float8 codes inside FAISS,
    g000001/full.e4m3         float8 full vectors (rerank), chunks.sqlite (text, metadata, keyword index)
    g000004/deleted-g000001.npy   rows of segment g000001 deleted by commit g000004

Global rows number the segments' rows in manifest order (deleted rows keep their numbers until
a compaction); they are what searches return. Writers (``indexing.writer``) add folders and swap
the manifest atomically, so readers see the old store or the new one. A folder stays while the
current or the previous manifest names it; a reader whose folder vanished while it was opening
(two commits in that moment) reads the manifest again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from indexing import bm25, keyword
from indexing.basis import Basis
from indexing.chunk_db import ChunkRow, DocumentRecord
from indexing.compress import Float8Codec, Pca
from indexing.errors import StoreError, StoreMismatchError
from indexing.files import sha256_file
from indexing.generations import current_generation
from indexing.manifest import MANIFEST, FileMeta, Manifest, is_store, read_manifest
from indexing.segment import SegmentReader

OPEN_ATTEMPTS = 4  # a generation can vanish under a reader only if two commits land while it opens

__all__ = ["ChunkRow", "DocumentRecord", "Store"]


@dataclass(frozen=True)
class KeywordQuery:
    """A query's keyword terms after stop words and the postings budget (``Store.keyword_query``)."""

    terms: list[str]  # as the user wrote them (lowercase)
    stemmed: list[str]  # the index's form of each
    df: dict[str, int]  # document frequency of each stemmed term, summed over the segments
    segment_df: tuple[dict[str, int], ...] = ()  # each segment's own (empty: unknown, an old store)


class Store:
    """A read-only view of one committed state of a store. Cheap to open: vectors are
    memory-mapped; ``lazy`` also defers reading each segment's index and database to first use."""

    def __init__(self, path: Path, manifest: Manifest, lazy: bool = False) -> None:
        self.path = path
        self.manifest = manifest
        c = manifest.compression
        self.dim = manifest.dim
        self.full_dtype = c.full_dtype
        self.basis = Basis.load(path / manifest.basis[0], self.dim, c.pca_dims, c.pca_fit_vectors)
        self.segments = [SegmentReader(path, s, self.basis, c.dtype, c.full_dtype, lazy) for s in manifest.segments]
        self.offsets = np.cumsum([0] + [s.rows for s in manifest.segments]).astype(np.int64)  # (S + 1,)
        self.n = manifest.chunks  # live chunks
        self.rows = manifest.rows  # global row space, deleted rows included
        self._dead: np.ndarray | None = None
        self._lengths: tuple[list[np.ndarray], float] | None = None  # row lengths, read at the first keyword search

    @property
    def pca(self) -> Pca:
        return self.basis.pca

    @property
    def reduced_codec(self) -> Float8Codec:
        return self.basis.reduced_codec

    @property
    def full_codec(self) -> Float8Codec:
        return self.basis.full_codec

    @staticmethod
    def exists(path: str | Path) -> bool:
        """Whether ``path`` holds a store (it may still be damaged: ``open`` checks)."""
        return is_store(path)

    @classmethod
    def open(cls, path: str | Path, model: str | None = None, dim: int | None = None, verify: bool = True,
             lazy: bool = False) -> Store:
        """Open the store at ``path``; with ``model``/``dim``, fail unless they match the store's.
        ``verify`` checks every file's checksum (sizes are always checked).

        A writer that replaced the manifest while the store was being opened is not damage:
        the open starts again from the new manifest."""
        path = Path(path)
        for _ in range(OPEN_ATTEMPTS):
            manifest = read_manifest(path)
            try:
                return cls._open_checked(path, manifest, model, dim, verify, lazy)
            except StoreMismatchError:
                raise
            except (StoreError, OSError) as exc:
                if current_generation(path) == manifest.generation:  # not replaced: the error is real
                    if isinstance(exc, OSError):
                        raise StoreError(f"{path}: cannot read {manifest.generation}: {exc}") from exc
                    raise
        raise StoreError(f"{path} was replaced by writers {OPEN_ATTEMPTS} times while it was being opened; try again")

    @classmethod
    def _open_checked(cls, path: Path, manifest: Manifest, model: str | None, dim: int | None, verify: bool, lazy: bool) -> Store:
        if (model is not None and model != manifest.model) or (dim is not None and dim != manifest.dim):
            raise StoreMismatchError(
                f"store {path} was built with embedding model {manifest.model!r} (dim {manifest.dim}), "
                f"but {model!r} (dim {dim}) was asked for; use the store's model or rebuild with --refit"
            )
        for file, meta in files_of(path, manifest):
            if not file.is_file():
                raise StoreError(f"{file} is missing; the store is damaged, rebuild with `rag index ... --refit`")
            if file.stat().st_size != meta.bytes:
                raise StoreError(f"{file} has {file.stat().st_size} bytes, the manifest says {meta.bytes}: damaged")
            if verify and sha256_file(file) != meta.sha256:
                raise StoreError(f"{file} does not match its checksum in the manifest: damaged or tampered with")
        return cls(path, manifest, lazy)

    # -- rows -------------------------------------------------------------------------------
    def locate(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Global rows (m,) -> segment numbers (m,), local rows (m,)."""
        rows = np.asarray(rows, np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self.rows):
            raise StoreError(f"rows {rows[(rows < 0) | (rows >= self.rows)][:5].tolist()} are not in {self.path}")
        seg = np.searchsorted(self.offsets, rows, side="right") - 1
        return seg, rows - self.offsets[seg]

    def is_live(self, rows: np.ndarray) -> np.ndarray:
        """(m,) bool: the global rows that are not deleted."""
        seg, local = self.locate(rows)
        out = np.ones(len(seg), bool)
        for s in np.unique(seg):
            dead = self.segments[s].dead
            if dead is not None:
                out[seg == s] = ~dead[local[seg == s]]
        return out

    def dead_mask(self) -> np.ndarray:
        """(rows,) bool: the deleted global rows (made once per open store)."""
        if self._dead is None:
            dead = np.zeros(self.rows, bool)
            for s, seg in enumerate(self.segments):
                if seg.dead is not None:
                    dead[self.offsets[s] : self.offsets[s + 1]] = seg.dead
            self._dead = dead
        return self._dead

    def decode_full(self, rows: np.ndarray) -> np.ndarray:
        """Global rows (m,) -> (m, d) float32 full vectors."""
        seg, local = self.locate(rows)
        out = np.empty((len(seg), self.dim), np.float32)
        for s in np.unique(seg):
            out[seg == s] = self.segments[s].decode_full(local[seg == s])
        return out

    # -- chunks and documents ---------------------------------------------------------------
    def chunks(self, rows: list[int]) -> list[ChunkRow]:
        """The chunks at global ``rows``, in that order (their ``row`` global too)."""
        if not rows:
            return []
        seg, local = self.locate(np.asarray(rows, np.int64))
        found: dict[int, ChunkRow] = {}
        for s in np.unique(seg):
            base = int(self.offsets[s])
            for r, c in self.segments[s].db.chunks(local[seg == s].tolist()).items():
                found[base + r] = _global(c, base)
        missing = [r for r in rows if int(r) not in found]
        if missing:
            raise StoreError(f"{self.path} has no chunk rows {missing[:5]}: damaged")
        return [found[int(r)] for r in rows]

    def document_records(self) -> dict[str, tuple[int, DocumentRecord]]:
        """Live documents: path -> (segment number, record with its segment-local first row)."""
        out: dict[str, tuple[int, DocumentRecord]] = {}
        for s, seg in enumerate(self.segments):
            for doc in seg.db.documents():
                if doc.first_row is not None and seg.dead is not None and seg.dead[doc.first_row]:
                    continue
                out[doc.path] = (s, doc)
        return out

    def documents(self) -> dict[str, tuple[str, int, str]]:
        """Indexed documents: path -> (sha256, number of chunks, source shown in citations)."""
        return {p: (d.sha256, d.chunks, d.source) for p, (_, d) in self.document_records().items()}

    def rows_of(self, doc_paths: set[str]) -> np.ndarray:
        """Global rows of every chunk of the given (live) documents, ascending: (m,) int64."""
        parts = [np.arange(d.first_row, d.first_row + d.chunks, dtype=np.int64) + self.offsets[s]
                 for p, (s, d) in self.document_records().items() if p in doc_paths and d.first_row is not None]
        return np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.int64)

    def chunks_of(self, doc_paths: list[str]) -> list[ChunkRow]:
        """Live chunks of the documents at ``doc_paths`` (global rows)."""
        out = []
        for s, seg in enumerate(self.segments):
            base = int(self.offsets[s])
            out += [_global(c, base) for c in seg.db.by_paths(doc_paths) if seg.dead is None or not seg.dead[c.row]]
        return out

    def rows_where(self, where: str, params: list[Any]) -> np.ndarray:
        """Live global rows whose chunk satisfies the SQL condition ``where`` (built by the caller
        from constants and ``?`` parameters), ascending: (m,) int64."""
        parts = []
        for s, seg in enumerate(self.segments):
            local = np.asarray(seg.db.rows_where(where, params), np.int64)
            if seg.dead is not None:
                local = local[~seg.dead[local]]
            parts.append(local + self.offsets[s])
        return np.concatenate(parts) if parts else np.zeros(0, np.int64)

    def iter_chunks(self):  # type: ignore[no-untyped-def]
        """Every live chunk in global row order (ChunkRow, global row)."""
        for s, seg in enumerate(self.segments):
            base = int(self.offsets[s])
            for c in seg.db.iter_chunks():
                if seg.dead is None or not seg.dead[c.row]:
                    yield _global(c, base)

    # -- keyword index ----------------------------------------------------------------------
    @property
    def keyword_settings(self) -> keyword.KeywordSettings | None:
        """How the keyword index was tokenised; None for a store written before it existed."""
        return keyword.settings_from_manifest(self.manifest.keyword, self.path)

    def keyword_query(self, query: str | KeywordQuery) -> KeywordQuery:
        """The query's terms the postings budget keeps (by document frequencies summed over the
        segments), their index forms, and those frequencies: worked out once per query and
        passed to ``keyword_all`` and the fusion's ``term_idfs`` (reading every segment's database once)."""
        if isinstance(query, KeywordQuery):
            return query
        language = keyword.require(self.keyword_settings).language
        terms = keyword.query_terms(query, language)
        stemmed = keyword.stems(terms, language)
        if stemmed is None:
            return KeywordQuery(terms, terms, {})
        df: dict[str, int] = {}
        parts = []
        for seg in self.segments:
            part = _named(seg, keyword.doc_freqs, stemmed)
            if part is None:
                return KeywordQuery(terms, stemmed, {})
            parts.append(part)
            for t, n in part.items():
                df[t] = df.get(t, 0) + n
        kept = keyword.choose_terms(terms, stemmed, df) if len(terms) > 1 else terms
        return KeywordQuery(kept, [stemmed[terms.index(t)] for t in kept], df, tuple(parts))

    def keyword_all(self, query: str | KeywordQuery) -> tuple[np.ndarray, np.ndarray]:
        """BM25 of every live chunk matching ``query``, unsorted: scores (m,), global rows (m,).
        Every term is weighted by its IDF over the whole store and rows are normalised by the
        store's average length (``indexing.bm25``), so a small new segment ranks like the rest;
        deleted rows count in the statistics until a compaction drops them (as in Lucene). A
        store without the statistics (written before them) is scored by FTS5 segment by segment."""
        q = self.keyword_query(query)
        known = len(q.segment_df) == len(self.segments)
        idfs = [bm25.idf(self.rows, q.df.get(t, 0)) for t in q.stemmed]
        scores, rows = [np.zeros(0, np.float32)], [np.zeros(0, np.int64)]
        for s, seg in enumerate(self.segments):
            if known:
                hits = [self._postings(seg, t, q.segment_df[s].get(t, 0)) for t in q.stemmed]  # [(a_i,)] local rows
                lengths, average = self._row_lengths()
                S, R = bm25.score(hits, idfs, lengths[s], average)
            else:
                S, R = _named(seg, keyword.search_terms, q.terms)  # (a,), (a,) local
                if len(R) and (R.min() < 0 or R.max() >= seg.rows):
                    raise StoreError(f"{seg.db.file}: the keyword index names rows the segment lacks: damaged; rebuild with --refit")
            if seg.dead is not None:
                S, R = S[~seg.dead[R]], R[~seg.dead[R]]
            scores.append(S)
            rows.append(R + self.offsets[s])
        return np.concatenate(scores), np.concatenate(rows)

    @staticmethod
    def _postings(seg: SegmentReader, stem: str, df: int) -> np.ndarray:
        """Local rows of ``seg`` holding ``stem`` (one per occurrence), checked against the
        segment's statistics (a term they say it lacks is looked up too: ~20 us)."""
        found = _named(seg, keyword.postings, stem, seg.rows)  # (a,)
        if (np.count_nonzero(np.diff(found)) + 1 if len(found) else 0) != df:
            raise StoreError(f"{seg.db.file}: the keyword statistics ({keyword.DF_TABLE}) do not match the keyword "
                             "index: damaged; rebuild with `rag index ... --refit`")
        return found

    def _row_lengths(self) -> tuple[list[np.ndarray], float]:
        """Each segment's row lengths in tokens [(rows_s,)] (``keyword.token_counts``) and the
        store's average row length (deleted rows included, as in the IDFs); read once."""
        if self._lengths is None:
            counts = [_named(seg, keyword.token_counts, seg.rows) for seg in self.segments]
            self._lengths = counts, (sum(int(c.sum()) for c in counts) / self.rows if self.rows else 0.0) or 1.0
        return self._lengths

    def keyword_search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """BM25 top ``k`` of ``query``: scores (m,), global rows (m,), m <= k, best first."""
        S, R = self.keyword_all(query)
        top = np.lexsort((R, -S))[: max(0, k)]
        return S[top], R[top]

    def keyword_bytes(self) -> int | None:
        """Bytes of the keyword index in the segments' databases (None: no keyword index)."""
        if not self.keyword_settings:
            return None
        sizes = [keyword.index_bytes(seg.db.db) for seg in self.segments]
        return None if None in sizes else sum(sizes)  # type: ignore[arg-type]

    # -- facts ------------------------------------------------------------------------------
    @property
    def bytes_per_vector(self) -> int:
        """First-stage bytes per vector (what a search scans)."""
        return self.manifest.bytes_per_vector

    @property
    def store_bytes(self) -> int:
        return self.manifest.store_bytes

    def info(self) -> dict[str, Any]:
        """What ``rag info`` shows (and the UI and eval read): counts, sizes, settings, segments."""
        m, c = self.manifest, self.manifest.compression
        kw = self.keyword_bytes()
        return {
            "store": str(self.path), "generation": m.generation, "chunks": self.n, "documents": m.documents,
            "model": m.model, "dim": self.dim, "pca_dims": c.pca_dims, "pca_energy_kept": c.pca_energy_kept,
            "pca_fit_vectors": c.pca_fit_vectors, "dtype": c.dtype, "ann": c.ann, "index_key": m.index_key,
            "bytes_per_vector": self.bytes_per_vector, "float32_bytes_per_vector": 4 * self.dim,
            "compression_ratio": round(4 * self.dim / self.bytes_per_vector, 2), "full_dtype": c.full_dtype,
            "full_bytes_per_vector": c.full_bytes_per_vector, "store_bytes": self.store_bytes,
            "keyword_language": (m.keyword or {}).get("language"), "keyword_index_bytes": kw,
            "keyword_bytes_per_chunk": round(kw / self.n, 1) if kw is not None and self.n else None,
            "segments": len(m.segments), "tombstones": m.deleted,
            "segment_counts": [{"dir": s.dir, "rows": s.rows, "live": s.live, "deleted": s.rows - s.live,
                                "documents": s.documents, "ann": s.ann} for s in m.segments],
            "chunker": m.chunker, "format_version": m.format_version, "writer": m.writer,
        }

    def close(self) -> None:
        for seg in self.segments:
            seg.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def files_of(path: Path, manifest: Manifest) -> list[tuple[Path, FileMeta]]:
    """Every file the manifest names, with its size and checksum."""
    out = [(path / manifest.basis[0] / name, meta) for name, meta in manifest.basis[1].items()]
    for s in manifest.segments:
        out += [(path / s.dir / name, meta) for name, meta in s.files.items()]
        if s.deleted is not None:
            out.append((path / s.deleted.dir / s.deleted.file, s.deleted.meta))
    return out


def _named(seg: SegmentReader, read, *args):  # type: ignore[no-untyped-def]
    """``read(segment's connection, *args)``, its StoreError naming the segment's database."""
    try:
        return read(seg.db.db, *args)
    except StoreError as exc:
        raise StoreError(f"{seg.db.file}: {exc}") from exc


def _global(c: ChunkRow, base: int) -> ChunkRow:
    return replace(c, row=c.row + base)


__all__ += ["MANIFEST", "files_of"]
