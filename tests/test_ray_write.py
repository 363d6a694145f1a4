"""``rag index --ray`` writes its segments on Ray actors (indexing.ray_write), the driver only
commits: never a ``SegmentWriter`` on the driver, several segments giving the same store as one
process, an incremental run with Ray, a writer killed mid-run, a writer that cannot see its folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray[data] is in the test extras: pip install -e '.[test]'")

from ray_fakes import FakeEmbedder, ship_by_value  # noqa: E402
from test_ray_index import QUERIES, SETTINGS, store_files, write_corpus  # noqa: E402

from indexing import ray_write, segment  # noqa: E402
from indexing.build import index_paths  # noqa: E402
from indexing.errors import ClusterError  # noqa: E402
from indexing.ray_cluster import RayOptions  # noqa: E402
from indexing.store import Store  # noqa: E402
from indexing.writer import SegmentSpec, StoreWriter  # noqa: E402
from indexing.keyword import KeywordSettings  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402

ship_by_value(__name__)


def live_chunks(store: Path) -> list[tuple[str, int, int, str]]:
    """Every live chunk as (document path, start, end, text), in document and offset order."""
    with Store.open(store) as s:
        rows = s.chunks_of(sorted(s.documents()))
    return sorted((c.doc_path, c.start, c.end, c.text) for c in rows)


def same_dense_answers(a: Path, b: Path) -> None:
    """Same dense top-10 (hybrid scores use each segment's own BM25 statistics, docs/store-format.md,
    so they match one process only with one segment: tests/test_ray_index.py checks that case)."""
    ra, rb = Retriever.open(a, embedder=FakeEmbedder()), Retriever.open(b, embedder=FakeEmbedder())
    for q in QUERIES:
        ha, hb = ra.search(q, k=10, mode="dense"), rb.search(q, k=10, mode="dense")
        assert [(h.source, h.start) for h in ha] == [(h.source, h.start) for h in hb]
        np.testing.assert_allclose([h.score for h in ha], [h.score for h in hb], atol=1e-6)


def folders(store: Path) -> set[str]:
    return {p.name for p in store.iterdir() if p.is_dir()}


def indexed_then_rewritten(tmp_path: Path, files: int) -> tuple[Path, Path, dict[str, bytes], set[str]]:
    """A store indexed (one process) from ``files`` notes, which are then all rewritten: the
    folder, the store, the store's files and its folders before the next (Ray) run."""
    docs = write_corpus(tmp_path / "docs", files=files)
    store = tmp_path / "store"
    index_paths([docs], store, embedder=FakeEmbedder(), **SETTINGS)
    before, dirs = store_files(store), folders(store)
    for i in range(files):
        (docs / f"note{i:02d}.txt").write_text(f"comet orbit nebula {i} " * 80, encoding="utf-8")
    return docs, store, before, dirs


