"""A hostile review of the segmented store: writes that could leave stale rows, manifests and chunk
databases that name impossible things, and the store states a writer reaches that the tests of
tests/test_segments.py do not. Every read path ends in the right answer or a StoreError naming
the store; a failed write leaves the store and its lock as they were."""

from __future__ import annotations

import copy
import hashlib
import json
import resource
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

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

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def no_auto_compaction(monkeypatch):
    monkeypatch.setattr(compact, "MAX_SEGMENTS", 1000)
    monkeypatch.setattr(compact, "MAX_DELETED", 1.0)


@pytest.fixture(scope="module")
def two_segments(tmp_path_factory) -> Path:
    """12 documents in g000001 (one of them deleted), one more in g000002."""
    path = tmp_path_factory.mktemp("seg") / "s"
    rng = np.random.default_rng(0)
    saved = compact.MAX_DELETED
    compact.MAX_DELETED = 1.0
    try:
        store = write(path, None, {f"/d/{j}": vectors(rng, PER_DOC) for j in range(12)})
        write(path, store, {"/d/new": vectors(rng, 5)}, {"/d/0"}).close()
    finally:
        compact.MAX_DELETED = saved
    return path


def copy_store(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def chunk_of(name: str, i: int, tag: str) -> Chunk:
    return Chunk(name, name, name, None, i, i + 1, f"{tag} {i}")


def edit_manifest(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    edit(m)
    (path / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def every_read_path(path: Path, must_fail: int = 5) -> None:
    """Open (checksums), search, list documents and their rows, compact: each answers or raises
    StoreError naming the store, the last ``must_fail`` of them raise; none keeps the lock."""
    rng = np.random.default_rng(1)
    steps = [
        lambda: Store.open(path),
        lambda: Retriever(Store.open(path, verify=False)).search_vectors(vectors(rng, 2), 5),
        lambda: Store.open(path, verify=False, lazy=True).documents(),
        lambda: Store.open(path, verify=False, lazy=True).rows_of({"/d/3", "/d/new"}),
        lambda: compact_store(path),
    ]
    for i, step in enumerate(steps):
        if i >= len(steps) - must_fail:
            with pytest.raises(StoreError, match=str(path)):
                step()
        else:
            try:
                step()
            except StoreError as exc:
                assert str(path) in str(exc)
    StoreLock(path).acquire().release()  # no failed step kept the lock


# -- writes ---------------------------------------------------------------------------------------
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
    seg = next((tmp_path / "s").glob("g*/chunks.sqlite"))
    db = sqlite3.connect(seg)  # /d/1's first two rows: orphans (its documents row starts later)
    db.execute("UPDATE documents SET first_row = first_row + 2, chunks = 2 WHERE path = '/d/1'")
    db.commit()
    db.close()
    edit_manifest(tmp_path / "s", lambda m: m["segments"][0]["files"]["chunks.sqlite"].update(
        bytes=seg.stat().st_size, sha256=hashlib.sha256(seg.read_bytes()).hexdigest()))
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
    seg = next((tmp_path / "s").glob("g*/chunks.sqlite"))
    db = sqlite3.connect(seg)
    db.execute("UPDATE documents SET first_row = 'x' WHERE path = '/d/3'")
    db.commit()
    db.close()
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


# -- hostile manifests ----------------------------------------------------------------------------
def test_huge_rows_with_tombstones_is_a_store_error_not_a_huge_allocation(two_segments, tmp_path):
    """Segment 0 has tombstones: its deleted-row mask was allocated (rows bytes) before the vector
    file's size was checked against rows, so rows = 2**44 raised MemoryError (or ate the RAM)."""
    path = copy_store(two_segments, tmp_path / "s")
    edit_manifest(path, lambda m: m["segments"][0].update(rows=2**44))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, hard))  # a mask of 2**44 bytes can never be allocated
    try:
        every_read_path(path)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_a_segment_named_twice_is_refused(two_segments, tmp_path):
    """The same segment listed twice made every chunk of it two global rows: each search hit came
    back twice and the counts doubled."""
    path = copy_store(two_segments, tmp_path / "s")
    edit_manifest(path, lambda m: m["segments"].append(copy.deepcopy(m["segments"][1])))
    with pytest.raises(StoreError, match="g000002.*twice"):
        Store.open(path)


@pytest.mark.parametrize("sql", [
    "UPDATE documents SET first_row = 10000 WHERE path = '/d/3'",  # past the segment's rows
    "UPDATE documents SET first_row = 240 WHERE path = '/d/3'",  # one past
    "UPDATE documents SET first_row = -5 WHERE path = '/d/3'",  # numpy would count it from the end
    "UPDATE documents SET first_row = 'x' WHERE path = '/d/3'",
    "UPDATE documents SET first_row = 2.5 WHERE path = '/d/3'",
    "UPDATE documents SET chunks = 10000000000000 WHERE path = '/d/3'",  # rows_of: a 73 TB arange
    "UPDATE documents SET chunks = 'x' WHERE path = '/d/3'",
    "UPDATE documents SET chunks = -3 WHERE path = '/d/3'",
], ids=["past", "one-past", "negative", "text", "real", "huge-chunks", "text-chunks", "negative-chunks"])
def test_impossible_document_rows_are_a_store_error(two_segments, tmp_path, sql):
    """A documents row whose first row or chunk count is not a row range of its segment raised
    IndexError, TypeError or MemoryError from documents(), rows_of(), a write and a compaction."""
    path = copy_store(two_segments, tmp_path / "s")
    seg = path / "g000001" / "chunks.sqlite"
    db = sqlite3.connect(seg)
    db.execute(sql)
    db.commit()
    db.close()
    edit_manifest(path, lambda m: m["segments"][0]["files"]["chunks.sqlite"].update(
        bytes=seg.stat().st_size, sha256=hashlib.sha256(seg.read_bytes()).hexdigest()))
    every_read_path(path, must_fail=3)
    with pytest.raises(StoreError, match=str(path)):
        write(path, Store.open(path, verify=False, lazy=True), {"/d/x": vectors(np.random.default_rng(5), 2)}, {"/d/3"})
    StoreLock(path).acquire().release()


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


def test_an_ivf_segment_with_an_nprobe_faiss_cannot_hold_is_a_store_error(tmp_path, monkeypatch):
    """nprobe 2**70 passed the manifest check and raised OverflowError from FAISS's setter."""
    import test_segments
    from indexing.writer import CompressionSettings

    monkeypatch.setattr(test_segments, "SETTINGS", CompressionSettings(pca_dims=16, fit_sample=200, ann="ivf"))
    rng = np.random.default_rng(6)
    test_segments.write(tmp_path / "s", None, {f"/d/{j}": vectors(rng, PER_DOC) for j in range(12)}).close()
    for key in ("nprobe", "nlist"):
        path = copy_store(tmp_path / "s", tmp_path / key)
        edit_manifest(path, lambda m: m["segments"][0].update({key: 2**70}))
        with pytest.raises(StoreError, match=f"{key}.*not allowed"):
            Store.open(path)


def save_rows(rows: object) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, rows, allow_pickle=False)
    return buf.getvalue()


