"""Hostile store files: a pickled ``.npy``, a recursive SQL view, a generation name that is not
one, flipped FAISS index bytes, a model of another dimension; each ends in StoreError (or the
CLI's one-line error), never in running the hostile content. Also: the library holds no pickle
or eval, and the FAISS check walks every index kind a store writes.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from unittest import mock

import numpy as np
import pytest

from indexing.build import index_paths
from indexing.errors import StoreError
from indexing.store import Store
from rag.retrieve import Retriever
from tests.damaged_store import ROOT, answers, copy_of, entry, gen_file, manifest


def test_object_npy_is_refused_without_unpickling(pristine, tmp_path):
    marker = tmp_path / "unpickled"

    class Payload:
        def __reduce__(self):  # type: ignore[no-untyped-def]
            return (open, (str(marker), "w"))

    with copy_of(pristine) as store:
        file = gen_file(store, "pca.npy")
        np.save(file, np.array([Payload()], dtype=object), allow_pickle=True)
        m = manifest(store)  # re-sign it, as a hostile author can: the file must still not be unpickled
        entry(m, "pca.npy")["pca.npy"] = {"bytes": file.stat().st_size, "sha256": hashlib.sha256(file.read_bytes()).hexdigest()}
        (store / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
        with pytest.raises(StoreError, match=r"pca\.npy"):
            Store.open(store)
    assert not marker.exists()


def test_library_has_no_pickle_or_eval():
    banned = re.compile(r"import pickle|pickle\.loads?\(|allow_pickle\s*=\s*True|\beval\(|\bexec\(|torch\.load\(|yaml\.load\(")
    for folder in ("indexing", "rag", "ui"):
        for file in sorted((ROOT / folder).glob("*.py")):
            text = file.read_text(encoding="utf-8")
            assert not banned.search(text), f"{file.name}: {banned.search(text).group(0)}"
            for call in re.findall(r"np\.load\([^)]*\)", text):
                assert "allow_pickle=False" in call, f"{file.name}: {call}"


RECURSIVE_VIEW = """
ALTER TABLE chunks RENAME TO chunks_real;
CREATE VIEW chunks AS WITH RECURSIVE r(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM r)
  SELECT n AS row, '' AS doc_path, '' AS source, '' AS title, 0 AS page, 0 AS start, 0 AS "end", '' AS text, '' AS extra FROM r;
"""
READ_IN_CHILD = """
import sys
from indexing.errors import StoreError
from indexing.store import Store
from rag.cli_commands import store_info
for read in (lambda: store_info(sys.argv[1]), lambda: Store.open(sys.argv[1], verify=True)):
    try:
        read()
        print("opened")
    except StoreError as exc:
        print("StoreError", exc)
