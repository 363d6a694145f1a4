"""A repeatable hostile run of the store: ``python -m tests.hostile [--kills 30] [--commits 100] [--seed N]``.

Real processes against real stores (fake embedder, so it needs no model):

- two writers: A starts, B starts a random moment later (``--wait``); every document of both
  must be in the store afterwards (counts documents lost);
- readers during commits: a writer commits ``--commits`` generations while this process opens
  the store (checksums verified), searches it and runs ``rag info`` (counts reader failures);
- SIGKILL: a writer is killed at a random moment, every second one after forking a helper that
  outlives it (as OpenVINO's telemetry did), plus ``--openvino-kills`` while the bundled model
  embeds through OpenVINO; the store must then open with the old or the new content (counts
  unreadable or mixed stores) and the next writer must get the lock at once (orphaned locks).

The no-network and markdown-beacon checks of ``tests.privacy_checks`` run last (``--no-privacy``
skips them: the beacon check needs Chromium). Every check in ``CHECKS`` is a function returning
``{name: count}``, added into the summary line. Exit status 1 if any
count > 0. The output of a full run is kept in bench/results/hostile_store.txt.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
sys.path[:0] = [str(TESTS), str(ROOT)]

from conftest import FakeEmbedder  # noqa: E402

from indexing.build import index_paths  # noqa: E402
from indexing.errors import StoreError  # noqa: E402
from indexing.lock import StoreLock, StoreLockedError  # noqa: E402
from indexing.store import Store  # noqa: E402
from rag.cli_commands import store_info  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402

CHILD = TESTS / "writer_child.py"
Counts = dict[str, int]


def child(*argv: str, **kwargs) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(TESTS), str(ROOT), os.environ.get("PYTHONPATH")])),
               OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(CHILD), *argv], cwd=ROOT, env=env, text=True, **kwargs)


def folder_with(root: Path, name: str, n: int, words: int = 60) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        text = " ".join(f"{name}{i}w{j % 23}" for j in range(words))
        (folder / f"{name}{i}.txt").write_text(f"Document {name} {i}. {text}\n", encoding="utf-8")
    return folder


def documents(store: Path) -> dict[str, str]:
    with Store.open(store) as s:
        return {src: sha for sha, _, src in s.documents().values()}


def two_writers(root: Path, rng: random.Random, trials: int = 3) -> Counts:
    lost = 0
    for t in range(trials):
        work = root / f"writers{t}"
        store = work / "store"
        index_paths([folder_with(work, "base", 3)], store, embedder=FakeEmbedder())
        a, b = folder_with(work, "alpha", 40), folder_with(work, "beta", 40)
        first = child("index", str(a), str(store), "120", "", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.5, 3.0))
        second = child("index", str(b), str(store), "120", "", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for proc in (first, second):
            proc.communicate(timeout=300)
        want = {f"{n}/{n}{i}.txt" for n, k in (("base", 3), ("alpha", 40), ("beta", 40)) for i in range(k)}
        lost += len(want - set(documents(store)))
    return {"documents lost": lost}


def readers_during_commits(root: Path, commits: int = 100) -> Counts:
    work = root / "readers"
    docs = folder_with(work, "alpha", 5)
    store = work / "store"
    embedder = FakeEmbedder()
    index_paths([docs], store, embedder=embedder)
    writer = child("commits", str(docs), str(store), str(commits), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    reads = failures = 0
    while writer.poll() is None:
        reads += 1
        try:
            with Store.open(store) as s:
                Retriever(s, embedder).search("document alpha", k=3)
            store_info(str(store))
        except StoreError as exc:
            failures += 1
            print(f"  reader failure: {exc}", file=sys.stderr)
    writer.communicate()
    print(f"  {reads} reads during {commits} commits (writer exit {writer.returncode})", file=sys.stderr)
    return {"reader failures": failures + (writer.returncode != 0)}


def sigkills(root: Path, rng: random.Random, kills: int = 30) -> Counts:
    work = root / "kills"
    docs = folder_with(work, "docs", 60, words=200)
    base = work / "base"
    index_paths([docs], base, embedder=FakeEmbedder(), chunk_tokens=64, overlap=8)
    old = documents(base)
    for i in range(0, 10):
        (docs / f"docs{i}.txt").unlink()
    for i in range(60, 80):
        (docs / f"docs{i}.txt").write_text(f"New document {i}. " + "more words " * 80, encoding="utf-8")
    ref = work / "ref"
    shutil.copytree(base, ref)
    index_paths([docs], ref, embedder=FakeEmbedder())
    new = documents(ref)
    calibrate = work / "calibrate"
    shutil.copytree(base, calibrate)
    proc = child("index", str(docs), str(calibrate), "0", "", stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    proc.stdout.readline()  # "start": imports done
    start = time.monotonic()
    proc.communicate(timeout=120)
    span = time.monotonic() - start  # the indexing itself, commit included: kills land anywhere in it
    bad = orphaned = 0
    outcomes = {"old": 0, "new": 0}
    for k in range(kills):
        store = work / f"kill{k}"
        shutil.copytree(base, store)
        proc = child("index", str(docs), str(store), "0", "fork" if k % 2 else "", stdout=subprocess.PIPE,
                     stderr=subprocess.DEVNULL)
        proc.stdout.readline()  # "start"
        time.sleep(rng.uniform(0.0, 1.2 * span))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=60)
        b, o = check_killed(store, old, new, outcomes, f"kill {k}")
        bad, orphaned = bad + b, orphaned + o
        shutil.rmtree(store, ignore_errors=True)
    print(f"  {kills} kills of a fake-embedder writer: store left old {outcomes['old']}, new {outcomes['new']}", file=sys.stderr)
    return {"unreadable or mixed stores": bad, "orphaned locks": orphaned}


def check_killed(store: Path, old: dict, new: dict, outcomes: dict[str, int], what: str) -> tuple[int, int]:
    """(1 if the store is unreadable or mixed, 1 if its lock is still held) after a kill."""
    bad = orphaned = 0
    try:
        got = documents(store)
        if got in (old, new):
            outcomes["old" if got == old else "new"] += 1
        else:
            bad = 1
            print(f"  {what}: the store holds a mix of old and new documents", file=sys.stderr)
    except StoreError as exc:
        bad = 1
        print(f"  {what}: unreadable: {exc}", file=sys.stderr)
    try:
        with StoreLock(store):
            pass
    except StoreLockedError as exc:
        orphaned = 1
        print(f"  {what}: {exc}", file=sys.stderr)
    return bad, orphaned


def openvino_kills(root: Path, rng: random.Random, kills: int = 3) -> Counts:
    """Kills while the real model embeds through OpenVINO (indexing/embed_openvino.py)."""
    if kills <= 0:
        return {}
    from indexing.embed import DEFAULT_MODEL, load_embedder
    from indexing.files import sha256_file

    work = root / "openvino"
    docs = folder_with(work, "docs", 30, words=120)
    base = work / "base"
    index_paths([docs], base, embedder=load_embedder(DEFAULT_MODEL), chunk_tokens=64, overlap=8)
    old = documents(base)
    for i in range(30, 60):
        (docs / f"docs{i}.txt").write_text(f"New document {i}. " + "further words " * 150, encoding="utf-8")
    new = {f"docs/{p.name}": sha256_file(p) for p in docs.iterdir()}
    bad = orphaned = 0
    outcomes = {"old": 0, "new": 0}
    for k in range(kills):
        store = work / f"kill{k}"
        shutil.copytree(base, store)
        proc = child("openvino", str(docs), str(store), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = proc.stdout.readline()  # "embedding": OpenVINO compiled the model and runs it now
        time.sleep(rng.uniform(0.0, 1.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait(60)
        if line.strip() != "embedding":
            print(f"  openvino kill {k}: the writer ended before embedding ({line!r})", file=sys.stderr)
        b, o = check_killed(store, old, new, outcomes, f"openvino kill {k}")
        bad, orphaned = bad + b, orphaned + o
        shutil.rmtree(store, ignore_errors=True)
    print(f"  {kills} kills while OpenVINO embeds: store left old {outcomes['old']}, new {outcomes['new']}", file=sys.stderr)
    return {"unreadable or mixed stores": bad, "orphaned locks": orphaned}


# Each check takes (work folder, seeded rng, parsed args) and returns counts; the lead appends the
# no-network (outbound connections) and markdown-beacon checks here.
CHECKS: list[Callable[[Path, random.Random, argparse.Namespace], Counts]] = [
    lambda root, rng, args: two_writers(root, rng),
    lambda root, rng, args: readers_during_commits(root, args.commits),
    lambda root, rng, args: sigkills(root, rng, args.kills),
    lambda root, rng, args: openvino_kills(root, rng, args.openvino_kills),
    lambda root, rng, args: privacy(root, args.privacy),
]


def privacy(root: Path, run: bool) -> Counts:
    """Outbound connection attempts of rag index + search + chat start-up, and requests a
    browser makes to a beacon URL quoted from a document."""
    if not run:
        return {}
    from tests.privacy_checks import beacon_requests, outbound_connections

    (root / "net").mkdir()
    (root / "beacon").mkdir()
    repo = Path(__file__).resolve().parents[1]
    return {"outbound connections": outbound_connections(repo, root / "net"), "beacon requests": beacon_requests(root / "beacon")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.hostile", description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=30)
    parser.add_argument("--commits", type=int, default=100)
    parser.add_argument("--openvino-kills", type=int, default=3, help="kills while the real model embeds (0: skip)")
    parser.add_argument("--privacy", action=argparse.BooleanOptionalAction, default=True,
                        help="the no-network and markdown-beacon checks (need Chromium)")
    parser.add_argument("--seed", type=int, default=20261201)
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    counts: Counts = {}
    with tempfile.TemporaryDirectory(prefix="rag-hostile-") as tmp:
        for check in CHECKS:
            t0 = time.monotonic()
            got = check(Path(tmp), rng, args)
            print(f"{', '.join(f'{k} {v}' for k, v in got.items())}  ({time.monotonic() - t0:.0f} s)", file=sys.stderr)
            for key, value in got.items():  # the same count from several checks adds up
                counts[key] = counts.get(key, 0) + value
    print(", ".join(f"{k} {v}" for k, v in counts.items()))
    return 1 if any(counts.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
