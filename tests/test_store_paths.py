"""Odd places for a store: a folder name that is not UTF-8, a store inside the folder it indexes."""

from __future__ import annotations

import os
from pathlib import Path

from indexing.build import index_paths
from indexing.store import Store
from rag.cli import main


def test_store_folder_name_that_is_not_utf8(tmp_path, fake_embedder, monkeypatch, capsys):
    """FAISS got such paths as ``str`` and SWIG raised TypeError: a traceback after all the work."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Walruses haul out on the sea ice to rest.", encoding="utf-8")
    store = tmp_path / os.fsdecode(b"Ablage-\xff")  # Latin-1 name on a UTF-8 system
    report = index_paths([docs], store, embedder=fake_embedder)
    assert report.added == ["docs/a.txt"]
    with Store.open(store, verify=True) as s:
        assert s.segments[0].index.ntotal == s.n == report.chunks
    (docs / "b.txt").write_text("Seals sleep in the water.", encoding="utf-8")
    assert index_paths([docs], store, embedder=fake_embedder).added == ["docs/b.txt"]  # incremental
    import rag.retrieve

    monkeypatch.setattr(rag.retrieve, "load_embedder", lambda *a, **k: type(fake_embedder)())
    assert main(["search", "walruses", "--store", str(store), "-k", "1"]) == 0
    assert "docs/a.txt" in capsys.readouterr().out


def test_store_inside_the_folder_it_indexes(tmp_path, fake_embedder):
    """The store's own files (manifest, generations) are not documents: before, every later run
    reported them as skipped and `rag index` exited 3 for good."""
    docs = tmp_path / "notes"
    docs.mkdir()
    (docs / "a.txt").write_text("Walruses haul out on the sea ice to rest.", encoding="utf-8")
    store = docs / "store"
    index_paths([docs], store, embedder=fake_embedder)
    (store / "corpus").mkdir()  # where the chat keeps uploads: real documents, still indexed
    (store / "corpus" / "up.md").write_text("# Upload\n\nNarwhals have one long tusk.", encoding="utf-8")
    for _ in range(2):
        report = index_paths([docs], store, embedder=fake_embedder)
        assert report.skipped == [], [s.path for s in report.skipped]
    assert sorted(report.added + report.unchanged) == ["notes/a.txt", "notes/store/corpus/up.md"]


def test_a_link_to_the_lock_file_is_not_read(tmp_path, fake_embedder):
    """``x.txt -> store/.lock`` was hashed and loaded: opening and closing the lock file drops this
    process's POSIX lock (lockf), so a second writer could start mid-run. Links are judged by the
    type of the file they point to."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Walruses haul out on the sea ice to rest.", encoding="utf-8")
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    (docs / "x.txt").symlink_to(store / ".lock")
    (docs / "b.txt").write_text("Seals sleep in the water.", encoding="utf-8")
    report = index_paths([docs], store, embedder=fake_embedder)
    assert report.added == ["docs/b.txt"]
    assert [s.reason for s in report.skipped] == ["links to a file of unsupported type (none)"]


def test_a_hard_link_to_the_lock_file_is_not_read(tmp_path, fake_embedder):
    """A hard link ``x.txt`` to ``store/.lock`` has a supported name and a plain file behind it:
    reading and closing it dropped the writer's POSIX lock (and indexed the writer's PID)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Walruses haul out on the sea ice to rest.", encoding="utf-8")
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    os.link(store / ".lock", docs / "x.txt")
    (docs / "b.txt").write_text("Seals sleep in the water.", encoding="utf-8")
    report = index_paths([docs], store, embedder=fake_embedder)
    assert report.added == ["docs/b.txt"]
    assert [s.reason for s in report.skipped] == ["is the store's lock file"]
