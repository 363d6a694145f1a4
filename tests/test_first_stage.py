"""indexing.first_stage: the FAISS index over PCA-reduced vectors, checked against numpy brute force."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from indexing.compress import Float8Codec, fit_pca
from indexing.errors import ConfigError
from indexing.first_stage import (
    IVF_MIN_VECTORS, add_vectors, choose_ann, code_bytes, default_nlist, expected_code_bytes, new_index,
    reduced_vectors,
)

P = 32  # reduced dimensions
K = 10


@pytest.fixture(scope="module")
def reduced(structured_vectors):
    """xr (n, P), qr (nq, P) reduced by an uncentered PCA, and the float8 codec fitted on xr."""
    xb, xq = structured_vectors
    pca = fit_pca(xb, dims=P)
    xr, qr = pca.transform(xb), pca.transform(xq)
    return xr, qr, Float8Codec.fit(xr)


def brute_force(xq: np.ndarray, xb: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact inner-product top-k: D, I (nq, k)."""
    S = xq @ xb.T  # (nq, n)
    I = np.argsort(-S, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(S, I, 1), I


def float8_index(xr, codec, ann):  # type: ignore[no-untyped-def]
    index = new_index(xr, "float8", ann, codec=codec)
    add_vectors(index, xr, codec)
    return index


@pytest.mark.parametrize("ann", ["flat", "ivf"])
def test_float8_scores_equal_brute_force_over_decoded(reduced, ann):
    xr, qr, codec = reduced
    index = float8_index(xr, codec, ann)
    assert index.ntotal == len(xr)
    if ann == "ivf":
        assert isinstance(index, faiss.IndexIVFPQ) and not index.by_residual
        index.nprobe = index.nlist  # scan every list: must then equal the flat result
    xd = codec.decode(codec.encode(xr))  # (n, P): what the float8 codes hold
    D, I = index.search(qr, K)
    Dref, Iref = brute_force(qr, xd, K)
    np.testing.assert_allclose(D, Dref, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(I, Iref)


def test_ivf_float8_scores_are_exact_for_probed_lists(reduced):
    xr, qr, codec = reduced
    index = float8_index(xr, codec, "ivf")
    assert 1 <= index.nprobe < index.nlist  # the default probes only some lists
    D, I = index.search(qr, K)
    xd = codec.decode(codec.encode(xr))
    assert np.all(I >= 0)
    np.testing.assert_allclose(D, np.einsum("qkd,qd->qk", xd[I], qr), rtol=1e-5, atol=1e-6)
    _, Iref = brute_force(qr, xd, K)
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(I, Iref)])
    assert recall > 0.6  # IVF approximates, but on clustered data not wildly


def test_flat_float8_codes_are_the_e4m3_bytes(reduced):
    xr, _, codec = reduced
    index = float8_index(xr, codec, "flat")
    codes = faiss.vector_to_array(index.codes).reshape(len(xr), P)  # (n, P) uint8
    np.testing.assert_array_equal(codes, codec.encode(xr))


@pytest.mark.parametrize("ann", ["flat", "ivf"])
def test_float8_reduced_vectors_round_trip(reduced, ann):
    xr, _, codec = reduced
    index = float8_index(xr, codec, ann)
    np.testing.assert_array_equal(reduced_vectors(index), codec.decode(codec.encode(xr)))


def test_float8_code_bytes(reduced):
    xr, _, codec = reduced
    assert code_bytes(float8_index(xr, codec, "flat")) == P == expected_code_bytes("float8", P)
    assert code_bytes(float8_index(xr, codec, "ivf")) == P + 8  # code plus its id in the list


def test_empty_index_has_no_reduced_vectors(reduced):
    xr, _, codec = reduced
    assert reduced_vectors(new_index(xr, "float8", "flat", codec=codec)).shape == (0, P)


@pytest.mark.parametrize("ann", ["flat", "ivf"])
@pytest.mark.parametrize("dtype, tol", [("float32", 1e-6), ("float16", 1e-3), ("sq8", 2e-2)])
def test_other_dtypes_build_and_search(reduced, dtype, ann, tol):
    xr, qr, codec = reduced
    index = new_index(xr, dtype, ann, codec=codec)
    add_vectors(index, xr)
    assert index.ntotal == len(xr) and index.is_trained
    np.testing.assert_allclose(reduced_vectors(index), xr, atol=tol)
    assert code_bytes(index) == expected_code_bytes(dtype, P) + (8 if ann == "ivf" else 0)
    if ann == "ivf":
        index.nprobe = index.nlist
    D, I = index.search(qr, K)
    Dref, Iref = brute_force(qr, xr, K)
    recall = np.mean([len(set(a) & set(b)) / K for a, b in zip(I, Iref)])
    assert recall >= (0.99 if dtype != "sq8" else 0.9)
    np.testing.assert_allclose(D[:, 0], Dref[:, 0], atol=10 * tol)


def test_ivf_nlist_is_capped_by_training_points(reduced):
    xr, _, codec = reduced
    index = new_index(xr, "float8", "ivf", codec=codec, nlist=10_000)
    assert index.nlist == len(xr) // 39
    assert index.nprobe == max(1, index.nlist // 4)


def test_choose_ann_and_default_nlist():
    assert choose_ann("auto", IVF_MIN_VECTORS - 1) == "flat"
    assert choose_ann("auto", IVF_MIN_VECTORS) == "ivf"
    assert choose_ann("flat", 10**9) == "flat"
    assert default_nlist(0) == 4 and default_nlist(10_000) == 400
    with pytest.raises(ConfigError, match="ann='hnsw' is not one of flat, ivf, auto"):
        choose_ann("hnsw", 10)


def test_bad_dtype_and_missing_codec(reduced):
    xr, _, _ = reduced
    with pytest.raises(ConfigError, match="dtype='int4' is not one of float8, float16, float32, sq8"):
        new_index(xr, "int4")
    with pytest.raises(ConfigError, match="float8 index needs the Float8Codec"):
        new_index(xr, "float8", codec=None)
