"""``rag index --ray`` on a real local Ray (2 CPUs, started once for the module): the same store as
one process, a killed embedding actor retried, a failed run leaving the store byte-identical, and
bad addresses failing with one line. The fake embedder is shipped to the actors by value."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray[data] is in the test extras: pip install -e '.[test]'")

from ray_fakes import FakeEmbedder, ship_by_value  # noqa: E402

from indexing.build import index_paths  # noqa: E402
from indexing.errors import ClusterError  # noqa: E402
from indexing.ray_cluster import RayOptions  # noqa: E402
from indexing.store import Store  # noqa: E402
from rag.cli import main  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402

WORDS = ("zebra savanna stripes volcano basalt magma saxophone reed brass glacier fjord iceberg "
         "otter kelp beaver dam heron marsh lichen tundra comet orbit nebula quasar").split()
QUERIES = ["zebra stripes on the savanna", "volcano magma basalt", "glacier fjord iceberg", "comet orbit nebula",
           "otter kelp", "reed brass saxophone", "heron marsh lichen", "quasar tundra beaver"]
SETTINGS = {"chunk_tokens": 32, "overlap": 4}


ship_by_value(__name__)  # Ray workers cannot import test modules


def write_corpus(folder: Path, files: int = 30, seed: int = 0) -> Path:
    """``files`` seeded word-salad files (~600 chunks of 32 tokens) plus an empty and a broken PDF."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(files):
        words = rng.choice(WORDS, size=int(rng.integers(40, 900)))
        (folder / f"note{i:02d}.txt").write_text(" ".join(words) + ".\n", encoding="utf-8")
    (folder / "empty.txt").write_text("   \n", encoding="utf-8")
    (folder / "broken.pdf").write_bytes(b"%PDF-1.4 not really a pdf")
    return folder


def store_files(store: Path) -> dict[str, bytes]:
    """Every file of a store (manifest and generations) by relative path, lock file aside."""
    return {str(p.relative_to(store)): p.read_bytes() for p in sorted(store.rglob("*")) if p.is_file() and p.name != ".lock"}


def assert_same_store(a: Path, b: Path) -> None:
    """Same chunks, same PCA basis, same top-10 for every query."""
    with Store.open(a) as sa, Store.open(b) as sb:
        assert sa.n == sb.n > 256  # more than one embedding batch
        assert sa.chunks(list(range(sa.n))) == sb.chunks(list(range(sb.n)))
        np.testing.assert_allclose(sa.pca.components, sb.pca.components, atol=1e-6)
        np.testing.assert_allclose(sa.pca.energy, sb.pca.energy, atol=1e-6)
    ra, rb = Retriever.open(a, embedder=FakeEmbedder()), Retriever.open(b, embedder=FakeEmbedder())
    for q in QUERIES:
        for mode in ("dense", "hybrid"):
            ha, hb = ra.search(q, k=10, mode=mode), rb.search(q, k=10, mode=mode)
            assert [(h.source, h.start) for h in ha] == [(h.source, h.start) for h in hb]
            np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-6)


def test_ray_builds_the_same_store_as_one_process(local_ray, tmp_path):
    docs = write_corpus(tmp_path / "docs")
    one = index_paths([docs], tmp_path / "one", embedder=FakeEmbedder(), **SETTINGS)
    seen: list[tuple[str, int, int]] = []
    dist = index_paths([docs], tmp_path / "ray", embedder=FakeEmbedder(), ray=RayOptions(workers=2),
                       progress=lambda stage, done, total: seen.append((stage, done, total)), **SETTINGS)
    assert dist.skipped == one.skipped and len(one.skipped) == 2  # same files, same reasons, same order
    assert (dist.added, dist.chunks) == (one.added, one.chunks)
    assert dist.embed_backend == "ray:FakeEmbedder"
    assert [d for s, d, _ in seen if s == "embedding"] == list(range(1, 33))  # every file, in order
    assert_same_store(tmp_path / "one", tmp_path / "ray")


