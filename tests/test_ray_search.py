"""Sharded search on a real local Ray (2 CPUs): a store's segments spread over actors give exactly
the single-process results; a killed shard actor is replaced and the query retried, or the query
fails with a clear error, or (only when asked) answers from the shards that are left."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="ray[data] is in the test extras: pip install -e '.[test]'")

from ray_fakes import FakeEmbedder, ship_by_value  # noqa: E402

from indexing.build import index_paths  # noqa: E402
from indexing.errors import ClusterError  # noqa: E402
from indexing.ray_cluster import RayOptions  # noqa: E402
from indexing.ray_search import (ShardedSearch, pack_candidates, pack_query, shard_threads, split_segments,  # noqa: E402
                                  unpack_candidates, unpack_query)
from indexing.search import candidates, search  # noqa: E402
from rag.retrieve import Retriever  # noqa: E402

ship_by_value(__name__)

WORDS = ("zebra savanna stripes volcano basalt magma saxophone reed brass glacier fjord iceberg "
         "otter kelp beaver dam heron marsh lichen tundra comet orbit nebula quasar").split()
QUERIES = ["zebra stripes on the savanna", "volcano magma basalt", "glacier fjord iceberg", "comet orbit nebula",
           "otter kelp", "reed brass saxophone", "heron marsh lichen", "quasar tundra beaver"]




@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store of 4 segments (four incremental runs; the first holds most chunks, so no refit
    compaction merges them), one file of the first run deleted."""
    root = tmp_path_factory.mktemp("sharded")
    docs, path = root / "docs", root / "store"
    docs.mkdir()
    rng = np.random.default_rng(3)
    for run in range(4):
        for i in range(24 if run == 0 else 3):
            (docs / f"r{run}-{i}.txt").write_text(" ".join(rng.choice(WORDS, size=int(rng.integers(40, 400)))), encoding="utf-8")
        if run == 3:
            (docs / "r0-0.txt").unlink()
        index_paths([docs], path, embedder=FakeEmbedder(), chunk_tokens=32, overlap=4)
    return path


def test_segments_split_into_balanced_shards():
    assert split_segments([10, 1, 1, 8], 2) == [[0], [1, 2, 3]]
    assert split_segments([5, 5], 4) == [[0], [1]]  # never an empty shard


def test_shard_messages_carry_queries_and_candidates_exactly(store):
    single = Retriever.open(store, embedder=FakeEmbedder())
    xq = FakeEmbedder().embed_queries(QUERIES)  # (8, d)
    got, c = unpack_query(pack_query(xq.astype(np.float64), 37))
    assert c == 37 and got.dtype == np.float32 and np.array_equal(got, xq.astype(np.float32))
    parts = candidates(single.store, xq, 10_000, [0, 2])  # more than the shard holds: -1 / -inf padding travels too
    back = unpack_candidates(pack_candidates(*parts))
    assert (parts[1] < 0).any()
    for a, b in zip(parts, back):
        assert a.dtype == b.dtype and np.array_equal(a, b)


def test_each_shard_scans_with_its_share_of_the_cores(local_ray, store):
    assert [shard_threads(2, 2), shard_threads(2, 1), shard_threads(64, 2), shard_threads(1, 4)] == [1, 2, 32, 1]
    single = Retriever.open(store, embedder=FakeEmbedder())
    sharded = ShardedSearch(single.store, RayOptions(workers=1))  # one shard: every core (2 shards: 1 each, below)
    try:
        assert local_ray.get([a.threads.remote() for a in sharded.actors]) == [int(local_ray.cluster_resources()["CPU"])]
    finally:
        sharded.close()


def test_sharded_search_equals_one_process(local_ray, store):
    single = Retriever.open(store, embedder=FakeEmbedder())
    assert len(single.store.segments) >= 3 and single.store.manifest.deleted > 0
    sharded = Retriever.open(store, embedder=FakeEmbedder(), ray=RayOptions(workers=2))
    try:
        assert len(sharded.sharded.groups) == 2
        cpus = int(local_ray.cluster_resources()["CPU"])
        assert local_ray.get([a.threads.remote() for a in sharded.sharded.actors]) == [shard_threads(cpus, 2)] * 2
        xq = FakeEmbedder().embed_queries(QUERIES)  # (8, d)
        for k, oversample in ((10, 16), (3, 2), (10_000, 1)):
            D, I = search(single.store, xq, k, oversample)
            Ds, Is = sharded.search_vectors(xq, k, oversample)
            np.testing.assert_array_equal(Is, I)
            np.testing.assert_allclose(Ds, D, rtol=1e-6)
        for q in QUERIES:
            for mode in ("dense", "hybrid"):
                assert [(h.row, round(h.score, 5)) for h in sharded.search(q, k=10, mode=mode)] == \
                       [(h.row, round(h.score, 5)) for h in single.search(q, k=10, mode=mode)]
    finally:
        sharded.close()


