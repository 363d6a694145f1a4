"""Encode and write segments on Ray for ``rag index --ray``; the driver only fits, routes and commits.

The embedded documents arrive on the driver in file order (``indexing.ray_index``). For a new
store the driver keeps the first ``fit_sample`` vectors (the whole run if it is smaller), fits the
basis on them exactly as ``SegmentWriter`` does in one process, and broadcasts it (``ray.put``);
an incremental run broadcasts the store's basis at once. Documents then go, in order, to segment
writer actors: plain Ray actors (``WRITE_CPUS`` each), each holding one ``SegmentWriter`` over the
broadcast basis, writing into a folder the driver allocated in the store's commit
(``StoreWriter.segment_folder``). The routing rule: documents go in runs of about ``SEND_ROWS``
chunks (whole documents: a document's chunks never span two segments) to the oldest open segment
whose writer has fewer than ``IN_FLIGHT`` runs queued; only when every open writer is that far
behind does a new segment open, on an idle writer actor or a new one, up to ``max_writers``
actors (2, or one per ``CPUS_PER_WRITER`` CPUs of the cluster); a segment is closed at the first document boundary past
``SEGMENT_ROWS`` rows. So a run whose writer keeps up (any run on a few nodes: writing costs ~1 %
of embedding) writes one segment per ``SEGMENT_ROWS`` chunks, holding its documents in file order
as one process would, and a cluster that embeds faster than one writer writes gets more writers
in parallel. Each actor's ``finish()`` returns the segment's entry; the driver adds the entries to
the ``StoreWriter`` in the order the segments were opened, which publishes them with the
tombstones in one commit.

The writers reach the store through the file system: on a cluster, the store must be on a
folder every Ray node mounts at the same path (NFS, a parallel file system); a writer that cannot
see its folder fails the run at once, naming the node. A writer that dies fails the run with one
``ClusterError`` (its partial segment is never published); the driver's ``StoreWriter`` then
deletes every folder of the commit and the store is as before.
"""

from __future__ import annotations

import dataclasses
import operator
import os
import socket
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from indexing.basis import Basis
from indexing.chunk import Chunk, ChunkSettings
from indexing.chunk_db import DocumentRecord
from indexing.embed import Embedder
from indexing.errors import ClusterError, ConfigError, RagError
from indexing.load import SourceFile
from indexing.ray_cluster import RayOptions, cluster_cpus, error_line, ray_session
from indexing.ray_index import embed_documents_ray
from indexing.segment import SegmentWriter
from indexing.writer import SegmentSpec, StoreWriter

SEGMENT_ROWS = 1_000_000  # rows after which a segment is closed (at a document boundary); docs/scale.md sizes segments at ~1M
MAX_WRITERS = 2  # writer actors alive at once, at least (a segment filling, one finishing)
CPUS_PER_WRITER = 64  # ... and one more per this many CPUs: a writer keeps up with ~90 cores of embedding (docs/scale.md)
WRITE_CPUS = 0.1  # logical CPUs a writer asks for (the embedding leaves them free for every writer allowed):
# writing with the keyword index costs ~1 % of embedding per chunk (2.4k vs 25 chunks/s per core, docs/scale.md)
ACTOR_PREFIX = "rag-segment-writer-"
SEND_ROWS = 1024  # chunks per call to a writer actor
IN_FLIGHT = 8  # runs queued per writer before it counts as behind (and bounds the object store)
Doc = tuple[DocumentRecord, list[Chunk], np.ndarray]
# documents and chunks travel to the writers as lists of their fields, which Ray packs as msgpack
# in C; a dataclass object (or a tuple: strict types) costs a pickle call each (bench/ray_write.py)
_DOC = operator.attrgetter(*(f.name for f in dataclasses.fields(DocumentRecord)))
_CHUNK = operator.attrgetter(*(f.name for f in dataclasses.fields(Chunk)))


