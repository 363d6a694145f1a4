"""Hostile segmented stores (a hostile review of format 2): manifests, tombstone files, chunk
databases and keyword indexes that name impossible things, re-signed so checksums match. Every
read path ends in the right answer or a StoreError naming the store, never another exception, a
huge allocation or a silently wrong row; none keeps the store's lock. Writes: test_segments_writes.py."""

from __future__ import annotations

import copy
import hashlib
import json
import resource
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from indexing import compact
from indexing.errors import StoreError
from indexing.lock import StoreLock
from indexing.store import Store
from indexing.writer import compact_store
from rag.retrieve import Retriever
from test_segments import PER_DOC, vectors, write

ROOT = Path(__file__).resolve().parent.parent


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


def edit_manifest(path: Path, edit) -> None:  # type: ignore[no-untyped-def]
    m = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    edit(m)
    (path / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def run_sql_resigned(path: Path, sql: str) -> Path:
    """Run ``sql`` on the first segment's chunk database, then re-sign it in the manifest (as the
    author of a hostile store can); returns the database file."""
    seg = path / json.loads((path / "manifest.json").read_text(encoding="utf-8"))["segments"][0]["dir"] / "chunks.sqlite"
    db = sqlite3.connect(seg)
    db.execute(sql)
    db.commit()
    db.close()
    edit_manifest(path, lambda m: m["segments"][0]["files"]["chunks.sqlite"].update(
        bytes=seg.stat().st_size, sha256=hashlib.sha256(seg.read_bytes()).hexdigest()))
    return seg


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


# -- hostile manifests ----------------------------------------------------------------------------


def test_huge_rows_with_tombstones_is_a_store_error_not_a_huge_allocation(two_segments, tmp_path):
    """Segment 0 has tombstones: its deleted-row mask was allocated (rows bytes) before the vector
    file's size was checked against rows, so rows = 2**44 raised MemoryError (or ate the RAM)."""
    path = copy_store(two_segments, tmp_path / "s")
    edit_manifest(path, lambda m: m["segments"][0].update(rows=2**44))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    vm = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) * 1024
    resource.setrlimit(resource.RLIMIT_AS, (vm + (4 << 30), hard))  # a 2**44-byte mask is refused even where memory is overcommitted
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
    run_sql_resigned(path, sql)
    every_read_path(path, must_fail=3)
    with pytest.raises(StoreError, match=str(path)):
        write(path, Store.open(path, verify=False, lazy=True), {"/d/x": vectors(np.random.default_rng(5), 2)}, {"/d/3"})
    StoreLock(path).acquire().release()


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


@pytest.mark.parametrize("sql", [
    "UPDATE keyword_df SET df = 'x'",  # summed over the segments: TypeError
    "DROP TABLE keyword_data",  # FTS5 cannot open: a StoreError that named no file
    "INSERT INTO keyword(rowid, title, text) VALUES (100000, 'x', 'glacier ice fjord')",  # a row the segment lacks
    "INSERT INTO keyword(rowid, title, text) VALUES (-7, 'x', 'glacier ice fjord')",
    "UPDATE keyword_lengths SET lengths = x'01000000'",  # one row's length for a segment of many
    "UPDATE keyword_lengths SET lengths = 'long'",
    "DELETE FROM keyword_lengths",
], ids=["df-text", "no-fts-data", "row-past-the-end", "negative-row", "lengths-short", "lengths-text", "lengths-gone"])
def test_a_damaged_keyword_index_is_a_store_error_naming_its_file(two_segments, tmp_path, sql):
    """Keyword and hybrid search over a segment whose keyword index is damaged (re-signed)."""
    path = copy_store(two_segments, tmp_path / "s")
    seg = run_sql_resigned(path, sql)
    with Store.open(path) as s:
        for search in (lambda: s.keyword_search("glacier ice fjord chunk", 5), lambda: s.keyword_query("glacier ice fjord chunk")):
            try:
                search()
            except StoreError as exc:
                assert str(seg) in str(exc)
        with pytest.raises(StoreError, match=str(seg)):
            s.keyword_search("glacier ice fjord chunk", 5)


def test_a_corrupt_page_of_the_row_lengths_is_a_store_error_naming_its_file(two_segments, tmp_path):
    """A page of ``keyword_lengths`` overwritten (bit rot under a store opened with verify=False,
    as the app and `rag search` open it, or re-signed): SQLite's "database disk image is
    malformed" is a DatabaseError, not an OperationalError, and reached the user as a traceback."""
    path = copy_store(two_segments, tmp_path / "s")
    seg = run_sql_resigned(path, "SELECT 1")
    db = sqlite3.connect(seg)
    ((page,),) = db.execute("SELECT pageno FROM dbstat WHERE name = 'keyword_lengths'").fetchall()
    (size,) = db.execute("PRAGMA page_size").fetchone()
    db.close()
    data = bytearray(seg.read_bytes())
    data[(page - 1) * size : page * size] = b"\xff" * size
    seg.write_bytes(bytes(data))
    with Store.open(path, verify=False) as s, pytest.raises(StoreError, match=str(seg)):
        s.keyword_search("glacier ice fjord chunk", 5)