def test_a_killed_shard_is_replaced_and_the_query_retried(local_ray, store, capfd):
    """... quietly: Ray's driver printed the raylet's messages about the dead worker and the retried
    task (tracebacks among them) to stdout, breaking `rag search --ray --json` output."""
    import time

    single = Retriever.open(store, embedder=FakeEmbedder())
    xq = FakeEmbedder().embed_queries(QUERIES)
    want = search(single.store, xq, 10, 16)
    sharded = ShardedSearch(single.store, RayOptions(workers=2))
    try:
        capfd.readouterr()
        os.kill(sharded.pids[0], signal.SIGKILL)
        got = sharded.search(xq, 10, 16)
        np.testing.assert_array_equal(got[1], want[1])
        assert sharded.last_missing == []
        time.sleep(1.5)  # the messages arrive on a background thread of the driver
        out, err = capfd.readouterr()
        assert "raylet" not in out and "Traceback" not in out + err, out + err
    finally:
        sharded.close()


def test_without_retries_a_killed_shard_fails_clearly_or_answers_partially_when_asked(local_ray, store):
    single = Retriever.open(store, embedder=FakeEmbedder())
    xq = FakeEmbedder().embed_queries(QUERIES)
    sharded = ShardedSearch(single.store, RayOptions(workers=2), retries=0)
    try:
        os.kill(sharded.pids[0], signal.SIGKILL)
        with pytest.raises(ClusterError, match="no partial answer was given"):
            sharded.search(xq, 10, 16)
        sharded.allow_partial = True  # what Retriever.open(..., allow_partial=True) sets
        D, I = sharded.search(xq, 10, 16)
        assert sharded.last_missing == sharded.groups[0] and (I >= 0).sum() == I.size
        seg = np.searchsorted(single.store.offsets, I.ravel(), side="right") - 1
        assert not np.isin(seg, sharded.groups[0]).any()  # nothing from the dead shard's segments
    finally:
        sharded.close()


def test_rag_search_and_ask_with_ray_answer_as_without(local_ray, store, monkeypatch, capsys):
    import json

    import rag.retrieve
    from rag.cli import main

    monkeypatch.setattr(rag.retrieve, "load_embedder", lambda model, *a, **k: FakeEmbedder())
    out = {}
    for flags in ([], ["--ray", "--workers", "2"]):
        assert main(["search", "glacier fjord iceberg", "--store", str(store), "--json", "-k", "10", *flags]) == 0
        out[bool(flags)] = [(h["row"], round(h["score"], 5)) for h in json.loads(capsys.readouterr().out)]
        assert main(["ask", "glacier fjord iceberg", "--store", str(store), "--llm", "extractive", "--json", *flags]) == 0
        answer = json.loads(capsys.readouterr().out)
        out[("ask", bool(flags))] = (answer["answer"], [s["source"] for s in answer["sources"]])
    assert out[True] == out[False] and len(out[False]) == 10
    assert out[("ask", True)] == out[("ask", False)] and out[("ask", False)][1]


def test_sharded_search_on_a_store_with_no_segment_finds_nothing(local_ray, tmp_path):
    """Every document deleted (the automatic compaction then leaves no segment): one process finds
    nothing, the sharded search (no shard to start) used to fail with numpy's ValueError."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("zebra savanna stripes " * 30, encoding="utf-8")
    index_paths([docs], tmp_path / "s", embedder=FakeEmbedder())
    (docs / "a.txt").unlink()
    index_paths([docs], tmp_path / "s", embedder=FakeEmbedder())
    single = Retriever.open(tmp_path / "s", embedder=FakeEmbedder())
    sharded = Retriever.open(tmp_path / "s", embedder=FakeEmbedder(), ray=RayOptions(workers=2))
    try:
        assert sharded.store.manifest.segments == () and sharded.sharded.groups == []
        xq = FakeEmbedder().embed_queries(QUERIES[:2])  # (2, d)
        D, I = sharded.search_vectors(xq, 5)
        np.testing.assert_array_equal(I, single.search_vectors(xq, 5)[1])
        assert I.tolist() == [[-1], [-1]] and sharded.sharded.last_missing == []
        for mode in ("dense", "hybrid"):
            assert sharded.search("zebra stripes", k=5, mode=mode) == single.search("zebra stripes", k=5, mode=mode) == []
    finally:
        sharded.close()


def test_sharded_search_opens_a_store_given_by_a_relative_path(local_ray, store, monkeypatch):
    """A Ray worker keeps the working directory its node started in (on a cluster: where `ray start`
    ran), not the driver's: a relative store path sent as it is made every shard fail to start."""
    monkeypatch.chdir(store.parent)  # the session's Ray started in another folder
    assert local_ray.get(local_ray.remote(num_cpus=0)(worker_cwd).remote()) != str(store.parent)
    single = Retriever.open(store, embedder=FakeEmbedder())
    sharded = Retriever.open(store.name, embedder=FakeEmbedder(), ray=RayOptions(workers=2))
    try:
        for q in QUERIES[:3]:
            assert [h.row for h in sharded.search(q, k=10, mode="dense")] == [h.row for h in single.search(q, k=10, mode="dense")]
    finally:
        sharded.close()


def worker_cwd() -> str:
    """A Ray worker's working directory (run as a remote function)."""
    return os.getcwd()
