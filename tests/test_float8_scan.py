"""The C float8 scan kernel against FAISS's IndexPQ search over the very same codes."""

from __future__ import annotations

import numpy as np
import pytest

from indexing.compress import FLOAT8, Float8Codec
from indexing.first_stage import add_vectors, new_index
from indexing.float8_scan import codes_view, float8_search, kernel_available


@pytest.fixture(scope="module")
def float8_index(structured_vectors):  # type: ignore[no-untyped-def]
    xb, xq = structured_vectors[0], structured_vectors[1]
    codec = Float8Codec.for_unit_vectors(xb.shape[1])
    index = new_index(xb, "float8", "flat", codec=codec)
    add_vectors(index, xb, codec)
    return index, codec, xb, xq


def test_the_kernel_is_built() -> None:
    assert kernel_available(), "indexing/_float8scan.c did not compile: pip install -e . needs gcc"


def test_codes_view_is_the_index_codes_without_copy(float8_index) -> None:  # type: ignore[no-untyped-def]
    index, codec, xb, _ = float8_index
    view = codes_view(index)
    assert view.shape == (len(xb), xb.shape[1]) and not view.flags.owndata
    np.testing.assert_array_equal(view, codec.encode(xb))


@pytest.mark.parametrize("nq", [1, 3, 50])
@pytest.mark.parametrize("k", [1, 10, 80])
def test_kernel_equals_faiss_pq_search(float8_index, nq: int, k: int) -> None:  # type: ignore[no-untyped-def]
    index, codec, _, xq = float8_index
    D_faiss, I_faiss = index.search(xq[:nq], k)
    D, I = float8_search(index, codec, xq[:nq], k)
    np.testing.assert_allclose(D, D_faiss, rtol=1e-5, atol=1e-5)
    assert (I == I_faiss).mean() > 0.99  # ties may swap places


def test_kernel_scores_are_exact_float8_inner_products(float8_index) -> None:  # type: ignore[no-untyped-def]
    index, codec, xb, xq = float8_index
    D, I = float8_search(index, codec, xq[:5], 10)
    decoded = codec.encode(xb).view(FLOAT8).astype(np.float32) * codec.scale  # (n, d)
    expected = np.take_along_axis(xq[:5] @ decoded.T, I, axis=1)
    np.testing.assert_allclose(D, expected, rtol=1e-5, atol=1e-6)
    brute = np.sort(xq[:5] @ decoded.T, axis=1)[:, ::-1][:, :10]
    np.testing.assert_allclose(D, brute, rtol=1e-5, atol=1e-6)


def test_k_larger_than_the_index(float8_index) -> None:  # type: ignore[no-untyped-def]
    _, codec, xb, xq = float8_index
    small = new_index(xb[:3], "float8", "flat", codec=codec)
    add_vectors(small, xb[:3], codec)
    D, I = float8_search(small, codec, xq[:2], 5)
    assert (I[:, 3:] == -1).all() and np.isneginf(D[:, 3:]).all()
    assert sorted(I[0, :3]) == [0, 1, 2]


def test_corrupt_nan_and_subnormal_bytes_score_zero_in_both_scans() -> None:
    """0x7f/0xff (NaN) and exponent-0 bytes are never written; if found they count as 0 everywhere."""
    codec = Float8Codec.for_unit_vectors(4)
    index = new_index(np.zeros((1, 4), np.float32), "float8", "flat", codec=codec)
    index.add_sa_codes(np.array([[0x7F, 0xFF, 0x05, 0x38]], np.uint8))  # NaN, NaN, subnormal, 1.0
    xq = np.ones((1, 4), np.float32)
    D, _ = float8_search(index, codec, xq, 1)
    D_faiss, _ = index.search(xq, 1)
    np.testing.assert_allclose(D, D_faiss, rtol=1e-6)
    np.testing.assert_allclose(D[0, 0], codec.scale[0] * 1.0, rtol=1e-6)


