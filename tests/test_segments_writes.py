"""Writes to a segmented store that used to lose or corrupt data, found by a hostile review: a path
added twice in one commit, compaction of rows no document names or of a segment with no live row,
a damaged base keeping the lock, an interrupted migration to the keyword index, cleanup of a
user's folder; a format-1 store through LangChain; seeded random commits checked against a model."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys

import numpy as np
import pytest

from indexing import compact
from indexing.chunk import Chunk, ChunkSettings
from indexing.errors import ConfigError, StoreError
from indexing.lock import StoreLock
from indexing.store import Store
from indexing.writer import DocumentRecord, StoreWriter, compact_store
from rag.retrieve import Retriever
from test_segments import DIM, PER_DOC, SETTINGS, texts, vectors, write
from test_segments_hostile import ROOT, copy_store, edit_manifest, run_sql_resigned


@pytest.fixture
def no_auto_compaction(monkeypatch):
    monkeypatch.setattr(compact, "MAX_SEGMENTS", 1000)
    monkeypatch.setattr(compact, "MAX_DELETED", 1.0)


def chunk_of(name: str, i: int, tag: str) -> Chunk:
    return Chunk(name, name, name, None, i, i + 1, f"{tag} {i}")


def test_a_path_added_twice_in_one_commit_is_refused_not_left_half_live(tmp_path):
    """Two adds of one path in one StoreWriter used to leave the first add's chunks live (found by
    search, listed by chunks_of) under a documents row that names only the second; compaction then
    failed on the mismatch, and with it every later write that triggered one."""
    rng = np.random.default_rng(0)
    store = write(tmp_path / "s", None, {f"/d/{j}": vectors(rng, PER_DOC) for j in range(12)})
    with StoreWriter(tmp_path / "s", "fake/seg", DIM, ChunkSettings(), SETTINGS, base=store) as w:
        w.add(DocumentRecord("/d/dup", "/d/dup", "dup", "old"), [chunk_of("/d/dup", i, "old") for i in range(3)], vectors(rng, 3))
        with pytest.raises(ConfigError, match="/d/dup"):
            w.add(DocumentRecord("/d/dup", "/d/dup", "dup", "new"), [chunk_of("/d/dup", i, "new") for i in range(2)], vectors(rng, 2))
        w.add(DocumentRecord("/d/other", "/d/other", "o", "o"), [chunk_of("/d/other", 0, "other")], vectors(rng, 1))
        w.commit()
    with Store.open(tmp_path / "s") as s:
        assert [c.text for c in s.chunks_of(["/d/dup"])] == ["old 0", "old 1", "old 2"]
        assert s.n == 12 * PER_DOC + 4 and s.documents()["/d/dup"][:2] == ("old", 3)


def test_compaction_copies_only_the_rows_of_live_documents(tmp_path, no_auto_compaction):
    """Live rows that belong to no document (what a path added twice left behind) are dropped by a
    compaction, which keeps every document's chunks with their own vectors."""
    rng = np.random.default_rng(2)
    x = {f"/d/{j}": vectors(rng, 4) for j in range(60)}
    write(tmp_path / "s", None, x).close()
    # /d/1's first two rows: orphans (its documents row starts later)
    run_sql_resigned(tmp_path / "s", "UPDATE documents SET first_row = first_row + 2, chunks = 2 WHERE path = '/d/1'")
    compact_store(tmp_path / "s")
    with Store.open(tmp_path / "s") as s:
        assert s.n == 60 * 4 - 2
        assert [c.text for c in s.chunks_of(["/d/1"])] == ["/d/1 chunk 2", "/d/1 chunk 3"]
        for name in ("/d/0", "/d/1", "/d/2", "/d/59"):  # each chunk found by its own vector
            want = x[name][2:] if name == "/d/1" else x[name]
            _, I = Retriever(s).search_vectors(want, 1, exact=True)
            assert [t[0] for t in texts(s, I)] == [f"{name} chunk {i}" for i in range(4 - len(want), 4)]


def test_a_damaged_base_leaves_the_lock_free(tmp_path):
    """A StoreWriter whose base cannot list its documents used to raise with the store's lock still
    held by the process: every later write in it (the chat app, a LangChain store) was refused."""
    rng = np.random.default_rng(3)
    write(tmp_path / "s", None, {f"/d/{j}": vectors(rng, PER_DOC) for j in range(12)}).close()
    run_sql_resigned(tmp_path / "s", "UPDATE documents SET first_row = 'x' WHERE path = '/d/3'")
    base = Store.open(tmp_path / "s", verify=False, lazy=True)
    with pytest.raises(StoreError, match=str(tmp_path / "s")):
        StoreWriter(tmp_path / "s", "fake/seg", DIM, ChunkSettings(), SETTINGS, base=base)
    StoreLock(tmp_path / "s").acquire().release()


