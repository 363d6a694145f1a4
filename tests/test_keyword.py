"""indexing.keyword: the FTS5 keyword index written with each generation, and queries as data."""

from __future__ import annotations

import json
import subprocess
import sys
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexing import keyword
from indexing.build import index_paths
from indexing.chunk import Chunk, ChunkSettings
from indexing.errors import ConfigError, StoreError
from indexing.manifest import MANIFEST
from indexing.store import Store
from indexing.writer import DocumentRecord, StoreWriter
from test_segments import DIM, SETTINGS, vectors


@pytest.fixture
def store_dir(tmp_path: Path, docs_folder: Path, fake_embedder) -> Path:
    index_paths([docs_folder], tmp_path / "store", embedder=fake_embedder)
    return tmp_path / "store"


def sources(store: Store, query: str, k: int = 5) -> list[str]:
    _, rows = store.keyword_search(query, k)
    return [Path(c.source).name for c in store.chunks(rows.tolist())]


def test_keyword_index_is_written_with_the_store_and_stems(store_dir: Path) -> None:
    with Store.open(store_dir) as store:
        assert store.manifest.keyword["language"] == "english"
        assert sources(store, "erupting volcano")[0] == "volcano.md"  # porter: erupting ~ erupt
        assert sources(store, "ZEBRAS")[0] == "zebra.txt"
        assert sources(store, "quokka beacon") == []  # script text is never indexed
        scores, rows = store.keyword_search("glacier fjords", 5)
        assert len(rows) >= 1 and scores[0] > 0 and list(scores) == sorted(scores, reverse=True)


def test_incremental_add_and_delete_update_postings(tmp_path: Path, store_dir: Path, docs_folder: Path, fake_embedder) -> None:
    (docs_folder / "otter.txt").write_text("Sea otters crack urchins on their bellies with stones.", encoding="utf-8")
    (docs_folder / "zebra.txt").unlink()
    report = index_paths([docs_folder], store_dir, embedder=fake_embedder)
    assert [Path(a).name for a in report.added] == ["otter.txt"] and [Path(a).name for a in report.removed] == ["zebra.txt"]
    with Store.open(store_dir) as store:
        assert sources(store, "urchins otters")[0] == "otter.txt"
        assert sources(store, "zebras stripes") == []  # the deleted file's postings are gone
        assert sources(store, "saxophone reed")[0] == "music.html"  # kept documents stay findable


def test_store_without_keyword_index_says_rebuild(store_dir: Path) -> None:
    manifest = json.loads((store_dir / MANIFEST).read_text())
    del manifest["keyword"]
    (store_dir / MANIFEST).write_text(json.dumps(manifest))
    with Store.open(store_dir) as store, pytest.raises(StoreError, match="--refit"):
        store.keyword_search("zebra", 3)


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ConfigError, match="english"):
        keyword.KeywordSettings("klingon")


def test_query_terms_drop_stop_words_and_syntax() -> None:
    assert keyword.query_terms('What is the "NEAR" (zebra* -lion) AND title:x') == ["near", "zebra", "lion", "title", "x"]
    assert keyword.query_terms("the of and") == ["the", "of", "and"]  # only stop words: keep them
    assert keyword.query_terms("") == [] and keyword.query_terms("!!! ()") == []
    assert len(keyword.query_terms(" ".join(f"w{i}" for i in range(1000)))) == keyword.MAX_QUERY_TERMS


TEXTS = ["near the river bank", "zebra stripes confuse flies", "title of the book", "and or not"]


def text_store(path: Path, texts: list[str]) -> Store:
    """A store whose row i is one document holding ``texts[i]`` (no title)."""
    rng = np.random.default_rng(0)
    with StoreWriter(path, "fake/keyword", DIM, ChunkSettings(), SETTINGS) as w:
        for i, text in enumerate(texts):
            w.add(DocumentRecord(f"/t/{i}", f"/t/{i}", "", f"sha-{i}"), [Chunk(f"/t/{i}", f"/t/{i}", "", None, 0, 1, text)], vectors(rng, 1))
        w.commit()
    return Store.open(path)


def found(store: Store, query: str, k: int) -> list[int]:
    """Which texts the keyword search of ``query`` finds, best first."""
    _, rows = store.keyword_search(query, k)
    return [int(c.doc_path.rsplit("/", 1)[1]) for c in store.chunks(rows.tolist())]


@pytest.fixture(scope="module")
def texts(tmp_path_factory) -> Iterator[Store]:
    store = text_store(tmp_path_factory.mktemp("kw") / "s", TEXTS)
    yield store
    store.close()


PIECES = list('"*-()^:+{}[],.\'\\\x00é ') + ["NEAR(", "NEAR", "AND", "OR", "NOT", "near", "zebra", "river", "title", "bank", "flies"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(PIECES), max_size=30).map("".join))
def test_any_query_is_data(texts: Store, query: str) -> None:
    """Syntax characters never raise or act: a query finds every chunk holding one of its words
    as a plain word, and only chunks sharing a (stemmed) word with it."""
    rows = found(texts, query, 10)
    terms = {unicodedata.normalize("NFKD", t).encode("ascii", "ignore").decode() for t in keyword.query_terms(query)}
    words = [set(text.split()) for text in TEXTS]
    assert {i for i, w in enumerate(words) if terms & w} <= set(rows)
    for i in rows:
        assert any(t[:2] == w[:2] for t in terms for w in words[i])  # porter: "ore" -> "or"


