"""The chunk database of one segment (``chunks.sqlite``): its schema, its writes, its reads.

Tables: ``documents`` (one row per document: path, citation source, title, content hash, chunk
count, first row) and ``chunks`` (row, provenance, text, caller metadata as JSON in ``extra``),
plus the keyword index (``indexing.keyword``: FTS5 over chunks(title, text)). Rows are local to
the segment (0..rows-1) and a document's chunks are consecutive rows. Format-1 databases have no
``first_row`` column; their documents' rows are found through the ``chunks_doc`` index.

A segment may come from someone else: the reader opens it read-only with ``trusted_schema=OFF``,
checks the schema (the expected tables, no views) and runs every query under a time limit.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from indexing import keyword
from indexing.chunk import Chunk
from indexing.errors import ConfigError, StoreError

DB_FILE = "chunks.sqlite"
QUERY_SECONDS = 30.0  # a query running longer is stopped (a hostile view, a huge table)
SCHEMA = """
CREATE TABLE documents(path TEXT PRIMARY KEY, source TEXT, title TEXT, sha256 TEXT, chunks INTEGER, first_row INTEGER);
CREATE TABLE chunks(row INTEGER PRIMARY KEY, doc_path TEXT, source TEXT, title TEXT, page INTEGER,
                    start INTEGER, "end" INTEGER, text TEXT, extra TEXT);
CREATE INDEX chunks_doc ON chunks(doc_path);
"""
TABLE_COLUMNS = {
    "documents": {"path", "source", "title", "sha256", "chunks"},
    "chunks": {"row", "doc_path", "source", "title", "page", "start", "end", "text", "extra"},
}
COLUMNS = 'doc_path, source, title, page, start, "end", text, extra, row'  # ChunkRow's fields, in order


@dataclass(frozen=True)
class ChunkRow(Chunk):
    """A stored chunk: a Chunk plus its row (local to its segment here; global in a Store)."""

    row: int = -1


@dataclass(frozen=True)
class DocumentRecord:
    """A document as the ``documents`` table holds it."""

    path: str
    source: str
    title: str
    sha256: str
    chunks: int = 0
    first_row: int | None = None  # None in a format-1 database


class ChunkDbWriter:
    """Writes a new segment's chunk database (and its keyword index) in one transaction."""

    def __init__(self, file: Path, keywords: keyword.KeywordSettings) -> None:
        self.file = file
        self.db = sqlite3.connect(file)
        self.db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;" + SCHEMA)
        keyword.create(self.db, keywords)
        self.n = 0

    def add(self, doc: DocumentRecord, chunks: Iterable[Chunk]) -> int:
        """Append a document and its chunks as consecutive rows; returns how many were added.
        A path added before in this segment is refused: its first rows would stay live, unnamed."""
        first = self.n
        rows = [(first + i, c.doc_path, c.source, c.title, c.page, c.start, c.end, c.text, c.extra) for i, c in enumerate(chunks)]
        if not rows:  # a document without rows could never be found, deleted or told apart from the next one
            raise ConfigError(f"document {doc.path!r} has no chunks; add a document with at least one")
        added = self.db.execute("INSERT OR IGNORE INTO documents VALUES (?,?,?,?,?,?)",
                                (doc.path, doc.source, doc.title, doc.sha256, len(rows), first)).rowcount
        if not added:  # a path already in this segment: nothing written, nothing to undo
            raise ConfigError(f"document {doc.path!r} was already added in this commit; add each path once")
        self.n += len(rows)
        self.db.executemany("INSERT INTO chunks VALUES (?,?,?,?,?,?,?,?,?)", rows)
        keyword.add(self.db, [(r[0], r[3], r[7]) for r in rows])
        return len(rows)

    def finish(self) -> int:
        """Write the keyword statistics, commit and close; returns the number of documents."""
        keyword.finish(self.db)
        self.db.commit()
        (n_docs,) = self.db.execute("SELECT count(*) FROM documents").fetchone()
        self.db.close()
        return int(n_docs)

    def close(self) -> None:
        self.db.close()


class Rows(list):
    """Every row of a statement, read (``TimedConnection.execute``); fetched like a cursor's."""

    def fetchall(self) -> list[Any]:
        return self

    def fetchone(self) -> Any:
        return self[0] if self else None