def test_segments_are_written_on_ray_and_an_incremental_run_matches_one_process(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_write, "SEGMENT_ROWS", 80)  # ~300 chunks: several segments, several actors
    monkeypatch.setattr(ray_write, "SEND_ROWS", 32)
    made_on_driver: list[Path] = []
    real_init = segment.SegmentWriter.__init__

    def spy(self, folder, *args, **kwargs):  # type: ignore[no-untyped-def]
        made_on_driver.append(folder)
        real_init(self, folder, *args, **kwargs)

    monkeypatch.setattr(segment.SegmentWriter, "__init__", spy)  # the driver's class only: actors import their own
    docs = write_corpus(tmp_path / "docs", files=16)
    one = index_paths([docs], tmp_path / "one", embedder=FakeEmbedder(), **SETTINGS)
    assert len(made_on_driver) == 1  # the spy sees a driver-side writer
    dist = index_paths([docs], tmp_path / "ray", embedder=FakeEmbedder(), ray=RayOptions(workers=2), **SETTINGS)
    assert len(made_on_driver) == 1  # ... and the Ray run made none: the actors wrote every segment
    assert (dist.added, dist.skipped, dist.chunks) == (one.added, one.skipped, one.chunks)
    segs = dist.manifest.segments
    assert len(segs) >= 3 and all(s.rows >= 80 for s in segs[:-1]) and sum(s.rows for s in segs) == one.chunks
    assert dist.manifest.basis[0] == segs[0].dir  # the basis went with the first segment
    with Store.open(tmp_path / "one") as sa, Store.open(tmp_path / "ray") as sb:  # same rows in the same order, same basis
        assert sa.chunks(list(range(sa.n))) == sb.chunks(list(range(sb.n)))
        np.testing.assert_allclose(sa.pca.components, sb.pca.components, atol=1e-6)
    same_dense_answers(tmp_path / "one", tmp_path / "ray")
    assert not [p for p in (tmp_path / "ray").iterdir() if p.name.startswith(".tmp")]

    for i in (0, 2, 3, 4, 5, 6):  # changed
        (docs / f"note{i:02d}.txt").write_text(f"quasar tundra comet {i} " * 60, encoding="utf-8")
    (docs / "note01.txt").unlink()  # removed
    (docs / "new.txt").write_text("otter kelp beaver dam " * 40, encoding="utf-8")  # added
    monkeypatch.setattr(ray_write, "SEND_ROWS", 1)  # a run per document, and a writer with one queued is behind:
    monkeypatch.setattr(ray_write, "IN_FLIGHT", 1)  # documents spread over parallel writers (the cluster case)
    monkeypatch.setattr(ray_write, "SEGMENT_ROWS", 10**6)
    one = index_paths([docs], tmp_path / "one", embedder=FakeEmbedder())
    added: list[int] = []
    real_add = StoreWriter.add_segment
    monkeypatch.setattr(StoreWriter, "add_segment", lambda self, entry, *a: (added.append(entry.rows), real_add(self, entry, *a))[1])
    dist = index_paths([docs], tmp_path / "ray", embedder=FakeEmbedder(), ray=RayOptions(workers=2))
    # the documents of one Ray Data batch arrive together: the first writer still has a run queued
    # when the next run comes, so the second of the at most 2 writers (2 CPUs) opens its own segment
    fresh = {f"note{i:02d}.txt" for i in (0, 2, 3, 4, 5, 6)} | {"new.txt"}
    assert len(added) == 2 and sum(added) == sum(Path(c[0]).name in fresh for c in live_chunks(tmp_path / "one"))
    for field in ("added", "updated", "removed", "unchanged", "skipped", "chunks"):
        assert getattr(dist, field) == getattr(one, field), field
    assert sorted(Path(p).name for p in dist.added + dist.removed) == ["new.txt", "note01.txt"] and len(dist.updated) == 6
    assert live_chunks(tmp_path / "one") == live_chunks(tmp_path / "ray")
    same_dense_answers(tmp_path / "one", tmp_path / "ray")
    with Store.open(tmp_path / "ray") as s:
        assert s.manifest.basis[0] == segs[0].dir  # the basis kept (tiny segments with deletions were compacted)


def test_a_killed_segment_writer_fails_the_run_and_leaves_the_store_unchanged(local_ray, tmp_path, monkeypatch):
    monkeypatch.setattr(ray_write, "SEND_ROWS", 16)  # the writer has data in hand when it is killed
    docs, store, before, dirs = indexed_then_rewritten(tmp_path, files=12)
    killed: list[str] = []

    def kill_writers(stage: str, done: int, total: int) -> None:
        if stage == "embedding" and done == 8 and not killed:
            for a in ray.util.list_named_actors(all_namespaces=True):
                if a["name"].startswith(ray_write.ACTOR_PREFIX):
                    ray.kill(ray.get_actor(a["name"], namespace=a["namespace"]))
                    killed.append(a["name"])

    with pytest.raises(ClusterError, match="segment writer on Ray died, the store is unchanged"):
        index_paths([docs], store, embedder=FakeEmbedder(), ray=RayOptions(workers=1), progress=kill_writers)
    assert killed  # a writer was alive, holding a segment, and died mid-run
    assert store_files(store) == before and folders(store) == dirs  # nothing left behind
    with Store.open(store) as s:
        assert s.n > 0


