"""Store rows as LangChain documents: their metadata and ids, metadata filters, rows by id.

A chunk added through LangChain keeps its metadata as a JSON object in the ``extra`` column and
its id as its document path (one chunk per document). A chunk indexed from a file by
``rag index`` (``extra`` empty) has its provenance as metadata, ``{source, title, page, start,
end}``, as LangChain loaders give theirs, and the id ``path#page:start``.

Look-ups go through the caller's ``Store`` (its segments' read-only, time-limited, schema-checked
chunk databases, deleted rows left out), so they never see another commit's rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import numpy as np
from langchain_core.documents import Document

from indexing.errors import ConfigError
from indexing.store import Store

PROVENANCE = ("source", "title", "page", "start", "end")  # metadata of a chunk indexed from a file
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
    """Look-ups on the chunks of one open store (its committed state), as LangChain documents."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def by_ids(self, ids: Sequence[str], batch: int = 400) -> list[Document]:
        """Documents with these ids, in the order asked; ids not stored are left out."""
        paths = sorted({i for i in ids} | {i.rsplit("#", 1)[0] for i in ids if "#" in i})
        found: dict[str, Document] = {}
        for b in range(0, len(paths), batch):
            for c in self.store.chunks_of(paths[b : b + batch]):
                doc = to_document(c)
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
        return self.store.rows_where(" AND ".join(where), params)

    def _all_documents(self) -> Iterator[tuple[int, Document]]:
        for c in self.store.iter_chunks():
            yield c.row, to_document(c)


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
