"""Damaged and hostile stores: opening one raises StoreError naming the file, never anything else.

Every case works on a fresh copy of one small store (fake embedder). A read path either raises
StoreError whose message names the store, or answers exactly like the undamaged store.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from indexing.build import index_paths
from indexing.errors import StoreError
from indexing.store import Store
from rag.cli_commands import store_info
from rag.retrieve import Retriever

SETTINGS = settings(derandomize=True, database=None, deadline=None, max_examples=40,
                    suppress_health_check=[HealthCheck.too_slow])
ROOT = Path(__file__).resolve().parent.parent
QUERIES = ["zebras graze on the savanna", "volcanoes erupt basalt lava", "saxophone reed"]
BASIS_FILES = ["pca.npy", "pca_energy.npy", "reduced_scale.npy", "full_scale.npy"]
SEGMENT_FILES = ["index.faiss", "full.e4m3", "chunks.sqlite"]
GEN_FILES = BASIS_FILES + SEGMENT_FILES
PARSED_BY_PYTHON = [f for f in GEN_FILES if f != "index.faiss"]  # FAISS's reader is not hardened
SEG = ("segments", 0)
MANIFEST_PATHS = [  # every field of the manifest, as a path of keys
    ("format",), ("format_version",), ("writer",), ("generation",), ("embedding",), ("counts",), ("basis",), ("segments",),
    *[("embedding", k) for k in ("model", "dim")], *[("counts", k) for k in ("chunks", "documents")],
    ("compression",), *[("compression", k) for k in ("pca_dims", "dtype", "ann", "pca_fit_vectors", "bytes_per_vector",
                                                    "index_key", "pca_energy_kept", "full_dtype", "full_bytes_per_vector")],
    ("chunker",), *[("chunker", k) for k in ("chunk_tokens", "overlap", "encoding")],
    ("basis", "dir"), ("basis", "files"), *[("basis", "files", f) for f in BASIS_FILES],
    *[("basis", "files", f, k) for f in BASIS_FILES for k in ("bytes", "sha256")],
    SEG, *[(*SEG, k) for k in ("dir", "rows", "documents", "files", "ann", "nlist", "nprobe", "bytes_per_vector", "deleted")],
    *[(*SEG, "files", f) for f in SEGMENT_FILES], *[(*SEG, "files", f, k) for f in SEGMENT_FILES for k in ("bytes", "sha256")],
]
HOSTILE = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.sampled_from([0, -1, 2**63, 10**400]),
    st.floats(), st.text(max_size=12), st.sampled_from(["../x", "../../etc/passwd", "/etc", "g000001/..", "g²", "g-1"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
)
FLIPS = st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=20)


class Pristine(dict):
    def __repr__(self) -> str:  # keeps Hypothesis's falsifying examples short
        return "<pristine store>"


@pytest.fixture(scope="module")
def pristine(tmp_path_factory, pytestconfig) -> Pristine:
    # tests/conftest.py's FakeEmbedder: ``import conftest`` is ambiguous beside tests/e2e/conftest.py
    embedder = next(p.FakeEmbedder for p in pytestconfig.pluginmanager.get_plugins() if hasattr(p, "FakeEmbedder"))()
    root = tmp_path_factory.mktemp("hostile")
    docs = root / "docs"
    docs.mkdir()
    filler = " ".join(f"filler{i % 40}" for i in range(150))
    (docs / "zebra.txt").write_text(f"Zebras graze on the savanna and their stripes confuse flies.\n\n{filler}")
    (docs / "volcano.md").write_text(f"# Volcanoes\n\nVolcanoes erupt molten basalt lava through the crust.\n\n{filler}")
    (docs / "music.txt").write_text(f"The saxophone is a woodwind played with a single reed.\n\n{filler}")
    store = root / "store"
    index_paths([docs], store, embedder=embedder, chunk_tokens=64, overlap=8)
    return Pristine(store=store, docs=docs, embedder=embedder, answers=answers(store, docs, embedder))


def answers(store: Path, docs: Path, embedder, verify: bool = True) -> tuple:  # type: ignore[no-untyped-def]
    """What the read paths give: search hits and documents; info and an incremental run must not fail."""
    with Store.open(store, verify=verify) as s:
        r = Retriever(s, embedder)
        hits = [[(h.row, round(h.score, 5), h.source, h.text) for h in r.search(q, k=3)] for q in QUERIES]
        documents = s.documents()
    store_info(str(store))  # `rag info`
    if verify:
        assert not index_paths([docs], store, embedder=embedder).changed  # nothing changed on disk
    return hits, documents


@contextmanager
def copy_of(pristine: dict) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(dir=pristine["store"].parent) as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(pristine["store"], store)
        yield store


def manifest(store: Path) -> dict:
    return json.loads((store / "manifest.json").read_text(encoding="utf-8"))


def entry(m: dict, name: str) -> dict:
    """The manifest's ``files`` section that lists ``name`` (the basis or the only segment)."""
    return m["basis"]["files"] if name in BASIS_FILES else m["segments"][0]["files"]