def test_huge_and_empty_queries(texts: Store) -> None:
    big = ("zebra " + "x" * 50 + " NEAR( \" ") * 1800  # ~100 KB
    assert len(big) > 100_000
    assert sorted(found(texts, big, 5)) == [0, 1]  # "zebra" and the word "near", nothing else
    scores, rows = texts.keyword_search("", 5)
    assert len(rows) == 0 and len(scores) == 0


def test_common_terms_are_dropped_past_the_postings_budget(tmp_path: Path, monkeypatch) -> None:
    with text_store(tmp_path / "s", [f"cells divide {i}" for i in range(30)] + ["zebra cells"]) as store:
        assert keyword.stems(["running", "cells"]) == ["run", "cell"]
        monkeypatch.setattr(keyword, "POSTINGS_BUDGET", 100)
        assert store.keyword_query("cells zebra").terms == ["cells", "zebra"]
        monkeypatch.setattr(keyword, "POSTINGS_BUDGET", 5)
        assert store.keyword_query("cells zebra").terms == ["zebra"]  # the rarest always stays
        assert store.keyword_query("cells divide").terms == ["divide"]  # df 30 vs 31: rarest first
        assert found(store, "zebra cells", 40)[0] == 30


CONCURRENT = """
import sys, threading, time
from pathlib import Path
from indexing.store import Store
store = Store.open(Path(sys.argv[1]))
for seg in store.segments:  # the time limit's handler at every step (as on a large store, where postings are long)
    seg.db.db.set_progress_handler(lambda db=seg.db.db: time.monotonic() > db.deadline, 1)
want = [store.keyword_all(f"cells divide {i}") for i in range(8)]
def run(k):
    for j in range(40):
        S, R = store.keyword_all(f"cells divide {(k + j) % 8}")
        assert R.tolist() == want[(k + j) % 8][1].tolist()
        store.chunks(R[:3].tolist())
threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
[t.start() for t in threads]
[t.join() for t in threads]
print("answered")
"""


def test_concurrent_keyword_queries_on_one_store_do_not_deadlock(tmp_path: Path) -> None:
    """The app answers up to 8 questions at once on one Store (and the hybrid search runs its
    keyword leg in a worker thread). The segment's connection has a Python progress handler (the
    time limit), which needs the GIL while SQLite holds the connection's mutex; sqlite3 keeps the
    GIL while it reads a statement's column names or resets it, so a second thread doing that
    waited for the mutex with the GIL held: both threads hung forever. Run in a subprocess: a
    deadlock freezes every thread of the interpreter."""
    text_store(tmp_path / "s", [f"cells divide {i}" for i in range(30)] + ["zebra cells"]).close()
    done = subprocess.run([sys.executable, "-c", CONCURRENT, str(tmp_path / "s")], capture_output=True, text=True,
                          timeout=30, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "answered"


def test_a_term_fts5_splits_or_drops_is_searched_as_fts5_does(tmp_path: Path) -> None:
    """A query's words are Python's ([^\\W_]+, today's Unicode), the index's tokens unicode61's
    (Unicode 6.1): they differ on a few letters (New Tai Lue vowel signs, U+19B0...), which FTS5
    drops: "ᦰ" is no token to it and "zebraᦰcells" the phrase "zebra cells". ``stems`` tokenised all
    the terms together and only counted the tokens (2 for 2 terms), so it took them for "zebra"
    and "cell" searched alone: every row holding either was ranked, none of which FTS5 matches but
    the one holding the phrase. A term that is not one token is left to FTS5."""
    with text_store(tmp_path / "s", ["zebra cells divide", "zebra stripes", "cells only", "other words"]) as store:
        query = "\u19b0 zebra\u19b0cells"
        assert keyword.stems(keyword.query_terms(query)) is None
        S, R = store.keyword_all(query)
        S0, R0 = keyword.search_terms(store.segments[0].db.db, keyword.query_terms(query))  # FTS5's own bm25()
        assert R.tolist() == R0.tolist() == [0]
        np.testing.assert_array_equal(S, S0)
        assert keyword.stems(["zebras", "running", "ᦰ"]) is None and keyword.stems(["zebras", "running"]) == ["zebra", "run"]


CLOSE_WHILE_SEARCHING = """
import sys, threading, time
from pathlib import Path
from indexing.store import Store
for _ in range(10):
    store = Store.open(Path(sys.argv[1]))
    for seg in store.segments:  # the time limit's handler at every step (as on a large store)
        seg.db.db.set_progress_handler(lambda db=seg.db.db: time.monotonic() > db.deadline, 1)
    started = threading.Event()
    def search():
        try:
            while True:
                store.keyword_all("cells divide 3")
                started.set()
        except Exception as exc:  # the store was closed under it: any error, not a crash
            started.set()
            assert "closed" in str(exc), exc
    thread = threading.Thread(target=search)
    thread.start()
    started.wait()
    store.close()
    thread.join()
print("closed")
"""


def test_closing_a_store_while_a_keyword_leg_searches_it_is_no_crash(tmp_path: Path) -> None:
    """The hybrid search runs its keyword leg in a worker thread; when the dense leg fails (or
    Ctrl-C) the caller's ``with Store.open(...)`` closes the store while the leg may still be in
    a statement: closing the connection under it crashed the interpreter (segmentation fault)."""
    text_store(tmp_path / "s", [f"cells divide {i}" for i in range(30)]).close()
    done = subprocess.run([sys.executable, "-c", CLOSE_WHILE_SEARCHING, str(tmp_path / "s")], capture_output=True,
                          text=True, timeout=30, cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "closed"