def test_a_huge_row_lengths_blob_is_a_store_error_not_a_huge_allocation(two_segments, tmp_path):
    """A ``keyword_lengths`` blob of 120 MB for a segment of 240 rows (re-signed): it was read and
    widened to int64 (360 MB in all) before its size was compared with the rows: MemoryError (or
    the RAM eaten) instead of the StoreError."""
    path = copy_store(two_segments, tmp_path / "s")
    seg = run_sql_resigned(path, "UPDATE keyword_lengths SET lengths = zeroblob(120000000)")
    with Store.open(path, verify=False) as s:
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        vm = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) * 1024
        resource.setrlimit(resource.RLIMIT_AS, (vm + (200 << 20), hard))
        try:
            with pytest.raises(StoreError, match=str(seg)):
                s.keyword_search("glacier ice fjord chunk", 5)
        finally:
            resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@pytest.mark.parametrize("sql", [
    "UPDATE keyword_docsize SET sz = x'010280' WHERE id = (SELECT max(id) FROM keyword_docsize)",  # a varint left open
    "UPDATE keyword_docsize SET sz = CASE id WHEN 1 THEN x'010203' ELSE x'04' END WHERE id IN (1, 2)",  # 3 + 1 varints
    "UPDATE keyword_docsize SET sz = x'ffffffffffffffff7f01' WHERE id = 1",  # 2**63 tokens
], ids=["open-varint", "varints-moved", "huge-varint"])
def test_damaged_row_sizes_of_a_store_without_row_lengths_are_a_store_error(two_segments, tmp_path, sql):
    """A store written before ``keyword_lengths``: its row lengths are decoded from FTS5's docsize,
    which was checked only for the total number of varints: a row ending inside a varint raised
    ValueError (arrays of different lengths), varints moved from one row to the next gave rows
    each other's lengths, a 9-byte varint a negative length (and a RuntimeWarning)."""
    path = copy_store(two_segments, tmp_path / "s")
    run_sql_resigned(path, "DROP TABLE keyword_lengths")
    seg = run_sql_resigned(path, sql)
    with Store.open(path) as s, pytest.raises(StoreError, match=str(seg)):
        s.keyword_search("glacier ice fjord chunk", 5)


def test_a_write_after_the_last_generation_name_is_refused_not_unreadable(two_segments, tmp_path):
    """A manifest at generation g999999999: the next commit was named g1000000000, which the
    manifest's own check refuses, so the write left a store no reader could open."""
    path = copy_store(two_segments, tmp_path / "s")
    edit_manifest(path, lambda m: m.update(generation="g999999999"))
    with pytest.raises(StoreError, match="no generation name left"):
        write(path, Store.open(path), {"/d/x": vectors(np.random.default_rng(8), 2)})
    with Store.open(path) as s:
        assert s.manifest.generation == "g999999999" and s.n == 11 * PER_DOC + 5
    StoreLock(path).acquire().release()


@pytest.mark.parametrize("edit", [
    lambda m: m["basis"].update(dir=m["segments"][1]["dir"]),  # the basis in a folder that holds a segment only
    lambda m: m["segments"][0]["deleted"].update(dir="g000009"),  # tombstones in a folder that does not exist
    lambda m: m["segments"][0]["deleted"].update(file="index.faiss"),  # a file that is not an .npy of rows
    lambda m: m["segments"][0]["deleted"].update(count=m["segments"][0]["rows"] + 1),
    lambda m: m["segments"][1].update(deleted=dict(m["segments"][0]["deleted"])),  # another segment's tombstones
    lambda m: m["segments"][1].update(dir=m["segments"][0]["dir"]),  # two entries, one folder
    lambda m: m["segments"][0].update(rows=m["segments"][0]["rows"] - 1),
], ids=["basis-in-segment", "tombstone-dir-missing", "tombstone-not-npy", "count-past-rows", "tombstones-of-another",
        "shared-dir", "rows-short"])
def test_manifest_entries_that_name_the_wrong_thing_are_store_errors(two_segments, tmp_path, edit):
    path = copy_store(two_segments, tmp_path / "s")
    edit_manifest(path, edit)
    every_read_path(path)