def gen_file(store: Path, name: str) -> Path:
    m = manifest(store)
    return store / (m["basis"]["dir"] if name in BASIS_FILES else m["segments"][0]["dir"]) / name


def flip(file: Path, flips: list[tuple[float, int]]) -> None:
    """XOR ``mask`` into the byte at each relative position ``where``."""
    data = bytearray(file.read_bytes())
    for where, mask in flips:
        data[int(where * len(data))] ^= mask
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("raw", [
    b"[" * 100_000 + b"]" * 100_000,  # nesting deeper than the JSON parser's recursion limit
    b'{"format": "compressed-rag-store", "format_version": 1' + b"0" * 5000 + b"}",  # over Python's int digit limit
], ids=["deep-nesting", "huge-int-literal"])
def test_pathological_json_manifest(pristine, raw):
    with copy_of(pristine) as store:
        (store / "manifest.json").write_bytes(raw)
        with pytest.raises(StoreError, match=re.escape(str(store / "manifest.json"))):
            Store.open(store)


@SETTINGS
@given(raw=st.binary(max_size=300))
@example(raw=b"")
@example(raw=b"null")
@example(raw=b"\xff\xfe{}")
def test_random_bytes_manifest(pristine, raw):
    test_pathological_json_manifest(pristine, raw)