class TimedConnection(sqlite3.Connection):
    """A connection whose every ``execute`` may run at most QUERY_SECONDS (progress handler).

    Threads share it (the app answers several questions at once), one statement at a time, each
    read to its end: the handler is Python, so it needs the GIL while SQLite holds the connection's
    mutex, and sqlite3 keeps the GIL while it reads column names or resets a statement; two
    threads interleaving statements deadlocked."""

    def __init__(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kwargs)
        self.deadline = time.monotonic() + QUERY_SECONDS
        self.lock = threading.Lock()
        self.set_progress_handler(lambda: time.monotonic() > self.deadline, 10_000)

    def execute(self, *args, **kwargs) -> Rows:  # type: ignore[no-untyped-def, override]
        with self.lock:
            self.deadline = time.monotonic() + QUERY_SECONDS
            cursor = super().execute(*args, **kwargs)
            try:
                return Rows(cursor.fetchall())
            finally:
                cursor.close()

    def close(self) -> None:
        with self.lock:  # not under a statement another thread is running
            super().close()


class ChunkDb:
    """Read-only, hardened access to one segment's chunk database; rows are local."""

    def __init__(self, file: Path, rows: int) -> None:
        self.file = file
        try:
            db = sqlite3.connect(f"{file.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False, factory=TimedConnection)
            db.execute("PRAGMA trusted_schema=OFF")
            _check_schema(db, file)
            (count,) = db.execute("SELECT count(*) FROM chunks").fetchone()
            self.has_first_row = "first_row" in {r[1] for r in db.execute('PRAGMA table_info("documents")')}
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{file} is not a readable chunk database: {exc}") from exc
        if count != rows:
            raise StoreError(f"{file} has {count} chunks, the manifest says {rows}")
        self.db, self.rows = db, rows

    def read(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of a read-only statement through the hardened connection; an unreadable
        database is a StoreError."""
        try:
            return self.db.execute(sql, list(params)).fetchall()
        except (sqlite3.DatabaseError, UnicodeDecodeError) as exc:
            raise StoreError(f"{self.file} cannot be read: {exc}; rebuild with `rag index ... --refit`") from exc

    def chunks(self, rows: Sequence[int]) -> dict[int, ChunkRow]:
        """The chunks at local ``rows``, by row (a row it does not hold is left out)."""
        out: dict[int, ChunkRow] = {}
        for b in range(0, len(rows), 900):  # SQLite's default limit of bound parameters is 999
            part = [int(r) for r in rows[b : b + 900]]
            out |= {r[-1]: ChunkRow(*r) for r in self.read(f"SELECT {COLUMNS} FROM chunks WHERE row IN ({_marks(part)})", part)}
        return out

    def documents(self) -> list[DocumentRecord]:
        """Every document of the segment (with its first row; format 1: looked up per document)."""
        if self.has_first_row:
            docs = [DocumentRecord(*r) for r in self.read("SELECT path, source, title, sha256, chunks, first_row FROM documents")]
        else:
            first = dict(self.read("SELECT doc_path, min(row) FROM chunks GROUP BY doc_path"))
            docs = [DocumentRecord(p, s, t, h, n, first.get(p)) for p, s, t, h, n in
                    self.read("SELECT path, source, title, sha256, chunks FROM documents")]
        for d in docs:  # the rows a document names are indexed into masks and ranges: checked here
            n, r0 = d.chunks, d.first_row
            ok = isinstance(d.path, str) and type(n) is int and (r0 is None and not self.has_first_row or type(r0) is int)
            if not ok or (r0 is not None and not (0 <= r0 and 1 <= n <= self.rows - r0)):
                raise StoreError(f"{self.file}: document {d.path!r} names rows {r0!r} + {n!r} of {self.rows}: damaged; "
                                 "rebuild with `rag index ... --refit`")
        return docs

    def by_paths(self, paths: Sequence[str]) -> list[ChunkRow]:
        """Every chunk of the documents at ``paths``."""
        out: list[ChunkRow] = []
        for b in range(0, len(paths), 900):
            part = list(paths[b : b + 900])
            out += [ChunkRow(*r) for r in self.read(f"SELECT {COLUMNS} FROM chunks WHERE doc_path IN ({_marks(part)})", part)]
        return out

    def rows_where(self, where: str, params: Sequence[Any]) -> list[int]:
        """Local rows whose chunk satisfies the SQL condition ``where`` (built by the caller from
        constants and ``?`` parameters only), ascending."""
        return [r for (r,) in self.read(f"SELECT row FROM chunks WHERE {where} ORDER BY row", params)]

    def iter_chunks(self, batch: int = 10_000) -> Iterator[ChunkRow]:
        """Every chunk, in row order, read ``batch`` rows at a time."""
        last = -1
        while True:
            rows = self.read(f"SELECT {COLUMNS} FROM chunks WHERE row > ? ORDER BY row LIMIT ?", [last, batch])
            if not rows:
                return
            yield from (ChunkRow(*r) for r in rows)
            last = rows[-1][-1]

    def close(self) -> None:
        self.db.close()


def _marks(values: Sequence[Any]) -> str:
    return ",".join("?" * len(values))


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