@pytest.mark.parametrize("rows", [
    np.array([5, 3, 9] + list(range(20, 37)), np.int64),  # unsorted
    np.array([3, 3] + list(range(20, 38)), np.int64),  # a row twice
    np.array(list(range(20)) + [240], np.int64)[1:],  # past the segment's rows
    np.array([-1] + list(range(21, 40)), np.int64),  # negative
    np.arange(20, 40, dtype=np.int32),  # not int64
    np.arange(20, 40, dtype=np.int64).reshape(4, 5),  # not 1-D
    np.arange(20, 39, dtype=np.int64),  # fewer rows than the manifest's count
], ids=["unsorted", "duplicate", "past-the-end", "negative", "int32", "2-d", "short"])
def test_a_tombstone_file_that_is_not_sorted_distinct_rows_is_a_store_error(two_segments, tmp_path, rows):
    """Re-signed (sizes and checksums match), a tombstone file must still hold ``count`` sorted
    distinct rows of its segment: each read path ends in StoreError naming the file."""
    path = copy_store(two_segments, tmp_path / "s")
    t = json.loads((path / "manifest.json").read_text(encoding="utf-8"))["segments"][0]["deleted"]
    data = save_rows(rows)
    (path / t["dir"] / t["file"]).write_bytes(data)
    edit_manifest(path, lambda m: m["segments"][0]["deleted"].update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest()))
    every_read_path(path)


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


@pytest.mark.parametrize("sql", [
    "UPDATE keyword_df SET df = 'x'",  # summed over the segments: TypeError
    "DROP TABLE keyword_data",  # FTS5 cannot open: a StoreError that named no file
    "INSERT INTO keyword(rowid, title, text) VALUES (100000, 'x', 'glacier ice fjord')",  # a row the segment lacks
    "INSERT INTO keyword(rowid, title, text) VALUES (-7, 'x', 'glacier ice fjord')",
], ids=["df-text", "no-fts-data", "row-past-the-end", "negative-row"])
def test_a_damaged_keyword_index_is_a_store_error_naming_its_file(two_segments, tmp_path, sql):
    """Keyword and hybrid search over a segment whose keyword index is damaged (re-signed)."""
    path = copy_store(two_segments, tmp_path / "s")
    seg = path / "g000001" / "chunks.sqlite"
    db = sqlite3.connect(seg)
    db.execute(sql)
    db.commit()
    db.close()
    edit_manifest(path, lambda m: m["segments"][0]["files"]["chunks.sqlite"].update(
        bytes=seg.stat().st_size, sha256=hashlib.sha256(seg.read_bytes()).hexdigest()))
    with Store.open(path) as s:
        for search in (lambda: s.keyword_search("glacier ice fjord chunk", 5), lambda: s.keyword_ideal("glacier ice fjord chunk")):
            try:
                search()
            except StoreError as exc:
                assert str(seg) in str(exc)
        with pytest.raises(StoreError, match=str(seg)):
            s.keyword_search("glacier ice fjord chunk", 5)