@SETTINGS
@given(path=st.sampled_from(MANIFEST_PATHS), value=HOSTILE, delete=st.booleans())
@example(path=(*SEG, "nprobe"), value=4, delete=False)  # only an IVF segment has nprobe
@example(path=("chunker",), value={"evil": 1}, delete=False)
@example(path=("chunker", "chunk_tokens"), value="64", delete=False)
@example(path=("compression", "bytes_per_vector"), value=0, delete=False)
@example(path=("writer",), value=None, delete=True)
@example(path=(*SEG, "files", "../x"), value={"bytes": 1, "sha256": "0" * 64}, delete=False)
@example(path=("generation",), value="g000001/../../..", delete=False)
@example(path=(*SEG, "dir"), value="g000001/../../..", delete=False)
@example(path=(*SEG, "deleted"), value={"dir": "g000001", "file": "../../x", "count": 1, "bytes": 1, "sha256": "0"}, delete=False)
@example(path=(*SEG, "rows"), value=10**400, delete=False)
def test_manifest_fields_with_wrong_types_or_missing(pristine, path, value, delete):
    with copy_of(pristine) as store:
        m = manifest(store)
        section = m
        for key in path[:-1]:
            section = section[key]
        if delete:
            section.pop(path[-1], None)
        else:
            section[path[-1]] = value
        (store / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
        try:
            got = answers(store, pristine["docs"], pristine["embedder"])
        except StoreError as exc:
            assert str(store) in str(exc), f"the message does not name the store or file: {exc}"
            return
        assert got == pristine["answers"], "a damaged store gave a different answer instead of an error"


@pytest.mark.parametrize("name", ["../x", "../../etc/passwd", "/etc/passwd", "..", ".", "", "sub/pca.npy", "x\\..\\y", "\x00"])
def test_file_entries_cannot_leave_the_generation(pristine, name):
    with copy_of(pristine) as store:
        m = manifest(store)
        m["segments"][0]["files"][name] = {"bytes": 0, "sha256": hashlib.sha256(b"").hexdigest()}
        (store / "manifest.json").write_text(json.dumps(m), encoding="utf-8")
        with pytest.raises(StoreError, match=re.escape(str(store))):
            Store.open(store)


@pytest.mark.parametrize("name", GEN_FILES)
@settings(SETTINGS, max_examples=15)
@given(op=st.sampled_from(["flip", "truncate", "append"]), where=st.floats(0, 1, exclude_max=True), mask=st.integers(1, 255))
def test_damaged_file_is_named_and_never_parsed(pristine, name, op, where, mask):
    with copy_of(pristine) as store:
        file = gen_file(store, name)
        data = bytearray(file.read_bytes())
        at = int(where * len(data))
        if op == "flip":
            data[at] ^= mask
        data = data[:at] if op == "truncate" else data + bytes([mask]) * (op == "append")
        file.write_bytes(bytes(data))
        with mock.patch("faiss.read_index", side_effect=AssertionError("FAISS parsed a damaged file")) as read:
            with pytest.raises(StoreError, match=re.escape(str(file))):
                Store.open(store)
        assert not read.called


def test_verify_is_the_default():
    assert inspect.signature(Store.open).parameters["verify"].default is True
    assert inspect.signature(Retriever.open).parameters["verify"].default is True


@SETTINGS
@given(flips=FLIPS)
@example(flips=[(i / 64, 0x7F) for i in range(64)])  # e4m3fn NaN bit patterns
def test_verify_false_with_flipped_full_vectors_still_answers(pristine, flips):
    """verify=False skips checksums: scores may change, but search returns valid hits, no crash."""
    with copy_of(pristine) as store:
        flip(gen_file(store, "full.e4m3"), flips)
        with Store.open(store, verify=False) as s:
            r = Retriever(s, pristine["embedder"])
            for q in QUERIES:
                for exact in (False, True):
                    hits = r.search(q, k=3, exact=exact)
                    assert len(hits) <= 3 and all(0 <= h.row < s.n for h in hits)


@SETTINGS
@given(name=st.sampled_from(PARSED_BY_PYTHON), flips=FLIPS)
def test_verify_false_damage_gives_store_error_or_answers(pristine, name, flips):
    with copy_of(pristine) as store:
        flip(gen_file(store, name), flips)
        try:
            answers(store, pristine["docs"], pristine["embedder"], verify=False)
        except StoreError as exc:
            assert str(store) in str(exc)


def _invalid_utf8_in_sha(data: bytes, store: Path) -> bytes:
    with Store.open(store) as s:
        sha = next(iter(s.documents().values()))[0].encode()
    return data.replace(sha, sha[:10] + b"\xb7" + sha[11:])


@pytest.mark.parametrize("name, damage", [
    ("full_scale.npy", lambda d, s: d.replace(b"), }", b"), (", 1)),  # unbalanced header: tokenizer error
    ("pca.npy", lambda d, s: d.replace(b"'<f4'", b"'|O8'", 1)),  # claims an object array
    ("chunks.sqlite", lambda d, s: d.replace(b"SQLite format 3", b"SQLite format 4", 1)),
    ("chunks.sqlite", _invalid_utf8_in_sha),  # a text column that is not UTF-8
], ids=["npy-unbalanced-header", "npy-object-dtype", "sqlite-bad-magic", "sqlite-invalid-utf8"])
def test_verify_false_targeted_damage(pristine, name, damage):
    with copy_of(pristine) as store:
        file = gen_file(store, name)
        before = file.read_bytes()
        file.write_bytes(damage(before, store))
        assert file.read_bytes() != before
        with pytest.raises(StoreError, match=re.escape(str(store))):
            answers(store, pristine["docs"], pristine["embedder"], verify=False)


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
