"""Segments: incremental writes add a segment and tombstones; search over segments equals search
over one compacted segment and brute force; deleted rows never come back; compaction (automatic
and `rag compact`); stores of format 1 keep working."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from indexing import compact
from indexing.build import index_paths
from indexing.chunk import Chunk, ChunkSettings
from indexing.manifest import MANIFEST
from indexing.search import exact
from indexing.store import Store
from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter, compact_store
from rag.retrieve import Retriever

DIM, PER_DOC = 64, 20
SETTINGS = CompressionSettings(pca_dims=16, fit_sample=200)
FIXTURE = Path(__file__).parent / "fixtures" / "store_v1"


def vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, DIM) unit vectors with some structure (a few shared directions), as embeddings have."""
    x = rng.normal(size=(n, DIM)).astype(np.float32) + 2 * rng.normal(size=(8, DIM)).astype(np.float32)[rng.integers(0, 8, n)]
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def write(path: Path, base: Store | None, add: dict[str, np.ndarray], delete: set[str] = frozenset()) -> Store:
    """One commit: delete documents, add documents (name -> (m, d) vectors); returns the new state."""
    with StoreWriter(path, "fake/seg", DIM, ChunkSettings(), SETTINGS, base=base) as w:
        w.delete(set(delete))
        for name, x in add.items():
            chunks = [Chunk(name, name, name, None, i, i + 1, f"{name} chunk {i}") for i in range(len(x))]
            w.add(DocumentRecord(name, name, name, f"sha-{name}"), chunks, x)
        w.commit()
    if base is not None:
        base.close()
    return Store.open(path)


def texts(store: Store, I: np.ndarray) -> list[list[str]]:
    return [[c.text for c in store.chunks([int(r) for r in row if r >= 0])] for row in I]


@pytest.fixture
def no_auto_compaction(monkeypatch):
    monkeypatch.setattr(compact, "MAX_SEGMENTS", 1000)
    monkeypatch.setattr(compact, "MAX_DELETED", 1.0)


def test_random_adds_and_deletes_search_like_one_segment_and_brute_force(tmp_path, no_auto_compaction):
    rng = np.random.default_rng(7)
    path, store, live = tmp_path / "s", None, {}
    for step in range(6):
        add = {f"/d/{step}-{j}.txt": vectors(rng, PER_DOC) for j in range(12 if step == 0 else 3)}  # basis fitted on 200
        gone = set(rng.choice(sorted(live), size=min(2, len(live)), replace=False)) if live else set()
        store = write(path, store, add, gone)
        live = {k: v for k, v in (live | add).items() if k not in gone}
    assert len(store.segments) == 6 and store.manifest.deleted == 10 * PER_DOC
    assert store.n == sum(len(v) for v in live.values()) and set(store.documents()) == set(live)
    xq = vectors(rng, 12)
    D, I = Retriever(store).search_vectors(xq, 10, oversample=4)
    De, Ie = exact(store, xq, 10)
    assert store.is_live(I.ravel()).all() and store.is_live(Ie.ravel()).all()
    copy = tmp_path / "copy"
    shutil.copytree(path, copy)
    before, after = compact_store(copy)
    assert len(after.segments) == 1 and after.deleted == 0 and after.chunks == before.chunks
    with Store.open(copy) as one:
        D1, I1 = Retriever(one).search_vectors(xq, 10, oversample=4)
        assert texts(store, I) == texts(one, I1)  # same top-k, row for row
        np.testing.assert_allclose(D, D1, rtol=1e-6)
        De1, Ie1 = exact(one, xq, 10)
        assert texts(store, Ie) == texts(one, Ie1)
    x_live = np.concatenate(list(live.values()))  # brute force in float32 over what is live
    names = [f"{k} chunk {i}" for k, v in live.items() for i in range(len(v))]
    ref = np.argsort(-(xq @ x_live.T), axis=1, kind="stable")[:, :10]
    hits = np.mean([len(set(texts(store, Ie)[q]) & {names[j] for j in ref[q]}) / 10 for q in range(len(xq))])
    assert hits >= 0.9  # brute force over the segments' float8 vectors finds float32's live top-10