"""


def resign(store: Path, name: str) -> None:
    """Rewrite the manifest's size and checksum of ``name``, as the author of a hostile store can."""
    m = manifest(store)
    data = gen_file(store, name).read_bytes()
    entry(m, name)[name] = {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (store / "manifest.json").write_text(json.dumps(m), encoding="utf-8")


def test_recursive_view_is_refused_not_run(pristine):
    """A chunk database whose ``chunks`` is an endless recursive view: `rag info` (no checksums)
    and a checksummed open of a re-signed store both end in StoreError, in a child with a timeout."""
    import sqlite3
    import subprocess
    import sys

    with copy_of(pristine) as store:
        db = sqlite3.connect(gen_file(store, "chunks.sqlite"))
        db.executescript(RECURSIVE_VIEW)
        db.close()
        resign(store, "chunks.sqlite")
        done = subprocess.run([sys.executable, "-c", READ_IN_CHILD, str(store)], cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        lines = done.stdout.splitlines()
        assert len(lines) == 2 and all(line.startswith("StoreError") and "holds views ('chunks')" in line for line in lines), done


def test_generation_name_with_a_superscript_digit(pristine):
    with copy_of(pristine) as store:
        m = manifest(store)
        (store / m["generation"]).rename(store / "g²")  # "²".isdigit() is True, int("²") fails
        m["generation"] = "g²"
        (store / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
        with pytest.raises(StoreError, match="is not a generation name"):
            Store.open(store)
        with pytest.raises(StoreError, match="is not a generation name"):
            index_paths([pristine["docs"]], store, embedder=pristine["embedder"], refit=False)


def _index_structure_offsets(store: Path) -> list[tuple[int, int]]:
    """(offset, mask) for every byte of the IndexPQ structure: header, quantizer, vector sizes, trailer."""
    data = gen_file(store, "index.faiss").read_bytes()
    assert data[:4] == b"IxPq"
    centroids = int.from_bytes(data[61:69], "little")
    codes_at = 69 + 4 * centroids
    codes = int.from_bytes(data[codes_at : codes_at + 8], "little")
    sizes = {64, codes_at + 3}  # byte 3 of a size field: a 1-4 GiB allocation for old readers; skipped
    offsets = [o for o in [*range(69), *range(codes_at, codes_at + 8), *range(codes_at + 8 + codes, len(data))] if o not in sizes]
    return [(o, 0x40) for o in offsets] + [(68, 0x01), (codes_at + 7, 0x01)]  # lengths of 2^56: bad_alloc


def test_flipped_index_header_bytes_end_in_store_error(pristine):
    """verify=False: a flipped byte anywhere in index.faiss's structure gives StoreError naming the
    file (never std::bad_alloc, never an out-of-bounds read) or, for unused bytes, the same answers."""
    with copy_of(pristine) as store:
        file = gen_file(store, "index.faiss")
        original = file.read_bytes()
        errors = 0
        for offset, mask in _index_structure_offsets(store):
            data = bytearray(original)
            data[offset] ^= mask
            file.write_bytes(bytes(data))
            try:
                got = answers(store, pristine["docs"], pristine["embedder"], verify=False)
            except StoreError as exc:
                assert str(file) in str(exc), exc
                errors += 1
                continue
            assert got == pristine["answers"], f"byte {offset} ^ {mask:#x} changed the answers without an error"
        assert errors > 50  # the sizes, shapes and kinds are all checked


def test_manifest_naming_a_model_of_another_dimension(pristine, capsys):
    from rag.cli import EXIT_ERROR, main

    class Other(type(pristine["embedder"])):  # what loading the named model gives: 32-d vectors
        model_id, dim = "fake/other-32", 32

    with copy_of(pristine) as store:
        m = manifest(store)
        m["embedding"]["model"] = Other.model_id
        (store / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
        with mock.patch("rag.retrieve.load_embedder", lambda *a, **k: Other()):
            with pytest.raises(StoreError, match="dim 64.*gives dim 32"):
                Retriever.open(store).search("zebras", k=3)
            assert main(["search", "zebras", "--store", str(store)]) == EXIT_ERROR
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1


@pytest.mark.parametrize("dtype", ["float8", "float16", "float32", "sq8"])
@pytest.mark.parametrize("ann", ["flat", "ivf"])
def test_faiss_check_walks_every_index_kind_a_store_writes(tmp_path, structured_vectors, dtype, ann):
    """Each kind passes as written; a flipped top byte of its last vector length, a wrong shape,
    or a truncation gives StoreError."""
    from indexing.chunk import Chunk, ChunkSettings
    from indexing.faiss_check import check_index_file
    from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter

    xb = structured_vectors[0][:400]  # (400, 128)
    settings = CompressionSettings(pca_dims=16, dtype=dtype, ann=ann, nlist=4)
    with StoreWriter(tmp_path / "s", "fake/x", 128, ChunkSettings(), settings) as w:
        for i in range(0, 400, 100):
            w.add(DocumentRecord(f"/d{i}", f"d{i}", "", ""), [Chunk(f"/d{i}", f"d{i}", "", None, 0, 1, "x")] * 100, xb[i : i + 100])
        w.commit()
    file = gen_file(tmp_path / "s", "index.faiss")
    check_index_file(file, 400, 16)
    for n, d in ((399, 16), (400, 15)):
        with pytest.raises(StoreError, match="index.faiss"):
            check_index_file(file, n, d)
    data = file.read_bytes()
    file.write_bytes(data[:-1])
    with pytest.raises(StoreError, match="runs past the end|after the end"):
        check_index_file(file, 400, 16)
    length = (400 * (32 if dtype == "float16" else 16)).to_bytes(8, "little")  # code bytes (float32: floats)
    at = data.rfind(length) if ann == "flat" else data.find(b"ilar") + 4  # the codes length, or nlist of the lists
    assert at >= 37  # past the index header
    damaged = bytearray(data)
    damaged[at + 7] ^= 0x01  # 2^56 more: FAISS would ask for petabytes
    file.write_bytes(bytes(damaged))
    with pytest.raises(StoreError, match="index.faiss"):
        check_index_file(file, 400, 16)
