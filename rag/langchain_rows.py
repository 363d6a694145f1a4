"""Store rows as LangChain documents: their metadata and ids, metadata filters, rows by id.

A chunk added through LangChain keeps its metadata as a JSON object in the ``extra`` column and
its id as its document path (one chunk per document). A chunk indexed from a file by
``rag index`` (``extra`` empty) has its provenance as metadata, ``{source, title, page, start,
end}``, as LangChain loaders give theirs, and the id ``path#page:start``.

Queries go through the caller's ``Store`` (``Store.read``: its read-only, time-limited,
schema-checked connection to the generation it has open), so they never see another
generation's rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
from langchain_core.documents import Document

from indexing.errors import ConfigError
from indexing.store import ChunkRow, Store

PROVENANCE = ("source", "title", "page", "start", "end")  # metadata of a chunk indexed from a file
COLUMNS = 'doc_path, source, title, page, start, "end", text, extra, row'  # ChunkRow's fields, in order
Filter = dict[str, Any] | Callable[[Document], bool]


class StoredChunk(Protocol):
    """A ChunkRow or a rag.retrieve.Hit: what a document is built from."""

    doc_path: str
    source: str
    title: str
    page: int | None
    start: int
    end: int
    text: str
    extra: str


def chunk_id(c: StoredChunk) -> str:
    """The LangChain id of a stored chunk."""
    return c.doc_path if c.extra else f"{c.doc_path}#{c.page or 0}:{c.start}"


def chunk_metadata(c: StoredChunk) -> dict[str, Any]:
    """Exactly the metadata stored with the chunk (never a score: that goes beside the document)."""
    if c.extra:
        return json.loads(c.extra)
    return {"source": c.source, "title": c.title, "page": c.page, "start": c.start, "end": c.end}


def to_document(c: StoredChunk) -> Document:
    return Document(page_content=c.text, metadata=chunk_metadata(c), id=chunk_id(c))


class ChunkTable:
    """SQL look-ups on the chunk table of one open store generation, through the store's own
    read-only connection (``Store.read``), so they never see another generation's rows."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def by_ids(self, ids: Sequence[str], batch: int = 400) -> list[Document]:
        """Documents with these ids, in the order asked; ids not stored are left out."""
        paths = sorted({i for i in ids} | {i.rsplit("#", 1)[0] for i in ids if "#" in i})
        found: dict[str, Document] = {}
        for b in range(0, len(paths), batch):
            part = paths[b : b + batch]
            rows = self.store.read(f"SELECT {COLUMNS} FROM chunks WHERE doc_path IN ({','.join('?' * len(part))})", part)
            for r in rows:
                doc = to_document(ChunkRow(*r))
                found[doc.id] = doc  # type: ignore[index]
        return [found[i] for i in ids if i in found]

    def matching_rows(self, flt: Filter) -> np.ndarray:
        """Rows whose metadata satisfies ``flt``, ascending: (m,) int64.

        A dict keeps rows whose metadata has every key equal to its value (None, str, int, float
        or bool), evaluated inside SQLite; a callable is given each row's Document."""
        if callable(flt):
            return np.asarray([row for row, doc in self._all_documents() if flt(doc)], np.int64)
        if not isinstance(flt, dict):
            raise ConfigError(f"filter must be a dict of metadata key -> value or a function of a Document, not {type(flt).__name__}")
        where, params = ["1"], []
        for key, value in flt.items():
            if not isinstance(key, str) or '"' in key:
                raise ConfigError(f"filter key {key!r} must be a string without double quotes")
            if value is not None and not isinstance(value, (str, int, float, bool)):
                raise ConfigError(f"filter[{key!r}] = {value!r}: only equality with None, str, int, float or bool is supported")
            path = f'$."{key}"'
            column = f'"{key}"' if key in PROVENANCE else None
            if value is None:
                json_test, json_params = "json_type(extra, ?) = 'null'", [path]
                column_test, column_params = (f"{column} IS NULL", []) if column else ("0", [])
            else:
                json_test, json_params = "json_extract(extra, ?) = ?", [path, value]
                column_test, column_params = (f"{column} = ?", [value]) if column else ("0", [])
            where.append(f"(CASE WHEN COALESCE(extra, '') != '' THEN {json_test} ELSE {column_test} END)")
            params += json_params + column_params
        rows = self.store.read(f"SELECT row FROM chunks WHERE {' AND '.join(where)} ORDER BY row", params)
        return np.asarray([r for (r,) in rows], np.int64)

    def _all_documents(self, batch: int = 10_000) -> Iterator[tuple[int, Document]]:
        last = -1
        while True:
            rows = self.store.read(f"SELECT {COLUMNS} FROM chunks WHERE row > ? ORDER BY row LIMIT ?", [last, batch])
            if not rows:
                return
            for r in rows:
                yield r[-1], to_document(ChunkRow(*r))
            last = rows[-1][-1]


def top_rows(store: Store, xq: np.ndarray, k: int, rows: np.ndarray, block: int = 16_384) -> list[tuple[int, float]]:
    """Exact float32 scores of the unit query xq (d,) against the full vectors of ``rows`` (m,):
    the ``k`` best as (row, score), best first."""
    best: list[tuple[int, float]] = []
    for b in range(0, len(rows), block):
        part = rows[b : b + block]  # (b,)
        scores = store.decode_full(part) @ xq  # (b, d) @ (d,) -> (b,)
        top = np.argsort(-scores, kind="stable")[:k]
        best = sorted(best + [(int(part[i]), float(scores[i])) for i in top], key=lambda p: -p[1])[:k]
    return best