def test_half_a_segment_deleted_never_comes_back(tmp_path, no_auto_compaction):
    rng = np.random.default_rng(3)
    docs = {f"/d/{j}.txt": vectors(rng, PER_DOC) for j in range(10)}
    store = write(tmp_path / "s", None, docs)
    gone = {f"/d/{j}.txt" for j in range(0, 10, 2)}
    store = write(tmp_path / "s", store, {}, gone)
    assert store.manifest.segments[0].deleted.count == 5 * PER_DOC
    xq = np.concatenate([docs[g] for g in sorted(gone)])  # queries that ARE the deleted vectors
    for kwargs in ({}, {"oversample": 1}, {"exact": True}, {"rerank": False}):
        _, I = Retriever(store).search_vectors(xq, 10, **kwargs)
        assert (I >= 0).all() and store.is_live(I.ravel()).all(), kwargs
        assert not any(t.startswith(tuple(gone)) for row in texts(store, I) for t in row)
    assert all(not any(c.doc_path in gone for c in store.chunks_of(sorted(gone))) for _ in [0])


def test_keyword_search_skips_deleted_rows_and_spans_segments(tmp_path, no_auto_compaction):
    rng = np.random.default_rng(5)
    store = write(tmp_path / "s", None, {"/d/alpha.txt": vectors(rng, 3), "/d/beta.txt": vectors(rng, 3)})
    store = write(tmp_path / "s", store, {"/d/gamma.txt": vectors(rng, 3)}, {"/d/alpha.txt"})
    S, R = store.keyword_search("chunk", 10)
    assert sorted(c.doc_path for c in store.chunks(R.tolist())) == ["/d/beta.txt"] * 3 + ["/d/gamma.txt"] * 3
    assert store.keyword_search("alpha", 10)[1].size == 0  # only the deleted document has the term
    assert store.keyword_query("gamma beta").df == {"gamma": 3, "beta": 3}  # summed over the segments


def test_an_incremental_add_writes_only_the_new_segment(tmp_path):
    rng = np.random.default_rng(1)
    store = write(tmp_path / "s", None, {f"/d/{j}.txt": vectors(rng, PER_DOC) for j in range(100)})
    size = sum(f.stat().st_size for f in (tmp_path / "s").rglob("*") if f.is_file())
    old = {f: f.stat().st_mtime_ns for f in (tmp_path / "s" / "g000001").iterdir()}
    store = write(tmp_path / "s", store, {"/d/new.txt": vectors(rng, 1)})
    new_files = [f for f in (tmp_path / "s" / "g000002").iterdir() if f.is_file()]
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "s" / "g000001").iterdir()} == old
    written = sum(f.stat().st_size for f in new_files) + (tmp_path / "s" / MANIFEST).stat().st_size
    assert written < size / 5  # a fixed ~60 KB (empty SQLite + FTS5 tables) at this toy size; bench/segments.py measures 1M


def test_automatic_compaction_bounds_segments_and_deleted_rows(tmp_path):
    rng = np.random.default_rng(2)
    store = write(tmp_path / "s", None, {f"/d/base{j}.txt": vectors(rng, PER_DOC) for j in range(20)})
    for step in range(compact.MAX_SEGMENTS + 2):
        store = write(tmp_path / "s", store, {f"/d/up{step}.txt": vectors(rng, 2)})
        assert len(store.segments) <= compact.MAX_SEGMENTS
    assert len(store.segments) < compact.MAX_SEGMENTS and store.n == 20 * PER_DOC + 2 * (compact.MAX_SEGMENTS + 2)
    assert store.manifest.segments[0].rows == 20 * PER_DOC  # the big segment was not rewritten
    store = write(tmp_path / "s", store, {}, {f"/d/base{j}.txt" for j in range(8)})  # 40 % of it
    assert store.manifest.deleted == 0 and store.n == 12 * PER_DOC + 2 * (compact.MAX_SEGMENTS + 2)
    store.close()


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "rag.cli", *args], capture_output=True, text=True, timeout=300)


def test_rag_compact_and_info(tmp_path, no_auto_compaction):
    rng = np.random.default_rng(4)
    store = write(tmp_path / "s", None, {"/d/a.txt": vectors(rng, 5), "/d/b.txt": vectors(rng, 5)})
    store = write(tmp_path / "s", store, {"/d/c.txt": vectors(rng, 5)}, {"/d/a.txt"})
    store.close()
    info = json.loads(run_cli("info", "--store", str(tmp_path / "s"), "--json").stdout)
    assert (info["segments"], info["tombstones"], info["chunks"]) == (2, 5, 10)
    assert [(s["rows"], s["deleted"]) for s in info["segment_counts"]] == [(10, 5), (5, 0)]
    done = run_cli("compact", "--store", str(tmp_path / "s"))
    assert done.returncode == 0 and "2 segments -> 1" in done.stdout, done.stderr
    info = json.loads(run_cli("info", "--store", str(tmp_path / "s"), "--json").stdout)
    assert (info["segments"], info["tombstones"], info["chunks"]) == (1, 0, 10)
    missing = run_cli("compact", "--store", str(tmp_path / "nothing"))
    assert missing.returncode != 0 and "Traceback" not in missing.stderr and "not a store" in missing.stderr


