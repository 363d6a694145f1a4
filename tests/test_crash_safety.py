"""Crash safety: a writer killed with SIGKILL at any moment leaves the old store or the new one.

A folder is indexed (fake embedder), then changed (files added, modified, removed). Each run
starts a child process that re-indexes the changed folder and kills it after a seeded random
delay: either anywhere in the work, or just after it enters ``StoreWriter.commit`` (the
rename + manifest swap window; the change deletes over a third of the segment, so each run commits
twice: the new segment with tombstones, then a compaction). Fixed crash points cover both commits. After every kill ``Store.open(verify=True)`` must succeed and hold
exactly the old content or exactly the new one; re-running the index must then give the new one.
Children are started two runs ahead and wait on stdin, so their import time overlaps the checks.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexing.build import index_paths
from indexing.commit import referenced
from indexing.generations import MARKER
from indexing.manifest import MANIFEST
from indexing.store import Store

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
RUNS = 20  # random kills, on top of the calibration run and the fixed crash points
SEED = 20240611

CHILD = r'''
import os, signal, sys
from pathlib import Path

from conftest import FakeEmbedder  # tests/ is on PYTHONPATH, set by the parent
import indexing.commit as commit_mod
import indexing.writer as writer
from indexing.build import index_paths

warm = Path(sys.argv[1])  # warm up imports, tokenizer and FAISS on a throwaway store
index_paths([warm / "doc"], warm / "store", embedder=FakeEmbedder(), chunk_tokens=64, overlap=8)
print("ready", flush=True)
folder, store, die_at = sys.stdin.readline().rstrip("\n").split("\t")

def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)

commit = writer.StoreWriter.commit
def traced_commit(self):
    print("commit", flush=True)
    if die_at == "commit":
        die()
    return commit(self)
writer.StoreWriter.commit = traced_commit
switch = commit_mod.write_json_atomic
if die_at == "manifest":  # the new segment folder is in place, the manifest not yet switched
    commit_mod.write_json_atomic = die
if die_at == "after-manifest":  # the manifest is switched, the replaced folders not yet removed
    commit_mod.write_json_atomic = lambda *args: (switch(*args), die())
compact = writer._compact
def traced_compact(*args):
    if die_at == "compact":  # the segment commit landed, the compaction starts
        die()
    if die_at == "compact-manifest":  # the merged segment is written, its manifest not yet switched
        commit_mod.write_json_atomic = die
    return compact(*args)
writer._compact = traced_compact
index_paths([Path(folder)], Path(store), embedder=FakeEmbedder())
print("done", flush=True)
'''


def fake_embedder_type(config: pytest.Config) -> type:
    """FakeEmbedder of tests/conftest.py (``import conftest`` is ambiguous beside tests/e2e/conftest.py)."""
    return next(p.FakeEmbedder for p in config.pluginmanager.get_plugins() if hasattr(p, "FakeEmbedder"))


def words(rng: random.Random, n: int) -> str:
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in ("ba", "de", "fi", "go", "hu", "ja")]
    sentences = [" ".join(rng.choice(vocab) for _ in range(12)).capitalize() + "." for _ in range(n // 12)]
    return " ".join(sentences) + "\n"


def content(store: Path) -> tuple[dict[str, str], int]:
    """(document path -> sha256, chunk count) of the store, opened with checksums verified."""
    with Store.open(store, verify=True) as s:
        docs = s.documents()
        assert sum(n for _, n, _ in docs.values()) == s.n
        assert {c.doc_path for c in s.iter_chunks()} == set(docs)
        return {p: sha for p, (sha, _, _) in docs.items()}, s.n


def generation_dirs(store: Path) -> list[str]:
    """Generation and temporary folders the store made (they carry the writer's marker file)."""
    return sorted(e.name for e in store.iterdir() if e.is_dir() and (e / MARKER).is_file())


@pytest.fixture(scope="module")
def world(tmp_path_factory, pytestconfig):
    """The folder (already changed to its new state), a snapshot of the old store, both contents."""
    FakeEmbedder = fake_embedder_type(pytestconfig)  # noqa: N806
    root = tmp_path_factory.mktemp("crash")
    rng = random.Random(SEED)
    folder = root / "docs"
    folder.mkdir()
    for i in range(100):
        (folder / f"doc{i:03d}.txt").write_text(words(rng, 240), encoding="utf-8")
    old_store = root / "old"
    index_paths([folder], old_store, embedder=FakeEmbedder(), chunk_tokens=64, overlap=8)
    old = content(old_store)
    for i in range(0, 20):
        (folder / f"doc{i:03d}.txt").unlink()
    for i in range(20, 35):
        (folder / f"doc{i:03d}.txt").write_text(words(rng, 300), encoding="utf-8")
    for i in range(100, 140):
        (folder / f"doc{i:03d}.txt").write_text(words(rng, 240), encoding="utf-8")
    ref = root / "ref"
    shutil.copytree(old_store, ref)
    index_paths([folder], ref, embedder=FakeEmbedder())
    new = content(ref)
    assert old[0] != new[0] and old[1] != new[1]
    warm = root / "warm"
    (warm / "doc").mkdir(parents=True)
    (warm / "doc" / "w.txt").write_text("Warm up the tokenizer and the index.", encoding="utf-8")
    script = root / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    return {"root": root, "folder": folder, "old_store": old_store, "old": old, "new": new, "warm": warm,
            "script": script, "embedder": FakeEmbedder}


class Child:
    """A writer process, imported and warmed up, waiting on stdin for its job."""

    def __init__(self, world: dict, n: int) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH")])))
        env["OMP_NUM_THREADS"] = "1"
        warm = world["root"] / f"warm{n}"
        shutil.copytree(world["warm"], warm)
        self.err = world["root"] / f"child{n}.err"
        with open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, str(world["script"]), str(warm)], cwd=ROOT, env=env, text=True,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
            )

    def start(self, folder: Path, store: Path, die_at: str = "none") -> float:
        line = self.proc.stdout.readline()
        assert line == "ready\n", f"child failed to start: {self.err.read_text()[-2000:]}"
        self.proc.stdin.write(f"{folder}\t{store}\t{die_at}\n")
        self.proc.stdin.flush()
        return time.monotonic()

    def wait_line(self) -> str:
        return self.proc.stdout.readline().strip()

    def kill(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        code = self.proc.wait(timeout=60)
        self.proc.stdin.close()
        self.proc.stdout.close()
        return code


def fresh_store(world: dict, name: str) -> Path:
    store = world["root"] / name
    shutil.copytree(world["old_store"], store)
    return store


def check_after_kill(world: dict, store: Path, what: str) -> str:
    got = content(store)
    assert got in (world["old"], world["new"]), f"{what}: the store holds a mix of old and new content"
    outcome = "old" if got == world["old"] else "new"
    before = referenced(store)
    # the lock file, tmp folder or orphan generation left by the killed writer must not block this run
    report = index_paths([world["folder"]], store, embedder=world["embedder"]())
    assert content(store) == world["new"], f"{what}: re-running the index did not give the new content"
    if report.changed:  # only folders of this manifest and of the ones it replaced (kept for readers) remain
        left = set(generation_dirs(store))
        assert left <= referenced(store) | before and referenced(store) <= left, f"{what}: leftovers after a clean run: {left}"
    return outcome


def test_killed_writer_leaves_old_or_new_store(world):
    children = [Child(world, n) for n in range(3)]  # two warm up while a third works
    try:
        run_kills(world, children)
    finally:
        for child in children:
            child.kill()


def run_kills(world: dict, children: list[Child]) -> None:
    rng = random.Random(SEED)
    # calibration: one run to the end gives the new content and tells how long work and commit take
    store = fresh_store(world, "run00")
    t0 = children[0].start(world["folder"], store)
    assert children[0].wait_line() == "commit"
    t_commit = time.monotonic()
    assert children[0].wait_line() == "done"
    work, commit = time.monotonic() - t0, time.monotonic() - t_commit
    children[0].proc.wait(timeout=60)
    assert children[0].kill() == 0
    assert content(store) == world["new"]
    outcomes = {"old": 0, "new": 0}
    for run in range(1, RUNS + 1):
        child = children[run]
        if run + 2 <= RUNS:
            children.append(Child(world, run + 2))
        store = fresh_store(world, f"run{run:02d}")
        in_commit = rng.random() < 0.5
        delay = rng.uniform(0, 1.5 * commit) if in_commit else rng.uniform(0, 1.1 * work)
        child.start(world["folder"], store)
        if in_commit:
            child.wait_line()  # "commit", or "" if it died already
        time.sleep(delay)
        code = child.kill()
        what = f"run {run} ({'in commit' if in_commit else 'anywhere'}, delay {delay:.3f}s, exit {code})"
        outcomes[check_after_kill(world, store, what)] += 1
    assert outcomes["old"] > 0, f"no kill landed before the manifest swap: {outcomes}"


@pytest.mark.parametrize(
    "die_at, expect",
    [("commit", "old"), ("manifest", "old"), ("after-manifest", "new"), ("compact", "new"), ("compact-manifest", "new")],
)
def test_crash_at_fixed_points(world, die_at, expect):
    """The child kills itself at a given point of the commit (or of the compaction after it);
    the next run still completes."""
    store = fresh_store(world, f"fixed-{die_at}")
    child = Child(world, 100 + ["commit", "manifest", "after-manifest", "compact", "compact-manifest"].index(die_at))
    child.start(world["folder"], store, die_at)
    child.proc.wait(timeout=60)
    assert child.kill() == -signal.SIGKILL, child.err.read_text()[-2000:]
    assert content(store) == world[expect]
    leftovers = generation_dirs(store)
    if die_at == "manifest":
        assert "g000002" in leftovers  # renamed into place but never made current
    check_after_kill(world, store, f"crash at {die_at}")


def test_stale_lock_tmp_and_orphan_generation_do_not_block(world):
    store = fresh_store(world, "stale")
    (store / ".lock").write_text("12345\n")  # a lock file nobody holds
    junk = store / ".tmp-g000002-999999"  # a killed writer's temporary folder
    junk.mkdir()
    (junk / MARKER).touch()
    (junk / "index.faiss").write_bytes(b"half written")
    orphan = store / "g000002"  # a generation that was renamed into place but never made current
    orphan.mkdir()
    (orphan / MARKER).touch()
    (orphan / "chunks.sqlite").write_bytes(b"not a database")
    (store / f".{MANIFEST}.tmpabcd").write_text("{")
    user = [store / "g2019", store / ".tmp-g000005-1"]  # folders the store did not make: never deleted
    for folder in user:
        folder.mkdir()
        (folder / "notes.txt").write_text("mine")
    assert content(store) == world["old"]  # the manifest still names g000001: the junk is never read
    report = index_paths([world["folder"]], store, embedder=world["embedder"]())
    assert report.changed and content(store) == world["new"]
    left = generation_dirs(store)
    assert "g000002" not in left and "g000003" in left  # the orphan went; new folders took names no folder had
    assert set(left) == referenced(store) | {"g000001", "g000003"}  # and the replaced manifest's, kept for readers
    assert all((f / "notes.txt").read_text() == "mine" for f in user)
    before = referenced(store)
    index_paths([world["folder"] / "doc100.txt"], store, embedder=world["embedder"](), refit=True)
    assert set(generation_dirs(store)) == referenced(store) | before  # older folders went one commit later