def test_compacting_a_store_whose_documents_were_all_deleted(tmp_path):
    """Delete everything (the automatic compaction then leaves no segment), `rag compact` it, add
    again: `rag compact` used to fail with ValueError (min() of no segments)."""
    rng = np.random.default_rng(4)
    store = write(tmp_path / "s", None, {f"/d/{j}": vectors(rng, PER_DOC) for j in range(12)})
    store = write(tmp_path / "s", store, {}, set(store.documents()))
    assert store.manifest.segments == () and store.n == 0
    store.close()
    before, after = compact_store(tmp_path / "s")
    assert after.segments == () and after.documents == 0
    done = subprocess.run([sys.executable, "-m", "rag.cli", "compact", "--store", str(tmp_path / "s")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    with pytest.raises(StoreError, match="not a store"):
        compact_store(tmp_path / "typo")
    assert not (tmp_path / "typo").exists()  # the lock made the folder (and its .lock) of a mistyped --store
    with Store.open(tmp_path / "s") as empty:
        assert Retriever(empty).search_vectors(vectors(rng, 2), 3)[1].tolist() == [[-1], [-1]]
        store = write(tmp_path / "s", empty, {"/d/back": vectors(rng, 3)})
    assert store.n == 3 and list(store.documents()) == ["/d/back"]


def test_a_store_without_keyword_index_keeps_answering_when_its_migration_is_interrupted(tmp_path, fake_embedder, monkeypatch):
    """A write to a store from before the keyword index published a manifest claiming one, then
    compacted to build it. Killed in between (or the compaction failing), the store said it had a
    keyword index its old segment lacks: every hybrid search (the default) failed, and since the
    store now claimed an index, no later write ever built it."""
    from indexing import writer
    from indexing.build import index_paths
    from test_segments import FIXTURE

    path = copy_store(FIXTURE, tmp_path / "old")
    db_file = path / "g000001" / "chunks.sqlite"
    db = sqlite3.connect(db_file)
    db.executescript("DROP TABLE keyword; DROP TABLE keyword_df; VACUUM;")  # as written before the keyword index
    db.close()

    def no_keyword(m: dict) -> None:
        del m["keyword"]
        m["files"]["chunks.sqlite"] = {"bytes": db_file.stat().st_size, "sha256": hashlib.sha256(db_file.read_bytes()).hexdigest()}

    edit_manifest(path, no_keyword)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "owl.txt").write_text("Owls hunt mice at night.", encoding="utf-8")

    def killed(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise KeyboardInterrupt("killed between the commit and its compaction")

    monkeypatch.setattr(writer, "_compact_if", killed)
    with pytest.raises(KeyboardInterrupt):
        index_paths([docs], path, embedder=fake_embedder)
    monkeypatch.undo()
    with Store.open(path) as s:
        assert len(s.segments) == 2 and s.keyword_settings is None
        assert "Glaciers" in Retriever(s, fake_embedder).search("glacier ice", k=1)[0].text  # hybrid falls back to dense
    (docs / "cat.txt").write_text("Cats purr.", encoding="utf-8")
    index_paths([docs], path, embedder=fake_embedder)  # the next write builds the keyword index
    with Store.open(path) as s:
        assert s.keyword_settings is not None and len(s.segments) == 1
        assert "Glaciers" in Retriever(s, fake_embedder).search("glacier ice", k=1, mode="keyword")[0].text


def test_a_users_folder_named_by_a_damaged_manifest_survives_refits(tmp_path, fake_embedder):
    """Publishing marks the folders the replaced manifest names (format-1 generations had no
    marker), and marked folders go once unnamed. A damaged manifest naming a user's ``g2019/``
    (here as a tombstone folder) got it marked by `rag index --refit` (what the damage message
    advises) and deleted by the next write."""
    from indexing.build import index_paths

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("alpha words here", encoding="utf-8")
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    (store / "g2019").mkdir()
    (store / "g2019" / "holiday.jpg").write_text("precious", encoding="utf-8")
    edit_manifest(store, lambda m: m["segments"][0].update(deleted={"dir": "g2019", "file": "x.npy", "count": 0, "bytes": 1, "sha256": "0"}))
    for i in range(2):
        (docs / f"b{i}.txt").write_text(f"beta {i}", encoding="utf-8")
        index_paths([docs], store, embedder=fake_embedder, refit=True)
    assert (store / "g2019" / "holiday.jpg").read_text(encoding="utf-8") == "precious"
    assert not (store / "g000001").exists()  # the store's own old generation still goes


def test_an_ivf_store_compacts_a_segment_whose_rows_are_all_deleted(tmp_path, monkeypatch):
    """With --ann ivf, updating the only document of a segment deletes all its rows; the automatic
    compaction then wrote an empty IVF segment and FAISS refused to train it on no vectors
    (RuntimeError after the commit, and again at every later write)."""
    import test_segments
    from indexing.writer import CompressionSettings

    monkeypatch.setattr(test_segments, "SETTINGS", CompressionSettings(pca_dims=16, fit_sample=200, ann="ivf"))
    rng = np.random.default_rng(7)
    store = test_segments.write(tmp_path / "s", None, {f"/d/{j}": vectors(rng, PER_DOC) for j in range(12)})
    store = test_segments.write(tmp_path / "s", store, {"/d/up": vectors(rng, 3)})
    store = test_segments.write(tmp_path / "s", store, {"/d/up": vectors(rng, 2)})  # g000002 all deleted: compacted away
    assert [s.rows for s in store.manifest.segments] == [12 * PER_DOC, 2] and store.manifest.deleted == 0
    assert [s.ann for s in store.manifest.segments] == ["ivf", "ivf"]
    store.close()


def test_a_format_1_store_through_langchain(tmp_path, fake_embedder):
    """The format-1 fixture (no first_row column) through the LangChain store: read by id, add,
    replace an id, delete a document indexed from a file, search; then `rag compact`."""
    from rag.langchain import CompressedVectorStore
    from test_segments import FIXTURE

    path = copy_store(FIXTURE, tmp_path / "old")
    with Store.open(path) as old:
        files = sorted(old.documents())
        ids = [f"{c.doc_path}#0:{c.start}" for c in old.chunks_of(files)]
    vs = CompressedVectorStore(path, fake_embedder)
    assert [d.id for d in vs.get_by_ids(ids)] == ids
    vs.add_texts(["Owls hunt mice at night."], ids=["owl"])
    vs.add_texts(["Owls hunt voles at dusk."], ids=["owl"])  # replaces the text of that id
    vs.delete([files[0]])  # a file indexed by `rag index` is deleted by its path
    assert [d.page_content for d in vs.get_by_ids(["owl"])] == ["Owls hunt voles at dusk."]
    assert [d.id for d in vs.get_by_ids(ids)] == ids[1:]
    assert vs.similarity_search("owls voles dusk", k=1)[0].id == "owl"
    with Store.open(path) as s:
        assert sorted(s.documents()) == sorted(files[1:] + ["owl"]) and s.n == 3
    compact_store(path)
    with Store.open(path) as s:
        assert sorted(s.documents()) == sorted(files[1:] + ["owl"]) and len(s.segments) == 1
        assert s.manifest.format_version == 2 and s.manifest.deleted == 0


@pytest.mark.parametrize("dtype, full_dtype, ann, seed", [("float8", "float16", "ivf", 9), ("float16", "float8", "auto", 4)])
def test_random_writes_and_compactions_match_a_model(tmp_path, monkeypatch, dtype, full_dtype, ann, seed):
    """Seeded random commits (adds, updates, deletes, mixed, `rag compact` with and without refit)
    under small automatic-compaction thresholds; after each, the store holds exactly the model's
    documents, each with its own chunks in order, and every exact hit has its own vector."""
    import test_segments
    from indexing.search import exact
    from indexing.writer import CompressionSettings

    monkeypatch.setattr(compact, "MAX_SEGMENTS", 4)
    monkeypatch.setattr(compact, "MERGED_SEGMENTS", 2)
    monkeypatch.setattr(test_segments, "SETTINGS", CompressionSettings(pca_dims=16, fit_sample=50, dtype=dtype, full_dtype=full_dtype, ann=ann))
    rng = np.random.default_rng(seed)
    path, store, model = tmp_path / "s", None, {}  # model: path -> (step written, (m, d) vectors)
    for step in range(14):
        op = rng.choice(["add", "update", "delete", "mixed", "compact"], p=[0.35, 0.2, 0.2, 0.15, 0.1]) if model else "add"
        if op == "compact":
            store.close()
            compact_store(path, refit=bool(rng.integers(2)))
            store = Store.open(path)
            continue
        add = {f"/d/{step}-{j}": vectors(rng, int(rng.integers(1, 6))) for j in range(int(rng.integers(1, 4)))} if op in ("add", "mixed") else {}
        if op in ("update", "mixed"):
            add |= {k: vectors(rng, int(rng.integers(1, 6))) for k in rng.choice(sorted(model), size=min(len(model), 2), replace=False)}
        gone = set(rng.choice(sorted(model), size=min(len(model), 2), replace=False)) - set(add) if op in ("delete", "mixed") else set()
        with StoreWriter(path, "fake/seg", DIM, ChunkSettings(), test_segments.SETTINGS, base=store) as w:
            w.delete(gone)
            for name, x in add.items():
                w.add(DocumentRecord(name, name, name, str(step)), [chunk_of(name, i, f"{name} v{step}") for i in range(len(x))], x)
            w.commit()
        if store is not None:
            store.close()
        store = Store.open(path)
        model = {k: v for k, v in model.items() if k not in gone} | {k: (step, x) for k, x in add.items()}
        assert set(store.documents()) == set(model) and store.manifest.documents == len(model), (step, op)
        assert store.n == sum(len(x) for _, x in model.values()), (step, op)
        for name, (written, x) in model.items():
            assert [c.text for c in store.chunks_of([name])] == [f"{name} v{written} {i}" for i in range(len(x))], (step, op)
        _, I = exact(store, vectors(rng, 4), 6)  # (4, 6)
        for c in store.chunks(I[I >= 0].tolist()):
            want = model[c.doc_path][1][int(c.text.rsplit(" ", 1)[1])]
            assert np.abs(store.decode_full(np.array([c.row]))[0] - want).max() < 0.1, (step, op, c.text)
        _, I = Retriever(store).search_vectors(vectors(rng, 4), 6, oversample=2)
        assert store.is_live(I[I >= 0]).all()
    store.close()


@pytest.mark.parametrize("dtype, ann", [("float16", "flat"), ("float32", "flat"), ("float8", "ivf")])
def test_compaction_keeps_the_first_stage_codes_of_every_dtype(tmp_path, monkeypatch, no_auto_compaction, dtype, ann):
    """Only flat float8 codes were copied; IVF and the other dtypes were re-encoded from the
    (float8) full vectors, so a compacted store searched differently from the segments it
    merged. Now each live row keeps its decoded first-stage vector, and a flat store's search
    gives the same top-k before and after."""
    import shutil

    import test_segments
    from indexing.first_stage import reduced_vectors
    from indexing.writer import CompressionSettings

    monkeypatch.setattr(test_segments, "SETTINGS", CompressionSettings(pca_dims=16, fit_sample=200, dtype=dtype, ann=ann))
    rng = np.random.default_rng(11)
    store, live = None, {}
    for step in range(4):
        add = {f"/d/{step}-{j}": vectors(rng, PER_DOC) for j in range(12 if step == 0 else 3)}
        gone = set(rng.choice(sorted(live), size=3, replace=False)) if live else set()
        store = test_segments.write(tmp_path / "s", store, add, gone)
        live = {k: v for k, v in (live | add).items() if k not in gone}
    shutil.copytree(tmp_path / "s", tmp_path / "c")
    compact_store(tmp_path / "c")
    with Store.open(tmp_path / "c") as one:
        assert len(one.segments) == 1 and one.n == store.n
        for name in sorted(live)[::5]:
            segs, local = store.locate(store.rows_of({name}))  # a document's rows: all in one segment
            before = reduced_vectors(store.segments[int(segs[0])].index, local)  # (m, p)
            np.testing.assert_array_equal(before, reduced_vectors(one.segments[0].index, one.rows_of({name})))
        if ann == "flat":
            xq = vectors(rng, 8)
            for kwargs in ({"oversample": 2}, {"rerank": False}):
                D, I = Retriever(store).search_vectors(xq, 10, **kwargs)
                D1, I1 = Retriever(one).search_vectors(xq, 10, **kwargs)
                assert texts(store, I) == texts(one, I1), kwargs
    store.close()


def test_a_langchain_store_does_not_rehash_the_store_after_its_own_write(tmp_path, fake_embedder, monkeypatch):
    """A write costs what changed, but the LangChain store reopened its own commit with every
    checksum, reading every file of the store after each add_texts. It still verifies a commit
    made by someone else."""
    import indexing.store
    from rag.langchain import CompressedVectorStore

    hashed: list[str] = []
    real = indexing.store.sha256_file
    monkeypatch.setattr(indexing.store, "sha256_file", lambda f: hashed.append(str(f)) or real(f))
    vs = CompressedVectorStore(tmp_path / "lc", fake_embedder)
    vs.add_texts([f"text {i} about owls" for i in range(20)])
    for i in range(3):
        vs.add_texts([f"more owls {i}"], ids=[f"more{i}"])
        assert vs.similarity_search("owls", k=2)
    assert hashed == []
    CompressedVectorStore(tmp_path / "lc", fake_embedder).add_texts(["from another writer"], ids=["other"])
    assert vs.get_by_ids(["other"]) and len(hashed) > 0
