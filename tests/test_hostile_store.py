"""Damaged and hostile stores: opening one raises StoreError naming the file, never anything else.

Every case works on a fresh copy of one small store (fake embedder). A read path either raises
StoreError whose message names the store, or answers exactly like the undamaged store.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import re
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from indexing.errors import StoreError
from indexing.store import Store
from rag.retrieve import Retriever
from tests.damaged_store import (
    FLIPS, GEN_FILES, HOSTILE, MANIFEST_PATHS, PARSED_BY_PYTHON, QUERIES, SEG, SETTINGS, answers, copy_of, flip, gen_file,
    manifest,
)


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
