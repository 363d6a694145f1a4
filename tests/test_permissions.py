"""Permissions: a store another user can read, and one clear error (never a traceback) when the
disk says no: an unreadable manifest, a store folder that cannot be written."""

from __future__ import annotations

import os
import stat

from indexing.build import index_paths
from indexing.manifest import MANIFEST
from tests.unprivileged import run_unprivileged

CHILD = (
    "import sys\n"
    "from pathlib import Path\n"
    "from conftest import FakeEmbedder\n"
    "from indexing.build import index_paths\n"
    "from indexing.errors import StoreError\n"
    "try:\n"
    "    index_paths([Path(sys.argv[1])], Path(sys.argv[2]), embedder=FakeEmbedder())\n"
    "except StoreError as exc:\n"
    "    print('StoreError', exc)\n"
)


def make_store(tmp_path, fake_embedder):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Walruses haul out on the sea ice to rest.", encoding="utf-8")
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    return docs, store


def test_manifest_is_as_readable_as_the_other_files(tmp_path, fake_embedder):
    """mkstemp made manifest.json 0600 while the generation files are 0644 (umask 022): a store
    that one user indexed could not be served by another."""
    _, store = make_store(tmp_path, fake_embedder)
    umask = os.umask(0o022)
    os.umask(umask)
    (gen,) = [p for p in store.iterdir() if p.name.startswith("g")]
    manifest_mode = stat.S_IMODE((store / MANIFEST).stat().st_mode)
    assert manifest_mode == stat.S_IMODE((gen / "chunks.sqlite").stat().st_mode) == 0o666 & ~umask


def test_unreadable_manifest_is_one_error_line(tmp_path, fake_embedder):
    _, store = make_store(tmp_path, fake_embedder)
    os.chmod(store / MANIFEST, 0)
    try:
        done = run_unprivileged("-m", "rag.cli", "info", "--store", str(store))
    finally:
        os.chmod(store / MANIFEST, 0o644)
    assert done.returncode == 1 and done.stderr.startswith("error: cannot read"), done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def test_store_folder_that_cannot_be_written_is_a_store_error(tmp_path, fake_embedder):
    docs, store = make_store(tmp_path, fake_embedder)
    (docs / "b.txt").write_text("Seals sleep in the water.", encoding="utf-8")
    os.chmod(store, 0o555)
    try:
        done = run_unprivileged("-c", CHILD, str(docs), str(store))
    finally:
        os.chmod(store, 0o755)
    assert done.returncode == 0 and done.stdout.startswith("StoreError cannot write into the store folder"), done.stderr[-2000:]
    assert sorted(p.name for p in store.iterdir() if not p.name.startswith(".")) == ["g000001", MANIFEST]
