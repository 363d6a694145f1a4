"""Pruning removes documents whose files are gone, never ones it merely could not see.

An unreadable folder (no permission), an unreadable file, or a hidden folder the walk skips must
keep what the store already holds. Permissions do not stop root, so as root the run that meets
the unreadable folder is a child process without CAP_DAC_OVERRIDE / CAP_DAC_READ_SEARCH
(``setpriv``, util-linux).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from indexing.build import index_paths
from indexing.store import Store
from tests.unprivileged import run_unprivileged

CHILD = (
    "import sys, json\n"
    "from pathlib import Path\n"
    "from conftest import FakeEmbedder\n"
    "from indexing.build import index_paths\n"
    "r = index_paths([Path(sys.argv[1])], Path(sys.argv[2]), embedder=FakeEmbedder())\n"
    "print(json.dumps({'removed': r.removed, 'skipped': [s.reason for s in r.skipped]}))\n"
)


def index_without_privileges(folder: Path, store: Path) -> str:
    """Index ``folder`` in a child that file permissions apply to (also when the tests run as root)."""
    done = run_unprivileged("-c", CHILD, str(folder), str(store))
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "X"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("Aardvarks dig burrows at night.", encoding="utf-8")
    (folder / "sub" / "b.txt").write_text("Badgers guard their setts fiercely.", encoding="utf-8")
    (folder / "sub" / "c.txt").write_text("Capybaras bathe in warm rivers.", encoding="utf-8")
    return folder


def stored(store: Path) -> set[str]:
    with Store.open(store) as s:
        return {src for _, _, src in s.documents().values()}


ALL = {"X/a.txt", "X/sub/b.txt", "X/sub/c.txt"}


@pytest.mark.parametrize("locked", ["X/sub", "X"])
def test_unreadable_folder_prunes_nothing(tmp_path, fake_embedder, locked):
    folder = docs(tmp_path)
    store = tmp_path / "store"
    index_paths([folder], store, embedder=fake_embedder)
    os.chmod(tmp_path / locked, 0)
    try:
        out = index_without_privileges(folder, store)
    finally:
        os.chmod(tmp_path / locked, 0o755)
    assert "cannot read folder" in out and '"removed": []' in out, out
    assert stored(store) == ALL


def test_unreadable_known_file_keeps_its_chunks(tmp_path, fake_embedder):
    folder = docs(tmp_path)
    store = tmp_path / "store"
    index_paths([folder], store, embedder=fake_embedder)
    (folder / "new.txt").write_text("Dingoes roam the outback.", encoding="utf-8")  # something to commit
    os.chmod(folder / "sub" / "b.txt", 0)
    try:
        out = index_without_privileges(folder, store)
    finally:
        os.chmod(folder / "sub" / "b.txt", 0o644)
    assert "cannot read" in out, out
    assert stored(store) == ALL | {"X/new.txt"}


def test_hidden_file_indexed_on_its_own_survives_indexing_its_folder(tmp_path, fake_embedder):
    folder = docs(tmp_path)
    (folder / ".notes").mkdir()
    (folder / ".notes" / "n.txt").write_text("Narwhals have one long tusk.", encoding="utf-8")
    store = tmp_path / "store"
    index_paths([folder / ".notes" / "n.txt"], store, embedder=fake_embedder)
    report = index_paths([folder], store, embedder=fake_embedder)  # the walk skips hidden folders
    assert report.removed == []
    assert stored(store) == ALL | {"n.txt"}
    (folder / ".notes" / "n.txt").unlink()  # really gone now: pruned
    assert index_paths([folder], store, embedder=fake_embedder).removed == ["n.txt"]


def test_refit_keeps_the_stores_other_documents(tmp_path, fake_embedder):
    """`--refit` (what a change of --chunk-tokens asks for) rebuilt the store from the given paths
    only: documents indexed from other folders (or uploaded in the chat) vanished, with removed=0."""
    folder = docs(tmp_path)
    other = tmp_path / "Y"
    other.mkdir()
    (other / "y.txt").write_text("Yaks graze on high plateaus.", encoding="utf-8")
    (other / "z.txt").write_text("Zebus carry loads in the heat.", encoding="utf-8")
    store = tmp_path / "store"
    index_paths([folder], store, embedder=fake_embedder)
    index_paths([other], store, embedder=fake_embedder)
    (other / "z.txt").unlink()
    report = index_paths([folder], store, embedder=fake_embedder, refit=True, chunk_tokens=64)
    assert report.removed == ["Y/z.txt"]  # its file is gone: said, not silent
    assert stored(store) == ALL | {"Y/y.txt"}  # same citation name as before
    with Store.open(store) as s:
        assert s.manifest.chunker["chunk_tokens"] == 64