def test_a_format_1_store_opens_grows_and_migrates(tmp_path, fake_embedder):
    path = tmp_path / "old"
    shutil.copytree(FIXTURE, path)
    with Store.open(path) as old:
        assert old.manifest.format_version == 1 and len(old.segments) == 1 and old.n == 3
        hits = Retriever(old, fake_embedder).search("glacier fjord ice", k=1)
        assert "fjord" in hits[0].text
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "owl.txt").write_text("Owls hunt mice at night with silent feathers.", encoding="utf-8")
    report = index_paths([tmp_path / "docs"], path, embedder=fake_embedder)
    assert report.added == ["docs/owl.txt"] or report.added[0].endswith("owl.txt")
    with Store.open(path) as grown:
        assert grown.manifest.format_version == 2 and grown.n == 4
        assert [s.dir for s in grown.manifest.segments][0] == "g000001"  # the old folder is a segment now
        assert "owl" in Retriever(grown, fake_embedder).search("owls hunting mice", k=1)[0].text.lower()
    done = run_cli("compact", "--store", str(path))
    assert done.returncode == 0, done.stderr
    with Store.open(path) as migrated:
        assert migrated.n == 4 and len(migrated.segments) == 1 and migrated.manifest.segments[0].dir != "g000001"


def test_shards_merge_to_the_single_store_search(tmp_path, no_auto_compaction):
    """Segments split into shards (as Ray actors search them): merged candidates give exactly the
    rows and scores of one search over every segment."""
    from indexing.search import candidates, merge_candidates, search

    rng = np.random.default_rng(11)
    store = write(tmp_path / "s", None, {f"/d/a{j}.txt": vectors(rng, PER_DOC) for j in range(12)})
    for step in range(3):
        store = write(tmp_path / "s", store, {f"/d/b{step}-{j}.txt": vectors(rng, PER_DOC) for j in range(2)}, {f"/d/a{step}.txt"})
    xq = vectors(rng, 9)
    D, I = search(store, xq, 10, oversample=4)
    shards = [[0, 2], [1, 3]]
    Dm, Im = merge_candidates([candidates(store, xq, 40, s) for s in shards], 10, 40)
    np.testing.assert_array_equal(Im, I)
    np.testing.assert_allclose(Dm, D, rtol=1e-6)


def test_keyword_scores_over_segments_equal_one_compacted_segment(tmp_path, no_auto_compaction):
    """BM25 weighs each term by its IDF over the whole store, not per segment: a store in three
    segments scores every chunk as the same store compacted into one (chunks of equal length, so
    the per-segment average length agrees too). Per-segment IDFs (FTS5's own) fail this: a small
    segment where a term is in most chunks gives it no weight at all."""
    rng = np.random.default_rng(3)
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india"]

    def doc(name: str, n: int) -> tuple[DocumentRecord, list[Chunk]]:
        texts = [" ".join(rng.choice(words, 6)) for _ in range(n)]  # 6 tokens each
        return DocumentRecord(name, name, name, f"sha-{name}"), [Chunk(name, name, name, None, i, i + 1, t) for i, t in enumerate(texts)]

    path = tmp_path / "s"
    base = None
    for step, (names, n) in enumerate([(["/d/a0.txt", "/d/a1.txt", "/d/a2.txt"], 30), (["/d/b0.txt"], 4), (["/d/c0.txt"], 3)]):
        with StoreWriter(path, "fake/seg", DIM, ChunkSettings(), SETTINGS, base=base) as w:
            for name in names:
                record, chunks = doc(name, n)
                w.add(record, chunks, vectors(rng, n))
            w.commit()
        if base is not None:
            base.close()
        base = Store.open(path)
    assert len(base.segments) == 3
    shutil.copytree(path, tmp_path / "one")
    compact_store(tmp_path / "one")
    with base, Store.open(tmp_path / "one") as one:
        assert len(one.segments) == 1
        for query in ["alpha", "golf hotel", "bravo echo india", "charlie delta foxtrot alpha"]:
            S, R = base.keyword_all(query)
            S1, R1 = one.keyword_all(query)
            assert len(R) == len(R1) > 0
            got = {c.doc_path + c.text: s for c, s in zip(base.chunks(R.tolist()), S)}
            want = {c.doc_path + c.text: s for c, s in zip(one.chunks(R1.tolist()), S1)}
            assert got.keys() == want.keys()
            np.testing.assert_allclose([got[t] for t in want], list(want.values()), rtol=1e-5)