class DiesOnce(FakeEmbedder):
    """Kills its own worker process (SIGKILL) on its first call anywhere; the marker file says it did."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().embed_documents(texts)
        os.kill(os.getpid(), signal.SIGKILL)


class AlwaysDies(FakeEmbedder):
    def embed_documents(self, texts):  # type: ignore[no-untyped-def]
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_killed_embedding_actor_is_restarted_and_the_store_is_the_same(local_ray, tmp_path):
    docs = write_corpus(tmp_path / "docs", files=12)
    index_paths([docs], tmp_path / "one", embedder=FakeEmbedder(), **SETTINGS)
    marker = tmp_path / "killed"
    index_paths([docs], tmp_path / "ray", embedder=FakeEmbedder(), **SETTINGS,
                ray=RayOptions(workers=1, embedder_factory=lambda: DiesOnce(str(marker))))
    assert marker.exists()  # an actor really died mid-run
    assert_same_store(tmp_path / "one", tmp_path / "ray")


def test_a_run_whose_actors_keep_dying_fails_and_leaves_the_store_unchanged(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr("indexing.ray_index.RETRIES", 1)  # the same path as 3 retries, faster
    docs = write_corpus(tmp_path / "docs", files=12)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=FakeEmbedder(), **SETTINGS)
    before = store_files(store)
    (docs / "new.txt").write_text("comet orbit nebula " * 50, encoding="utf-8")
    (docs / "note00.txt").write_text("quasar tundra " * 60, encoding="utf-8")
    with pytest.raises(ClusterError, match="store is unchanged"):
        index_paths([docs], store, embedder=FakeEmbedder(), ray=RayOptions(workers=1, embedder_factory=AlwaysDies))
    assert store_files(store) == before


def test_unreachable_cluster_is_one_line_and_exit_1(tmp_path, capsys):
    docs = write_corpus(tmp_path / "docs", files=2)
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    code = main(["index", str(docs), "--store", str(tmp_path / "s"), "--ray", f"127.0.0.1:{port}"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: cannot reach the Ray cluster at 127.0.0.1:{port}" in err and "ray start --head" in err
    assert "Traceback" not in err and not (tmp_path / "s" / "manifest.json").exists()
    assert main(["index", str(docs), "--store", str(tmp_path / "s"), "--ray", "no-port-here"]) == 1
    assert "expected host:port" in capsys.readouterr().err
    assert main(["index", str(docs), "--store", str(tmp_path / "s"), "--workers", "2"]) == 1
    assert "--workers applies to Ray runs" in capsys.readouterr().err



def descendants(pid: int) -> set[int]:
    """Every process below ``pid`` (from /proc's parent links)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = [c for c, pp in parents.items() if pp == p and c not in found]
        found.update(kids)
        todo += kids
    return found


def listening_addresses(pids: set[int]) -> list[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of TCP sockets in LISTEN state owned by ``pids``."""
    inodes = set()
    for pid in pids:
        try:
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            cols = line.split()
            if cols[3] == "0A" and cols[9] in inodes:  # 0A: LISTEN
                found.append(cols[1].rsplit(":", 1)[0])
    return found


def test_the_local_ray_listens_on_loopback_only(local_ray):
    """Ray maps 127.0.0.1 to the machine's LAN address unless told otherwise (indexing.ray_cluster)."""
    assert local_ray.util.get_node_ip_address() == "127.0.0.1"
    assert local_ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
    addresses = listening_addresses(descendants(os.getpid()))  # GCS, raylet, agents, workers
    loopback = {"0100007F", "00000000000000000000000001000000", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::1, ::ffff:127.0.0.1
    assert len(addresses) >= 3 and set(addresses) <= loopback, addresses


class CountsActors(FakeEmbedder):
    """Leaves a file named after its process in ``folder``: one per embedding actor built."""

    def __init__(self, folder: str) -> None:
        os.close(os.open(os.path.join(folder, f"actor-{os.getpid()}"), os.O_CREAT | os.O_WRONLY))


def test_a_small_run_starts_no_more_embedding_actors_than_it_has_inputs(local_ray, tmp_path):
    """Each embedding actor loads the model. A run of a few files is one load task, one input of
    the embedding, which one actor embeds: the pool was sized to --workers (default: one per CPU,
    up to 64), so a 1-file incremental run on a big node loaded the model 64 times for nothing."""
    import functools

    docs = write_corpus(tmp_path / "docs", files=4)  # 6 files with the empty one and the broken PDF: one task
    marks = tmp_path / "actors"
    marks.mkdir()
    one = index_paths([docs], tmp_path / "one", embedder=FakeEmbedder(), **SETTINGS)
    dist = index_paths([docs], tmp_path / "ray", embedder=FakeEmbedder(), **SETTINGS,
                       ray=RayOptions(workers=2, embedder_factory=functools.partial(CountsActors, str(marks))))
    assert len(list(marks.iterdir())) == 1
    assert (dist.added, dist.skipped, dist.chunks) == (one.added, one.skipped, one.chunks)
