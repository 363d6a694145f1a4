"""Readers see the old generation or the new one while a writer commits, never an error.

A real writer process commits generation after generation (fake embedder) while this process
opens the store in a loop, checksums verified, and searches it, and while ``rag info`` reads it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from indexing.build import index_paths
from indexing.errors import StoreError
from indexing.store import Store
from rag.cli_commands import store_info
from rag.retrieve import Retriever
from test_writers import CHILD, ROOT, child_env, folder_with

COMMITS = 30


def test_readers_during_commits_never_fail(tmp_path, fake_embedder):
    docs = folder_with(tmp_path, "alpha", 5)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    writer = subprocess.Popen([sys.executable, str(CHILD), "commits", str(docs), str(store), str(COMMITS)],
                              cwd=ROOT, env=child_env(), text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    opens, failures, generations = 0, [], set()
    try:
        while writer.poll() is None:
            try:
                with Store.open(store) as s:  # verify=True: every checksum
                    generations.add(s.manifest.generation)
                    hits = Retriever(s, fake_embedder).search("document alpha things", k=3)
                    assert hits and s.documents()
                store_info(str(store))  # `rag info`
                opens += 1
            except StoreError as exc:
                failures.append(str(exc))
    finally:
        out, err = writer.communicate(timeout=120)
    assert writer.returncode == 0, err
    assert out.count("commit ") == COMMITS
    assert not failures, f"{len(failures)} of {opens + len(failures)} reads failed: {failures[:3]}"
    assert opens > COMMITS and len(generations) > 5, (opens, generations)  # the reads really overlapped the commits


def test_a_generation_replaced_twice_while_opening_is_not_damage(tmp_path, fake_embedder):
    """Two commits land between reading the manifest and opening its generation: the reader
    retries with the new manifest instead of calling the store damaged."""
    docs = folder_with(tmp_path, "alpha", 2)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    real = Store.__init__
    replaced: list[bool] = []

    def slow_reader(self, path: Path, manifest, lazy: bool = False) -> None:  # type: ignore[no-untyped-def]
        if not replaced:  # the first open is slow: two writers rewrite the store meanwhile
            replaced.append(True)
            for i in range(2):
                (docs / f"late{i}.txt").write_text(f"Late text {i}.")
                index_paths([docs], store, embedder=fake_embedder, refit=True)
        real(self, path, manifest, lazy)

    with mock.patch.object(Store, "__init__", slow_reader):
        with Store.open(store) as s:
            assert s.manifest.generation == "g000003" and s.manifest.documents == 4
    assert not (store / "g000001").exists()  # the generation it first read was gone


def test_a_really_missing_file_is_still_damage(tmp_path, fake_embedder):
    docs = folder_with(tmp_path, "alpha", 2)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    (store / "g000001" / "pca.npy").unlink()
    with pytest.raises(StoreError, match="pca.npy is missing; the store is damaged"):
        Store.open(store)


def test_an_open_store_keeps_answering_after_its_generation_is_removed(tmp_path, fake_embedder):
    """A long-lived reader (the chat app) holds its generation's files open: once two commits have
    removed that folder, searches on the open store still answer from it."""
    docs = folder_with(tmp_path, "alpha", 3)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    with Store.open(store) as s:
        before = [(h.row, h.text) for h in Retriever(s, fake_embedder).search("alpha things", k=3)]
        for i in range(2):  # two rewrites (a refit; a compaction does the same)
            (docs / f"late{i}.txt").write_text(f"Late text {i}.")
            index_paths([docs], store, embedder=fake_embedder, refit=True)
        assert not (store / "g000001").exists()
        assert [(h.row, h.text) for h in Retriever(s, fake_embedder).search("alpha things", k=3)] == before
        assert len(s.documents()) == 3
