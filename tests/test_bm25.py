"""indexing.bm25: BM25 computed in numpy from the keyword index's postings and row lengths scores
every row exactly as FTS5's own bm25() does, on rows of every length (varints of 1-3 bytes),
repeated terms, titles, and on stores written before the row-lengths table existed."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from indexing import bm25, keyword
from indexing.chunk import Chunk, ChunkSettings
from indexing.store import Store
from indexing.writer import DocumentRecord, StoreWriter, compact_store
from test_segments import DIM, SETTINGS, vectors

WORDS = [f"w{i}" for i in range(40)] + ["cells", "cell", "running", "runs", "zebra"]


def corpus(rng: np.random.Generator, n: int) -> list[tuple[str, str]]:
    """(title, text) rows of 0 to 400 words drawn unevenly (so terms repeat in a row), three of
    20,000 (lengths needing 3-byte varints)."""
    p = 1.0 / np.arange(1, len(WORDS) + 1)
    p /= p.sum()
    sizes = list(rng.integers(0, 400, n - 3)) + [20_000] * 3
    return [(" ".join(rng.choice(WORDS, rng.integers(0, 4), p=p)), " ".join(rng.choice(WORDS, s, p=p))) for s in sizes]


def fts5_scores(db: sqlite3.Connection, terms: list[str]) -> dict[int, float]:
    """FTS5's own bm25() of every row matching one of ``terms`` (the reference)."""
    S, R = keyword.search_terms(db, terms)
    return dict(zip(R.tolist(), S.tolist()))


@pytest.fixture(scope="module")
def db() -> sqlite3.Connection:
    rows = corpus(np.random.default_rng(5), 300)
    db = sqlite3.connect(":memory:", check_same_thread=False)
    db.execute("CREATE TABLE chunks(row INTEGER PRIMARY KEY, title TEXT, text TEXT)")
    db.executemany("INSERT INTO chunks VALUES (?,?,?)", [(i, t, x) for i, (t, x) in enumerate(rows)])
    keyword.create(db, keyword.KeywordSettings())
    keyword.add(db, [(i, t, x) for i, (t, x) in enumerate(rows)])
    keyword.finish(db)
    return db


@pytest.mark.parametrize("terms", [["zebra"], ["w0"], ["w3", "w17", "zebra"], ["cells", "cell"], ["running", "w39", "w1"]])
def test_scores_equal_fts5_bm25(db: sqlite3.Connection, terms: list[str]) -> None:
    stemmed = keyword.stems(terms)
    df = keyword.doc_freqs(db, stemmed)
    lengths = keyword.token_counts(db, 300)
    assert lengths.max() >= 20_000 and lengths.min() == 0
    S, R = bm25.score([keyword.postings(db, s, 300) for s in stemmed], [bm25.idf(300, df.get(s, 0)) for s in stemmed],
                      lengths, lengths.sum() / 300)
    want = fts5_scores(db, terms)
    assert sorted(want) == R.tolist()  # the same rows, ascending
    np.testing.assert_allclose(S, [want[r] for r in R.tolist()], rtol=1e-6)


def test_row_lengths_of_a_database_without_the_table_are_read_from_fts5(db: sqlite3.Connection) -> None:
    stored = keyword.token_counts(db, 300)
    db.execute(f"ALTER TABLE {keyword.LENGTHS_TABLE} RENAME TO kept")
    try:
        np.testing.assert_array_equal(keyword.token_counts(db, 300), stored)
    finally:
        db.execute(f"ALTER TABLE kept RENAME TO {keyword.LENGTHS_TABLE}")


def test_a_store_without_the_row_lengths_table_scores_the_same(tmp_path: Path) -> None:
    """A store written before ``keyword_lengths`` existed: the lengths come from FTS5's docsize."""
    rng = np.random.default_rng(2)
    path = tmp_path / "s"
    with StoreWriter(path, "fake/bm25", DIM, ChunkSettings(), SETTINGS) as w:
        for d in range(4):
            rows = corpus(rng, 30)
            name = f"/d/{d}.txt"
            chunks = [Chunk(name, name, t, None, i, i + 1, x) for i, (t, x) in enumerate(rows)]
            w.add(DocumentRecord(name, name, name, f"sha-{d}"), chunks, vectors(rng, len(rows)))
        w.commit()
    queries = ["zebra cells", "w2 w5 running", "w30"]
    with Store.open(path) as store:
        before = [store.keyword_all(q) for q in queries]
    m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    file = path / m["segments"][0]["dir"] / "chunks.sqlite"
    con = sqlite3.connect(file)
    con.execute(f"DROP TABLE {keyword.LENGTHS_TABLE}")
    con.commit()
    con.close()
    m["segments"][0]["files"]["chunks.sqlite"].update(bytes=file.stat().st_size, sha256=hashlib.sha256(file.read_bytes()).hexdigest())
    (path / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
    with Store.open(path) as store:
        for q, (S, R) in zip(queries, before):
            S2, R2 = store.keyword_all(q)
            assert len(R) > 0 and R2.tolist() == R.tolist()
            np.testing.assert_array_equal(S2, S)
    compact_store(path)  # `rag compact` writes the table again
    with Store.open(path) as store:
        tables = store.segments[0].db.read("SELECT name FROM sqlite_master WHERE name = ?", [keyword.LENGTHS_TABLE])
        assert tables == [(keyword.LENGTHS_TABLE,)]
        for q, (S, R) in zip(queries, before):
            S2, R2 = store.keyword_all(q)
            assert R2.tolist() == R.tolist()
            np.testing.assert_array_equal(S2, S)


def test_the_postings_of_a_common_term_take_bytes_not_python_tuples() -> None:
    """A query of one very common word (or of stop words only, which are then kept) reads every
    occurrence of it: one Python tuple and int per occurrence (~90 bytes; ~1 GB for "the" on a
    1M-chunk store) before they became an int64 array. Read as one string of row numbers, the
    peak is that string and the array (~20 bytes an occurrence)."""
    n, per_row = 3000, 100
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE chunks(row INTEGER PRIMARY KEY, title TEXT, text TEXT)")
    rows = [(i, "", " ".join(["the"] * per_row + [f"w{i % 50}"])) for i in range(n)]
    db.executemany("INSERT INTO chunks VALUES (?,?,?)", rows)
    keyword.create(db, keyword.KeywordSettings())
    keyword.add(db, rows)
    keyword.finish(db)
    keyword.postings(db, "w1", n)  # the vocab table made
    tracemalloc.start()
    try:
        found = keyword.postings(db, "the", n)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(found, np.repeat(np.arange(n), per_row))
    assert peak < 40 * n * per_row, peak  # tuples: ~100 bytes an occurrence
    np.testing.assert_array_equal(keyword.postings(db, "w1", n), np.arange(1, n, 50))
    assert len(keyword.postings(db, "absent", n)) == 0