def write_documents_ray(
    fresh: list[tuple[SourceFile, str]],
    chunker: ChunkSettings,
    embedder: Embedder,
    report: Any,
    progress: Callable[[str, int, int], None] | None,
    options: RayOptions,
    writer: StoreWriter,
) -> Iterator[DocumentRecord]:
    """Embed ``fresh`` on Ray and write its documents as segments on Ray, added to ``writer``
    (which the caller commits); yields each document once it is routed to a writer actor."""
    if not fresh:
        return
    with ray_session(options) as ray:
        writers = max(MAX_WRITERS, cluster_cpus(ray) // CPUS_PER_WRITER)
        router = _Router(ray, writer, writers)
        try:
            for doc, chunks, vectors in embed_documents_ray(fresh, chunker, embedder, report, progress, options,
                                                            reserve_cpus=WRITE_CPUS * writers):
                record = DocumentRecord(doc.path, doc.source, doc.title, doc.sha256)
                router.add(record, chunks, vectors)
                yield record
            router.finish()
        finally:
            router.close()


class SegmentActor:
    """One segment writer (a Ray actor): a ``SegmentWriter`` over the broadcast basis."""

    def __init__(self) -> None:
        self.segment: SegmentWriter | None = None

    def start(self, folder: str, name: str, spec: SegmentSpec, basis: Basis) -> tuple[int, str]:
        """Open the segment in ``folder`` (the driver made it); returns (pid, host)."""
        if not Path(folder).is_dir():
            raise ClusterError(f"the segment writer on {socket.gethostname()} cannot see {folder}: on a Ray cluster "
                               "the store must be on a file system every node mounts at the same path (NFS, ...)")
        self.segment = SegmentWriter(Path(folder), spec.dim, spec.dtype, spec.full_dtype, spec.keywords, basis, name=name)
        return os.getpid(), socket.gethostname()

    def add(self, docs: list[list], chunks: list[list[list]], vectors: np.ndarray) -> None:
        """Append documents, their chunks (lists of their fields, see ``_DOC``), and their unit-length
        embeddings (sum of chunks, d), one projection and encoding for the whole call."""
        docs = [DocumentRecord(*d) for d in docs]
        chunks = [[Chunk(*c) for c in cs] for cs in chunks]
        seg = self.segment
        if seg is None or vectors.shape != (sum(map(len, chunks)), seg.dim):
            raise ConfigError(f"a segment writer got {vectors.shape} vectors for {sum(map(len, chunks))} chunks")
        for doc, cs in zip(docs, chunks):
            seg.db.add(doc, cs)
        seg.add_vectors(vectors)

    def finish(self, ann: str, nlist: int | None) -> Any:
        """Close the segment's files: its manifest entry (sizes and checksums come from the driver)."""
        if self.segment is None:
            raise ConfigError("finish() before start()")
        return self.segment.finish(ann, nlist)


@dataclass
class _Open:
    """A segment in writing: its actor, name, documents, and what is not sent yet."""

    actor: Any
    name: str
    paths: list[str] = field(default_factory=list)
    rows: int = 0
    queued: list[Doc] = field(default_factory=list)
    queued_rows: int = 0
    sent: list[Any] = field(default_factory=list)  # refs of add() calls not yet known to have succeeded
    done: Any = None  # the finish() ref, once closed
    entry: Any = None  # the segment's manifest entry, once its writer finished (collected)


class _Router:
    """Routes the ordered documents into segments on writer actors (see the module's docstring)."""

    def __init__(self, ray: Any, writer: StoreWriter, max_writers: int = MAX_WRITERS) -> None:
        self.ray, self.writer, self.spec, self.max_writers = ray, writer, writer.segment_spec(), max_writers
        self.remote = ray.remote(num_cpus=WRITE_CPUS, max_restarts=0)(SegmentActor)
        self.actors: list[Any] = []  # alive, at most max_writers
        self.free: list[Any] = [self._new_actor()]  # idle writers; the first one's process starts while the embedding runs
        self.basis = writer.basis
        self.basis_ref = ray.put(self.basis) if self.basis is not None else None
        self.fit_buffer: list[Doc] = []  # a new store's first documents, until the basis is fitted
        self.fit_rows = 0
        self.segments: list[_Open] = []  # in the order they were opened (their order in the manifest)
        self.cur: _Open | None = None  # the segment taking the current run of documents

    @property
    def _open(self) -> list[_Open]:
        return [s for s in self.segments if s.done is None]

    def add(self, doc: DocumentRecord, chunks: list[Chunk], vectors: np.ndarray) -> None:
        if self.basis_ref is None:  # as SegmentWriter: buffer until fit_sample vectors, fit on all of them
            self.fit_buffer.append((doc, chunks, vectors))
            self.fit_rows += len(vectors)
            if self.fit_rows >= self.writer.compression.fit_sample:
                self._fit()
            return
        self._route(doc, chunks, vectors)

    def _fit(self) -> None:
        c = self.writer.compression
        x = np.concatenate([v for _, _, v in self.fit_buffer])  # (m, d)
        self.basis = Basis.fit(x, c.pca_dims, c.pca_variance, c.fit_sample)
        self.basis_ref = self.ray.put(self.basis)
        buffered, self.fit_buffer = self.fit_buffer, []
        for doc in buffered:  # sent as one call: the segment's first encoding sees them all, as in one process
            self._route(*doc, send=False)
        if self.cur is not None:
            self._send(self.cur)

    def _route(self, doc: DocumentRecord, chunks: list[Chunk], vectors: np.ndarray, send: bool = True) -> None:
        seg = self.cur = self.cur or self._pick()
        seg.queued.append((doc, chunks, vectors))
        seg.paths.append(doc.path)
        seg.rows += len(chunks)
        seg.queued_rows += len(chunks)
        if seg.rows >= SEGMENT_ROWS:
            self._close(seg)
        elif send and seg.queued_rows >= SEND_ROWS:
            self._send(seg)
            self.cur = None  # the next run goes to whichever writer keeps up

    def _pick(self) -> _Open:
        """The oldest open segment whose writer has fewer than IN_FLIGHT calls queued; else a new
        one (up to ``max_writers`` at once); else wait until some writer is done with a call."""
        while True:
            for seg in self._open:
                seg.sent = self._pending(seg.sent)
                if len(seg.sent) < IN_FLIGHT:
                    return seg
            if len(self._open) < self.max_writers:
                return self._start()
            self.ray.wait([s.sent[0] for s in self._open], num_returns=1)

    def _pending(self, refs: list[Any]) -> list[Any]:
        """The calls of ``refs`` not finished yet (a finished one that failed raises here)."""
        if not refs:
            return refs
        ready, rest = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            _get(self.ray, ref)
        return rest

    def _start(self) -> _Open:
        """A new segment on an idle writer actor, or a new one while fewer than ``max_writers`` are
        alive (they fit in the CPUs the embedding left free), or else the first to finish its segment."""
        while not self.free and len(self.actors) >= self.max_writers:
            self._collect(next(s for s in self.segments if s.done is not None and s.entry is None))
        actor = self.free.pop(0) if self.free else self._new_actor()
        name, folder = self.writer.segment_folder()
        _get(self.ray, actor.start.remote(str(folder), name, self.spec, self.basis_ref))
        self.segments.append(_Open(actor, name))
        return self.segments[-1]

    def _new_actor(self) -> Any:
        """A writer actor, named ``ACTOR_PREFIX...`` (so an operator, or a test, can find it)."""
        actor = self.remote.options(name=f"{ACTOR_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}").remote()
        self.actors.append(actor)
        return actor

    def _send(self, seg: _Open) -> None:
        if not seg.queued:
            return
        docs, chunks, vectors = zip(*seg.queued)
        rows = [list(_DOC(d)) for d in docs], [[list(_CHUNK(c)) for c in cs] for cs in chunks]
        seg.sent.append(seg.actor.add.remote(*rows, np.concatenate(vectors)))
        seg.queued, seg.queued_rows = [], 0

    def _close(self, seg: _Open) -> None:
        """No more documents for ``seg``: its writer finishes it in the background."""
        self._send(seg)
        seg.done = seg.actor.finish.remote(self.spec.ann, self.spec.nlist)
        if self.cur is seg:
            self.cur = None

    def _collect(self, seg: _Open) -> None:
        """Wait for a closed segment's writer to finish; the actor is idle again."""
        for ref in seg.sent:
            _get(self.ray, ref)
        seg.sent, seg.entry = [], _get(self.ray, seg.done)
        self.free.append(seg.actor)

    def finish(self) -> None:
        """After the last document: fit if the run was smaller than the sample, close and collect
        every segment, and hand their entries to the store writer in the order they were opened."""
        if self.basis_ref is None and self.fit_buffer:
            self._fit()
        for seg in self._open:
            self._close(seg)
        for seg in self.segments:
            if seg.entry is None:
                self._collect(seg)
            self.writer.add_segment(seg.entry, seg.paths, self.basis)

    def close(self) -> None:
        """Stop every actor (after a failure: none may write once the folders are deleted)."""
        for actor in self.actors:
            self.ray.kill(actor, no_restart=True)
        for actor in self.actors:  # a killed actor's calls fail once it is gone
            try:
                self.ray.get(actor.__ray_ready__.remote(), timeout=30)
            except Exception:  # noqa: BLE001, S110 - dead is what we wait for
                pass
        self.actors, self.free = [], []


def _get(ray: Any, ref: Any) -> Any:
    """``ray.get`` with our errors: a writer's own error as it is, a dead writer as a ClusterError."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, RagError):
            raise exc.cause.with_traceback(None) from None
        raise ClusterError(f"a segment writer on Ray failed, the store is unchanged: {error_line(exc)}") from None
    except ray.exceptions.RayError as exc:
        raise ClusterError(f"a segment writer on Ray died, the store is unchanged: {error_line(exc)}") from None