def test_a_writer_that_cannot_see_its_folder_fails_naming_the_shared_file_system(local_ray, tmp_path):
    spec = SegmentSpec(8, "float8", "float8", KeywordSettings(), "flat", None)
    actor = local_ray.remote(num_cpus=0)(ray_write.SegmentActor).remote()
    with pytest.raises(ClusterError, match="cannot see .*gone.* every node mounts at the same path"):
        ray_write._get(local_ray, actor.start.remote(str(tmp_path / "gone"), "g000001", spec, None))
    local_ray.kill(actor)


def test_store_writer_takes_only_its_own_folders_and_one_basis(tmp_path):
    """``StoreWriter.add_segment`` (no Ray needed): a segment must sit in a folder of this commit,
    and a new store's segments must share one basis; nothing is published when refused."""
    from indexing.chunk import ChunkSettings
    from indexing.errors import ConfigError, StoreError
    from indexing.manifest import Segment

    with StoreWriter(tmp_path / "s", "fake/hash-64", 64, ChunkSettings()) as writer:
        name, folder = writer.segment_folder()
        assert folder.is_dir() and folder.name.startswith(".tmp-")  # written aside, renamed at commit
        with pytest.raises(StoreError, match="not a new folder of this commit"):
            writer.add_segment(Segment("g000099", 1, 1, {}, "flat", None, None, 16), ["/x"], None)
        with pytest.raises(ConfigError, match="one basis"):
            writer.add_segment(Segment(name, 1, 1, {}, "flat", None, None, 16), ["/x"], None)
        writer.abort()
    assert not folder.exists() and not (tmp_path / "s" / "manifest.json").exists()


def worker_cwd() -> str:
    """A Ray worker's working directory (run as a remote function)."""
    import os

    return os.getcwd()


def test_a_relative_store_path_reaches_writers_in_another_working_directory(local_ray, tmp_path, monkeypatch):
    """A Ray worker keeps the working directory its node started in (on a cluster: where `ray start`
    ran), not the driver's: the segment folder of a relative ``--store`` sent as it is made every
    writer fail with "cannot see ...", even on a shared file system."""
    write_corpus(tmp_path / "docs", files=4)
    monkeypatch.chdir(tmp_path)  # the session's Ray started in another folder
    assert local_ray.get(local_ray.remote(num_cpus=0)(worker_cwd).remote()) != str(tmp_path)
    report = index_paths(["docs"], "store", embedder=FakeEmbedder(), ray=RayOptions(workers=1), **SETTINGS)
    assert len(report.added) == 4 and report.chunks > 0
    with Store.open(tmp_path / "store") as s:
        assert s.n == report.chunks and len(s.documents()) == 4
    assert not [p for p in (tmp_path / "store").iterdir() if p.name.startswith(".tmp")]


def writer_actors() -> list[str]:
    return [a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["name"].startswith(ray_write.ACTOR_PREFIX)]


def test_ctrl_c_mid_run_kills_the_writers_removes_their_folders_and_frees_the_lock(local_ray, tmp_path, monkeypatch):
    """KeyboardInterrupt while a writer holds a segment: the store is as before (no folder left),
    no writer actor lives on, the lock is free, and the cluster's CPUs are free again (the
    embedding pipeline's actors stopped) even while the caller keeps the exception (a notebook)."""
    import time

    from indexing.lock import StoreLock

    monkeypatch.setattr(ray_write, "SEND_ROWS", 16)  # an incremental run routes at once: a segment is open
    docs, store, before, dirs = indexed_then_rewritten(tmp_path, files=10)
    seen: list[set[str]] = []

    def interrupt(stage: str, done: int, total: int) -> None:
        if stage == "embedding" and done == 6:
            seen.append(folders(store) - dirs)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as caught:
        index_paths([docs], store, embedder=FakeEmbedder(), ray=RayOptions(workers=1), progress=interrupt)
    assert seen and seen[0]  # a segment folder was being written when Ctrl-C came
    assert store_files(store) == before and folders(store) == dirs
    assert writer_actors() == []
    StoreLock(store).acquire().release()  # free: this would raise StoreLockedError
    total, deadline = local_ray.cluster_resources()["CPU"], time.monotonic() + 20
    while local_ray.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.2)
    assert local_ray.available_resources().get("CPU", 0) == total, caught.value
