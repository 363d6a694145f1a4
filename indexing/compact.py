"""Compaction: merge segments into one, dropping deleted rows (and optionally refitting PCA).

When a commit runs it automatically (``plan``), documented in docs/store-format.md:
- more than ``MAX_SEGMENTS`` segments: the smallest are merged until ``MERGED_SEGMENTS`` remain
  (new segments are small, so this costs about what they hold, not the store);
- a segment with more than ``MAX_DELETED`` of its rows deleted is rewritten without them;
- a basis fitted on fewer than ``min(fit_sample, live / 2)`` vectors (a store begun from one
  small file) is refitted: every segment is re-encoded from its stored full vectors.
``rag compact`` merges everything into one segment.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from indexing.basis import Basis
from indexing.chunk_db import ChunkRow, DocumentRecord
from indexing.first_stage import reduced_vectors
from indexing.segment import SegmentReader, SegmentWriter
from indexing.store import Store

MAX_SEGMENTS = 10  # search cost grows with the count: bench/segments.py measures 10 against 1
MERGED_SEGMENTS = 5
MAX_DELETED = 0.3  # share of a segment's rows; deleted rows cost scan time and disk until merged
BATCH = 8_192  # rows copied per step: memory stays bounded however large the segments


def plan(store: Store, fit_sample: int) -> tuple[list[int], bool]:
    """Which segments an automatic compaction merges, and whether it refits the basis."""
    segs = store.manifest.segments
    if store.basis.fit_vectors < min(fit_sample, store.n // 2):
        return list(range(len(segs))), True
    chosen = {i for i, s in enumerate(segs) if s.rows and s.rows - s.live > MAX_DELETED * s.rows}
    if len(segs) > MAX_SEGMENTS:
        by_size = sorted(range(len(segs)), key=lambda i: (segs[i].live, i))
        chosen |= set(by_size[: len(segs) - MERGED_SEGMENTS + 1])
    return sorted(chosen), False


def refit_basis(store: Store, segments: list[int], fit_sample: int, seed: int = 0) -> Basis:
    """A new basis fitted on a random sample of the live full vectors of ``segments``."""
    live = np.concatenate([store.segments[s].live_rows() + store.offsets[s] for s in segments])  # (m,) global
    rng = np.random.default_rng(seed)
    sample = np.sort(rng.choice(live, min(len(live), fit_sample), replace=False))
    x = store.decode_full(sample)  # (s, d)
    return Basis.fit(x, store.basis.pca.dims, None, fit_sample)


def merge_into(writer: SegmentWriter, store: Store, segments: list[int], same_basis: bool) -> None:
    """Copy the live documents of ``segments`` (in order) into ``writer``: chunks and documents as
    they are; the vectors of exactly the rows copied (a live row no document names is dropped):
    with the same basis, full vectors byte for byte and the same first-stage codes (flat float8:
    copied; IVF and other dtypes: their decoded values re-added); after a refit, re-encoded from
    the full vectors."""
    records = store.document_records()
    for s in segments:
        seg = store.segments[s]
        docs = sorted((d for i, d in records.values() if i == s and d.first_row is not None), key=lambda d: d.first_row)
        copy_codes = same_basis and store.manifest.compression.dtype == "float8" and seg.entry.ann == "flat"
        pending: list[int] = []  # local rows copied, vectors not yet
        for rows in _copy_documents(writer, seg, docs, seg.db.iter_chunks(BATCH)):
            pending += rows
            if pending and (len(pending) >= BATCH or not rows):  # never an empty batch: it would train sq8 on nothing
                part = np.asarray(pending, np.int64)  # (b,) ascending
                if copy_codes:
                    writer.add_encoded(seg.read_full(part), seg.codes(part))
                elif same_basis:  # IVF or another dtype: its decoded codes, not codes of the decoded full vectors
                    writer.add_stored(seg.read_full(part), reduced_vectors(seg.index, part))
                else:
                    writer.add_vectors(seg.decode_full(part))
                pending = []


def _copy_documents(writer: SegmentWriter, seg: SegmentReader, docs: list[DocumentRecord],
                    chunks: Iterator[ChunkRow]) -> Iterator[list[int]]:
    """Each live document with its own chunks (rows first_row .. first_row + chunks - 1, live), in
    row order; yields the local rows copied for each, and finally an empty list."""
    c = next(chunks, None)
    for doc in docs:
        lo = doc.first_row
        own: list[ChunkRow] = []
        while c is not None and c.row < lo + doc.chunks:
            if c.row >= lo and (seg.dead is None or not seg.dead[c.row]):
                own.append(c)
            c = next(chunks, None)
        if own:
            writer.db.add(doc, own)
            yield [x.row for x in own]
    yield []
