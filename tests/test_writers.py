"""Writers of one store: the lock, lost updates, what cleanup may delete, pruning, bad --store paths.

Concurrent writers are real processes (``tests/writer_child.py``, fake embedder); the lock is the
real POSIX lock on the real file.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing.build import index_paths
from indexing.commit import referenced
from indexing.errors import ConfigError, StoreError
from indexing.lock import StoreLock, StoreLockedError
from indexing.manifest import MANIFEST
from indexing.store import Store
from rag.cli import EXIT_ERROR, main

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
CHILD = TESTS / "writer_child.py"


def child_env() -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH")]))
    return dict(os.environ, PYTHONPATH=path, OMP_NUM_THREADS="1")


def start_child(*argv: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(CHILD), *argv], cwd=ROOT, env=child_env(), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def expect_line(proc: subprocess.Popen, want: str) -> str:
    line = proc.stdout.readline().strip()
    if line == "start":  # the child finished importing
        line = proc.stdout.readline().strip()
    assert line.startswith(want), f"child said {line!r}, stderr: {proc.stderr.read()[-2000:] if proc.poll() is not None else ''}"
    return line


def folder_with(root: Path, name: str, n: int) -> Path:
    folder = root / name
    folder.mkdir()
    for i in range(n):
        (folder / f"{name}{i}.txt").write_text(f"Document {name} number {i} about {name}{i} things.\n", encoding="utf-8")
    return folder


def sources(store: Path) -> set[str]:
    with Store.open(store) as s:
        return {src for _, _, src in s.documents().values()}


@pytest.fixture
def base_store(tmp_path, fake_embedder) -> Path:
    store = tmp_path / "store"
    index_paths([folder_with(tmp_path, "base", 3)], store, embedder=fake_embedder)
    return store


@pytest.mark.parametrize("wait", [30.0, 0.0], ids=["second-waits", "second-fails"])
def test_two_concurrent_writers_lose_nothing(tmp_path, base_store, wait):
    """A holds the lock while it embeds; B starts then. B waits and adds to A's result, or fails with
    nothing changed: in both cases every document A wrote is in the store."""
    a, b = folder_with(tmp_path, "alpha", 4), folder_with(tmp_path, "beta", 4)
    first = start_child("index", str(a), str(base_store), "30", "hold")
    expect_line(first, "holding")  # A holds the lock, inside its embedding step
    second = start_child("index", str(b), str(base_store), str(wait), "")
    if wait:
        expect_line(second, "waiting")  # told it waits, naming A's pid
    else:
        second.wait(60)  # B gave up while A held the lock
    os.kill(first.pid, signal.SIGUSR1)  # let A finish
    assert first.wait(60) == 0, first.stderr.read()
    code = second.wait(60)
    out, err = second.communicate()
    got = sources(base_store)
    want_a = {f"alpha/alpha{i}.txt" for i in range(4)} | {f"base/base{i}.txt" for i in range(3)}
    assert want_a <= got, f"documents lost: {want_a - got}"
    if wait:
        assert code == 0, err
        assert got == want_a | {f"beta/beta{i}.txt" for i in range(4)}
    else:
        assert code == 1 and f"pid {first.pid}" in err and "is writing" in err, err
        assert got == want_a  # the loser changed nothing


def test_stale_base_is_refused_by_the_writer(tmp_path, base_store, fake_embedder):
    """A writer given a base that another writer replaced since refuses instead of dropping its work."""
    from indexing.chunk import ChunkSettings
    from indexing.writer import StoreWriter

    stale = Store.open(base_store)
    index_paths([folder_with(tmp_path, "alpha", 1)], base_store, embedder=fake_embedder)
    with pytest.raises(StoreError, match="changed by another writer"):
        StoreWriter(base_store, fake_embedder.model_id, fake_embedder.dim, ChunkSettings(), base=stale)
    stale.close()
    assert "alpha/alpha0.txt" in sources(base_store)


def test_locked_message_names_the_holder_and_waits(tmp_path, base_store, fake_embedder):
    holder = start_child("lock", str(base_store), "0")
    try:
        expect_line(holder, "holding")
        told: list[str] = []
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError, match=rf"another process \(pid {holder.pid}\) is writing"):
            index_paths([tmp_path / "base"], base_store, embedder=fake_embedder, wait=0.5, on_wait=told.append)
        assert time.monotonic() - t0 >= 0.5 and len(told) == 1 and f"pid {holder.pid}" in told[0]
    finally:
        holder.kill()
        holder.wait(10)
    index_paths([tmp_path / "base"], base_store, embedder=fake_embedder)  # the kernel dropped the dead holder's lock


def test_lock_is_not_inherited_by_a_forked_child(tmp_path, base_store, fake_embedder):
    """The writer forks a child (as OpenVINO's telemetry did) and is SIGKILLed; the child lives on
    but holds no lock, so the next writer goes ahead."""
    parent = start_child("lock", str(base_store), "1")
    try:
        line = expect_line(parent, "holding")
        grandchild = int(line.split()[1])
        parent.kill()
        parent.wait(10)
        os.kill(grandchild, 0)  # still alive, with the lock file descriptor inherited
        report = index_paths([folder_with(tmp_path, "alpha", 1)], base_store, embedder=fake_embedder)
        assert report.added == ["alpha/alpha0.txt"]
    finally:
        try:
            os.kill(grandchild, signal.SIGKILL)
        except (ProcessLookupError, UnboundLocalError):
            pass


def test_lock_file_symlink_is_refused_not_truncated(tmp_path, base_store, fake_embedder):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    (base_store / ".lock").unlink(missing_ok=True)
    (base_store / ".lock").symlink_to(victim)
    with pytest.raises(StoreError, match="symbolic link"):
        index_paths([folder_with(tmp_path, "alpha", 1)], base_store, embedder=fake_embedder)
    assert victim.read_text() == "precious"


def test_user_folders_survive(tmp_path, fake_embedder):
    """A folder named like a generation but not made by the store is never deleted."""
    docs = folder_with(tmp_path, "alpha", 2)
    target = tmp_path / "D"
    (target / "g2019").mkdir(parents=True)
    (target / "g2019" / "t.txt").write_text("x")
    with pytest.raises(StoreError, match="not empty and is not a store"):
        index_paths([docs], target, embedder=fake_embedder)
    assert (target / "g2019" / "t.txt").read_text() == "x" and sorted(os.listdir(target)) == ["g2019"]
    store = tmp_path / "S"
    index_paths([docs], store, embedder=fake_embedder)
    for name in ("g2019", "g000009", ".tmp-g000002-77"):  # user folders inside a store
        (store / name).mkdir()
        (store / name / "t.txt").write_text("x")
    for i in range(3):  # three commits (and compactions): every folder no manifest names any more goes
        (docs / f"new{i}.txt").write_text(f"More text number {i}.")
        before = referenced(store)
        index_paths([docs], store, embedder=fake_embedder, refit=i == 2)
    assert all((store / n / "t.txt").read_text() == "x" for n in ("g2019", "g000009", ".tmp-g000002-77"))
    gens = {p.name for p in store.iterdir() if p.is_dir() and p.name.startswith("g0") and p.name != "g000009"}
    assert gens == referenced(store) | before, gens  # the current manifest's folders and the replaced one's


def test_empty_folder_and_existing_store_are_fine(tmp_path, fake_embedder):
    docs = folder_with(tmp_path, "alpha", 1)
    (tmp_path / "empty").mkdir()
    index_paths([docs], tmp_path / "empty", embedder=fake_embedder)
    assert (tmp_path / "empty" / MANIFEST).is_file()


def test_missing_folder_prunes_nothing(tmp_path, fake_embedder):
    docs = folder_with(tmp_path, "alpha", 3)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    docs.rename(tmp_path / "moved")
    report = index_paths([docs], store, embedder=fake_embedder)
    assert report.removed == [] and [s.reason for s in report.skipped] == ["does not exist"]
    assert len(sources(store)) == 3


def test_prune_choice(tmp_path, fake_embedder):
    docs = folder_with(tmp_path, "alpha", 3)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder)
    (docs / "alpha0.txt").unlink()
    assert index_paths([docs], store, embedder=fake_embedder, prune=False).removed == []
    assert len(sources(store)) == 3
    assert index_paths([docs], store, embedder=fake_embedder).removed == ["alpha/alpha0.txt"]
    assert len(sources(store)) == 2


def test_chunker_settings_on_an_existing_store_need_refit(tmp_path, fake_embedder):
    docs = folder_with(tmp_path, "alpha", 2)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=fake_embedder, chunk_tokens=64, overlap=8)
    index_paths([docs], store, embedder=fake_embedder, chunk_tokens=64)  # the same value is fine
    for kwargs in ({"chunk_tokens": 128}, {"overlap": 16}):
        with pytest.raises(ConfigError, match="--refit"):
            index_paths([docs], store, embedder=fake_embedder, **kwargs)
    index_paths([docs], store, embedder=fake_embedder, chunk_tokens=128, refit=True)
    assert json.loads((store / MANIFEST).read_text())["chunker"]["chunk_tokens"] == 128


@pytest.fixture
def fake_models(monkeypatch, fake_embedder):
    import indexing.build

    monkeypatch.setattr(indexing.build, "load_embedder", lambda *a, **k: type(fake_embedder)())


@pytest.mark.parametrize("where", ["file", "file/sub"])
def test_store_path_through_a_file_is_one_clear_error(tmp_path, capsys, fake_models, where):
    docs = folder_with(tmp_path, "alpha", 1)
    (tmp_path / "file").write_text("not a folder")
    code = main(["index", str(docs), "--store", str(tmp_path / where)])
    out, err = capsys.readouterr()
    assert code == EXIT_ERROR and err.startswith("error: ") and err.count("\n") == 1 and "file" in err, err
    assert (tmp_path / "file").read_text() == "not a folder"


def test_cli_wait_and_prune_flags(tmp_path, capsys, fake_models):
    docs = folder_with(tmp_path, "alpha", 2)
    store = tmp_path / "store"
    assert main(["index", str(docs), "--store", str(store)]) == 0
    (docs / "alpha0.txt").unlink()
    assert main(["index", str(docs), "--store", str(store), "--no-prune", "--wait", "1"]) == 0
    assert "removed=0" in capsys.readouterr().out
    with StoreLock(store):  # held by this process: the CLI waits 0.3 s, says so, then gives up
        assert main(["index", str(docs), "--store", str(store), "--wait", "0.3"]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "waiting up to 0.3 s" in err and "is writing" in err
    assert main(["index", str(docs), "--store", str(store), "--prune"]) == 0
    assert "removed=1" in capsys.readouterr().out
    shutil.rmtree(docs)