@pytest.mark.parametrize("d", [5, 32, 45, 96, 130, 4100])
@pytest.mark.parametrize("nq", [1, 6])
def test_any_width_and_row_count(d: int, nq: int) -> None:
    """Widths that are not a multiple of the 32-byte SIMD step, row counts that are not a multiple
    of the 4-row (single query) or 16-row (query block) steps: every code byte still counts once."""
    rng = np.random.default_rng(d)
    xb = rng.standard_normal((1003, d)).astype(np.float32)  # (n, d)
    xb /= np.linalg.norm(xb, axis=1, keepdims=True)
    xq = rng.standard_normal((nq, d)).astype(np.float32)
    codec = Float8Codec.for_unit_vectors(d)
    index = new_index(xb, "float8", "flat", codec=codec)
    add_vectors(index, xb, codec)
    D, I = float8_search(index, codec, xq, 20)
    decoded = codec.encode(xb).view(FLOAT8).astype(np.float32) * codec.scale  # (n, d)
    scores = xq @ decoded.T  # (nq, n)
    np.testing.assert_allclose(D, np.sort(scores, axis=1)[:, ::-1][:, :20], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(scores, I, axis=1), D, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nq", [1, 6])
def test_every_byte_value_scores_as_the_codebook_says(nq: int) -> None:
    """Random bytes 0..255 (NaN and subnormal patterns included) through the 4-row and 16-row
    paths: scores equal the IndexPQ codebook's values, in which corrupt bytes are 0."""
    from indexing.compress import FLOAT8_VALUES

    rng = np.random.default_rng(nq)
    n, d = 1003, 45
    codes = rng.integers(0, 256, (n, d), dtype=np.uint8)
    codec = Float8Codec.for_unit_vectors(d)
    index = new_index(np.zeros((1, d), np.float32), "float8", "flat", codec=codec)
    index.add_sa_codes(codes)
    xq = rng.standard_normal((nq, d)).astype(np.float32)
    D, I = float8_search(index, codec, xq, 25)
    scores = xq @ (FLOAT8_VALUES[codes] * codec.scale).T  # (nq, n)
    np.testing.assert_allclose(D, np.sort(scores, axis=1)[:, ::-1][:, :25], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(np.take_along_axis(scores, I, axis=1), D, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("nq", [1, 5])
def test_many_segments_in_one_call_equal_one_buffer(nq: int) -> None:
    """search_many over code buffers of any sizes (empty, not a multiple of 4, small enough for one
    thread and large enough for two) equals search over their concatenation, rows offset."""
    from indexing import _float8scan

    rng = np.random.default_rng(9)
    d, k = 40, 25
    sizes = [3, 0, 1001, 7, 30_000]
    segs = [rng.integers(0, 256, (n, d), dtype=np.uint8) for n in sizes]
    offsets = list(np.cumsum([0] + sizes[:-1]) + 1000)
    xq = rng.normal(size=(nq, d)).astype(np.float32)
    whole = np.concatenate(segs)
    D1, I1 = np.empty((nq, k), np.float32), np.empty((nq, k), np.int64)
    _float8scan.search(whole, len(whole), d, xq, nq, k, D1, I1)
    D2, I2 = np.empty((nq, k), np.float32), np.empty((nq, k), np.int64)
    _float8scan.search_many(segs, [int(o) for o in offsets], d, xq, nq, k, D2, I2)
    np.testing.assert_array_equal(I2, I1 + 1000)
    np.testing.assert_allclose(D2, D1, rtol=1e-6)
    for bad in (([segs[0]], [0, 1]), ([np.zeros(41, np.uint8)], [0]), ([segs[0]], [-1]), (segs[0], [0])):
        with pytest.raises(ValueError):
            _float8scan.search_many(*bad, d, xq, nq, k, D2, I2)


@pytest.mark.parametrize("nq", [1, 6])
def test_ties_come_out_by_lower_row_on_any_split(nq: int) -> None:
    """Many identical rows: among equal scores the kernel returns the lower rows, whether one
    buffer or several segments, one thread or two, so ties are reproducible across compactions.
    (The one-query path scores 4 rows at a time in bfloat16 and the last rows of a buffer one by
    one, so "identical" rows may differ in the last bit: the order is checked against the
    kernel's own scores of every row.)"""
    from indexing import _float8scan

    rng = np.random.default_rng(2)
    d, k, n = 32, 10, 40_000  # 1.25 MiB of codes: two threads
    row = rng.integers(0, 256, (1, d), dtype=np.uint8)
    row[(row & 0x78) == 0] = 0x40
    codes = np.repeat(row, n, axis=0)  # (n, d): every row the same
    xq = rng.normal(size=(nq, d)).astype(np.float32)
    for parts, offsets in (([codes], [0]), ([codes[:7], codes[7:25_001], codes[25_001:]], [0, 7, 25_001])):
        D_all, I_all = np.empty((nq, n), np.float32), np.empty((nq, n), np.int64)
        _float8scan.search_many(parts, offsets, d, xq, nq, n, D_all, I_all)
        D, I = np.empty((nq, k), np.float32), np.empty((nq, k), np.int64)
        _float8scan.search_many(parts, offsets, d, xq, nq, k, D, I)
        for q in range(nq):
            want = np.lexsort((I_all[q], -D_all[q]))[:k]  # by score, then by lower row
            np.testing.assert_array_equal(I[q], I_all[q][want])


def test_a_forked_child_searches_after_its_parent_did() -> None:
    """GNU OpenMP's threads do not survive fork(): a child forked after the parent searched (the
    default multiprocessing start method on Linux) hung in its first search. It answers now."""
    import os
    import signal

    from indexing import _float8scan

    rng = np.random.default_rng(4)
    d, n = 96, 50_000  # 4.8 MB of codes: the parent scans on two threads
    codes = rng.integers(0, 256, (n, d), dtype=np.uint8)
    xq = rng.normal(size=(1, d)).astype(np.float32)
    D, I = np.empty((1, 10), np.float32), np.empty((1, 10), np.int64)
    _float8scan.search(codes, n, d, xq, 1, 10, D, I)
    expected = I.copy()
    pid = os.fork()
    if pid == 0:  # the child: a hang ends by SIGALRM, a wrong answer by exit 1
        signal.alarm(20)
        _float8scan.search(codes, n, d, xq, 1, 10, D, I)
        os._exit(0 if np.array_equal(I, expected) else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child status {status}"
