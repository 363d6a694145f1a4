"""rag.retrieve: float8 first stage + full-vector rerank, against brute force on structured vectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from indexing.chunk import Chunk, ChunkSettings
from indexing.errors import ConfigError, StoreMismatchError
from indexing.first_stage import reduced_vectors
from indexing.store import Store
from indexing.writer import CompressionSettings, DocumentRecord, StoreWriter
from indexing.search import exact as exact_search
from rag.retrieve import Retriever

K = 10
DOCS, PER_DOC = 40, 100  # 4000 rows, as in structured_vectors


def chunks_for(j: int) -> list[Chunk]:
    return [Chunk(f"/docs/d{j}.txt", f"d{j}.txt", f"Doc {j}", None, 0, 9, f"row {j * PER_DOC + i}") for i in range(PER_DOC)]


def build_store(path: Path, xb: np.ndarray, **compression) -> Store:
    """A store holding xb (n, d), one document per PER_DOC consecutive rows."""
    writer = StoreWriter(path, model="fake/x", dim=xb.shape[1], chunker=ChunkSettings(),
                              compression=CompressionSettings(pca_dims=32, **compression))
    with writer:
        for j, r0 in enumerate(range(0, len(xb), PER_DOC)):
            part = xb[r0 : r0 + PER_DOC]  # (<= PER_DOC, d)
            doc = DocumentRecord(f"/docs/d{j}.txt", f"d{j}.txt", f"Doc {j}", f"sha{j}")
            writer.add(doc, chunks_for(j)[: len(part)], part)
        writer.commit()
    return Store.open(path)


@pytest.fixture(scope="module", params=["flat", "ivf"])
def store(request, tmp_path_factory, structured_vectors):
    xb, _ = structured_vectors
    s = build_store(tmp_path_factory.mktemp(f"store-{request.param}"), xb, ann=request.param)
    yield s
    s.close()


@pytest.fixture(scope="module")
def flat_store(tmp_path_factory, structured_vectors):
    xb, _ = structured_vectors
    s = build_store(tmp_path_factory.mktemp("flat"), xb)
    yield s
    s.close()


def top_k(S: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """S (nq, n) scores -> D, I (nq, k), best first."""
    I = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, I, 1), I


def recall_at(I: np.ndarray, Iref: np.ndarray, k: int = K) -> float:
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(I, Iref)]))


def test_store_holds_what_was_written(store, structured_vectors):
    xb, _ = structured_vectors
    assert store.n == len(xb) and store.dim == 128 and store.pca.dims == 32
    assert store.manifest.bytes_per_vector == (32 if store.manifest.compression.ann == "flat" else 40)
    full = store.decode_full(np.arange(store.n))  # (n, d)
    np.testing.assert_array_equal(full, store.full_codec.decode(store.full_codec.encode(xb)))
    rows = store.chunks([3999, 0, 150])
    assert [(c.row, c.text, c.source) for c in rows] == [
        (3999, "row 3999", "d39.txt"), (0, "row 0", "d0.txt"), (150, "row 150", "d1.txt"),
    ]


@pytest.mark.parametrize("oversample", [1, 4, 8])
def test_rerank_equals_brute_force_over_candidates(store, structured_vectors, oversample):
    _, xq = structured_vectors
    D, I = Retriever(store).search_vectors(xq, K, oversample)
    _, cand = store.segments[0].index.search(store.pca.transform(xq), K * oversample)  # (nq, c) same first stage
    for q in range(len(xq)):
        rows = cand[q][cand[q] >= 0]
        Dref, Iref = top_k((store.decode_full(rows) @ xq[q])[None, :], K)
        np.testing.assert_allclose(D[q], Dref[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(I[q], rows[Iref[0]])


def test_rerank_over_all_rows_equals_exact_search(store, structured_vectors):
    _, xq = structured_vectors
    oversample = -(-store.n // K)  # K * oversample >= n: every row is a candidate
    D, I = Retriever(store).search_vectors(xq, K, oversample)
    if store.manifest.compression.ann == "ivf":
        assert np.all(I >= 0)  # IVF probes a subset: only check the scores of what it found
        full = store.decode_full(I.ravel()).reshape(*I.shape, -1)  # (nq, K, d)
        np.testing.assert_allclose(D, np.einsum("qkd,qd->qk", full, xq), rtol=1e-5, atol=1e-6)
        return
    De, Ie = exact_search(store, xq, K)
    np.testing.assert_allclose(D, De, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(I, Ie)


def test_exact_mode_is_brute_force_over_stored_vectors(store, structured_vectors):
    _, xq = structured_vectors
    D, I = Retriever(store).search_vectors(xq, K, exact=True)
    Dref, Iref = top_k(xq @ store.decode_full(np.arange(store.n)).T, K)
    np.testing.assert_allclose(D, Dref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(I, Iref)
    De, Ie = exact_search(store, xq, K, block=333)  # blocked merge gives the same answer
    np.testing.assert_allclose(De, Dref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(Ie, Iref)


def test_pca_float8_rerank_recall(flat_store, structured_vectors):
    xb, xq = structured_vectors
    _, Iref = top_k(xq @ xb.T, K)  # exact float32 over the original vectors
    r = Retriever(flat_store)
    _, I_rerank = r.search_vectors(xq, K, oversample=8)
    _, I_first = r.search_vectors(xq, K, rerank=False)
    assert recall_at(I_rerank, Iref) >= 0.95
    assert recall_at(I_rerank, Iref) > recall_at(I_first, Iref)


def test_no_rerank_returns_first_stage_scores(flat_store, structured_vectors):
    _, xq = structured_vectors
    D, I = Retriever(flat_store).search_vectors(xq, K, rerank=False)
    xd = reduced_vectors(flat_store.segments[0].index)  # (n, p) float8-decoded reduced vectors
    Dref, Iref = top_k(flat_store.pca.transform(xq) @ xd.T, K)
    np.testing.assert_allclose(D, Dref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(I, Iref)


def test_more_results_asked_than_rows(tmp_path, structured_vectors):
    xb, xq = structured_vectors
    with build_store(tmp_path / "tiny", xb[:PER_DOC]) as store:
        for kwargs in ({}, {"exact": True}):
            D, I = Retriever(store).search_vectors(xq[:3], PER_DOC + 5, **kwargs)
            assert np.all(I[:, :PER_DOC] >= 0) and np.all(I[:, PER_DOC:] == -1)
            assert np.all(np.isinf(D[:, PER_DOC:]))
            assert sorted(I[0, :PER_DOC].tolist()) == list(range(PER_DOC))


@pytest.mark.parametrize("k, oversample", [(0, 8), (5, 0)])
def test_bad_k_or_oversample(flat_store, structured_vectors, k, oversample):
    _, xq = structured_vectors
    with pytest.raises(ConfigError, match=rf"k={k} and oversample={oversample} must both be >= 1"):
        Retriever(flat_store).search_vectors(xq, k, oversample)


def test_retriever_rejects_embedder_of_another_model(flat_store, fake_embedder):
    with pytest.raises(StoreMismatchError, match=r"'fake/x' \(dim 128\).*'fake/hash-64' \(dim 64\)"):
        Retriever(flat_store, embedder=fake_embedder)


def test_incremental_writer_writes_a_segment_and_tombstones_only(tmp_path, structured_vectors):
    """Keeping 3 of 4 documents and adding one: the first segment's files are not rewritten;
    the commit writes the new segment and a tombstone file, and deleted rows never come back."""
    xb, _ = structured_vectors
    base = build_store(tmp_path / "s", xb[: 4 * PER_DOC])
    first = {f.name: f.stat().st_mtime_ns for f in (tmp_path / "s/g000001").iterdir()}
    kept = {"/docs/d0.txt", "/docs/d1.txt", "/docs/d3.txt"}
    with StoreWriter(tmp_path / "s", "fake/x", 128, ChunkSettings(), CompressionSettings(pca_dims=32), base=base) as w:
        w.keep(kept)
        w.add(DocumentRecord("/docs/d9.txt", "d9.txt", "Doc 9", "sha9"), chunks_for(9), xb[-PER_DOC:])
        manifest = w.commit()
    base.close()
    assert manifest.generation == "g000002" and (manifest.chunks, manifest.documents, manifest.rows) == (4 * PER_DOC, 4, 5 * PER_DOC)
    assert [s.dir for s in manifest.segments] == ["g000001", "g000002"] and manifest.segments[0].deleted.count == PER_DOC
    assert {f.name: f.stat().st_mtime_ns for f in (tmp_path / "s/g000001").iterdir()} == first  # untouched
    assert sorted(f.name for f in (tmp_path / "s/g000002").iterdir()) == [
        ".rag-generation", "chunks.sqlite", "deleted-g000001.npy", "full.e4m3", "index.faiss"]
    with Store.open(tmp_path / "s") as new:
        assert set(new.documents()) == kept | {"/docs/d9.txt"}
        deleted = np.arange(2 * PER_DOC, 3 * PER_DOC)
        assert not new.is_live(deleted).any() and new.is_live(np.arange(PER_DOC)).all()
        D, I = Retriever(new).search_vectors(xb[2 * PER_DOC : 3 * PER_DOC], 3, oversample=new.n)
        assert not np.isin(I, deleted).any()  # the deleted document's own vectors do not find it
        D, I = Retriever(new).search_vectors(xb[-PER_DOC:][:5], 1, oversample=new.n)
        np.testing.assert_array_equal(I[:, 0], 4 * PER_DOC + np.arange(5))  # new rows find themselves


def incremental(path: Path, base: Store, keep: set[str], xb_new: np.ndarray) -> Store:
    """Next generation of ``base``: keep some documents, add xb_new as document d99 (if any)."""
    with StoreWriter(path, "fake/x", 128, ChunkSettings(), CompressionSettings(pca_dims=32), base=base) as w:
        w.keep(keep)
        if len(xb_new):
            chunks = [Chunk("/docs/d99.txt", "d99.txt", "Doc 99", None, 0, 1, f"new {i}") for i in range(len(xb_new))]
            w.add(DocumentRecord("/docs/d99.txt", "d99.txt", "Doc 99", "sha99"), chunks, xb_new)
        w.commit()
    base.close()
    return Store.open(path)


def test_search_on_an_emptied_store_finds_nothing(tmp_path, structured_vectors):
    xb, xq = structured_vectors
    store = incremental(tmp_path / "s", build_store(tmp_path / "s", xb[:PER_DOC]), set(), xb[:0])
    assert store.n == 0  # every document was removed: a valid, empty store
    for kwargs in ({"exact": True}, {"rerank": False}, {}):
        D, I = Retriever(store).search_vectors(xq[:2], K, **kwargs)
        assert np.all(I == -1), kwargs


def test_vectors_added_later_keep_float8_precision(tmp_path, structured_vectors):
    """A store started from one small document, then grown: later vectors must not be clipped."""
    xb, xq = structured_vectors
    first = 1  # e.g. one short file indexed (or uploaded) before the rest of the folder
    store = build_store(tmp_path / "s", xb[:first])
    store = incremental(tmp_path / "s", store, {"/docs/d0.txt"}, xb[first:])
    assert store.n == len(xb)
    err = np.linalg.norm(store.decode_full(np.arange(store.n)) - xb, axis=1)  # (n,), unit vectors
    assert err.max() <= 1 / 16  # what float8 guarantees for a vector written in one go
    _, Iref = top_k(xq @ xb.T, K)
    _, I = Retriever(store).search_vectors(xq, K, exact=True)
    assert recall_at(I, Iref) >= 0.95


def test_ivf_is_sized_from_the_whole_corpus(tmp_path, structured_vectors):
    """ann="ivf" streams flat and builds the IVF at commit, so nlist follows the corpus size."""
    from indexing.first_stage import default_nlist

    xb, xq = structured_vectors
    store = build_store(tmp_path / "ivf", xb, ann="ivf", fit_sample=500)
    seg = store.manifest.segments[0]
    assert seg.ann == "ivf" and seg.nlist == min(default_nlist(len(xb)), len(xb) // 39)
    D, I = Retriever(store).search_vectors(xq, 10, oversample=16)
    assert (I >= 0).all()


def test_float16_full_vectors_rerank_exactly_and_survive_increments(tmp_path, structured_vectors):
    """full_dtype="float16": rerank scores are float16 inner products; increments keep the dtype."""
    xb, xq = structured_vectors
    store = build_store(tmp_path / "f16", xb[:2000], full_dtype="float16")
    assert store.manifest.compression.full_dtype == "float16"
    assert store.manifest.compression.full_bytes_per_vector == 2 * xb.shape[1]
    np.testing.assert_array_equal(store.decode_full(np.arange(5)), xb[:5].astype(np.float16).astype(np.float32))
    D, I = Retriever(store).search_vectors(xq, 10, oversample=len(xb))
    expected = np.sort(xq @ xb[:2000].astype(np.float16).astype(np.float32).T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(D, expected, rtol=1e-5, atol=1e-6)
    writer = StoreWriter(tmp_path / "f16", model="fake/x", dim=xb.shape[1], chunker=ChunkSettings(),
                              compression=CompressionSettings(pca_dims=32), base=store)
    with writer:
        writer.keep(set(store.documents()))
        writer.add(DocumentRecord("/docs/new.txt", "new.txt", "New", "shanew"), chunks_for(999)[:1], xb[2000:2001])
        writer.commit()
    grown = Store.open(tmp_path / "f16")
    assert grown.full_dtype == "float16" and grown.n == 2001
    np.testing.assert_array_equal(grown.decode_full(np.array([0, 2000])), xb[[0, 2000]].astype(np.float16).astype(np.float32))


def test_basis_fitted_on_a_tiny_store_is_refitted_as_it_grows(tmp_path, structured_vectors):
    """A store started from 100 vectors, then grown to 4000: the PCA is refitted from the stored
    full vectors (no re-embedding), so recall is as good as a store built in one go."""
    xb, xq = structured_vectors
    path = tmp_path / "grown"
    small = build_store(path, xb[:PER_DOC])
    assert small.manifest.compression.pca_fit_vectors == PER_DOC
    writer = StoreWriter(path, model="fake/x", dim=xb.shape[1], chunker=ChunkSettings(),
                              compression=CompressionSettings(pca_dims=32), base=small)
    with writer:
        writer.keep(set(small.documents()))
        for j, r0 in enumerate(range(PER_DOC, len(xb), PER_DOC), start=1):
            part = xb[r0 : r0 + PER_DOC]
            writer.add(DocumentRecord(f"/docs/d{j}.txt", f"d{j}.txt", "", f"sha{j}"), chunks_for(j)[: len(part)], part)
        writer.commit()
    grown = Store.open(path)
    assert grown.manifest.compression.pca_fit_vectors == len(xb)
    exact = np.argsort(-(xq @ xb.T), axis=1)[:, :10]
    _, I = Retriever(grown).search_vectors(xq, 10, oversample=16)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(I, exact)])
    assert recall >= 0.95
