"""indexing.compress: scaled float8 codes and uncentered PCA."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from indexing.compress import FLOAT8_MAX, FLOAT8_VALUES, Float8Codec, fit_pca, identity_pca
from indexing.errors import ConfigError

E4M3_MIN_NORMAL = 2.0**-6  # smallest normal e4m3fn magnitude, in code units
NAN_CODES = (0x7F, 0xFF)

deterministic = settings(derandomize=True, database=None, max_examples=200, deadline=None)


def check_error_bound(codec: Float8Codec, x: np.ndarray) -> None:
    """Within range: relative error <= 1/16 (3 mantissa bits, round to nearest); below the
    smallest normal the codes flush to zero, so the error is under that smallest normal."""
    dec = codec.decode(codec.encode(x))  # (n, d)
    bound = np.maximum(np.abs(x) / 16, codec.scale * E4M3_MIN_NORMAL)
    assert np.all(np.abs(dec - x) <= bound * (1 + 1e-6))
    normal = np.abs(x) / codec.scale >= E4M3_MIN_NORMAL
    assert np.all(np.abs(dec - x)[normal] <= np.abs(x)[normal] / 16 * (1 + 1e-6))


# -- float8 ---------------------------------------------------------------------------------
def test_float8_round_trip_on_embeddings(structured_vectors):
    xb, _ = structured_vectors  # (n, d)
    codec = Float8Codec.fit(xb)
    check_error_bound(codec, xb)
    dec = codec.decode(codec.encode(xb))
    cos = np.sum(dec * xb, axis=1) / np.linalg.norm(dec, axis=1)
    assert cos.min() > 0.998  # a whole vector keeps its direction


@deterministic
@given(arrays(np.float32, (7, 5), elements=st.floats(-1.0, 1.0, width=32)))
def test_float8_round_trip_any_values_in_range(x):
    codec = Float8Codec(np.array([1 / 448, 1 / 448, 0.5 / 448, 2.0 / 448, 1e-3], np.float32))
    inside = np.clip(x, -codec.scale * FLOAT8_MAX, codec.scale * FLOAT8_MAX)
    check_error_bound(codec, inside)


@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")
@deterministic
@given(arrays(np.float32, (4, 3), elements=st.floats(width=32, allow_nan=True, allow_infinity=True)))
def test_encode_never_produces_nan(x):
    codec = Float8Codec(np.full(3, 1 / 448, np.float32))
    codes = codec.encode(x)  # (4, 3) uint8
    assert codes.dtype == np.uint8
    assert not np.isin(codes, NAN_CODES).any()
    dec = codec.decode(codes)
    assert np.all(np.isfinite(dec))
    assert np.all(np.abs(dec) <= 1.0)


@pytest.mark.filterwarnings("ignore:overflow encountered in divide:RuntimeWarning")
def test_encode_huge_and_nan_inputs():
    codec = Float8Codec(np.full(6, 1 / 448, np.float32))
    x = np.array([[1e30, -1e30, np.inf, -np.inf, np.nan, 3.0e38]], np.float32)
    dec = codec.decode(codec.encode(x))
    np.testing.assert_array_equal(dec, [[1.0, -1.0, 1.0, -1.0, 0.0, 1.0]])


def test_fit_scale_maps_peak_with_headroom_and_clips_at_bound():
    x = np.array([[0.1, -0.3, 0.9], [-0.2, 0.05, 0.0]], np.float32)  # peaks 0.2, 0.3, 0.9
    codec = Float8Codec.fit(x, headroom=2.0, bound=1.0)
    np.testing.assert_allclose(codec.scale * FLOAT8_MAX, [0.4, 0.6, 1.0], rtol=1e-6)  # 1.8 capped to 1
    big = np.array([[5.0, -5.0, 5.0]], np.float32)  # beyond every bound
    np.testing.assert_allclose(codec.decode(codec.encode(big)), [[0.4, -0.6, 1.0]], rtol=1e-6)
    unbounded = Float8Codec.fit(x, headroom=1.0, bound=None)
    np.testing.assert_allclose(unbounded.scale * FLOAT8_MAX, [0.2, 0.3, 0.9], rtol=1e-6)


def test_decode_equals_ml_dtypes_cast_times_scale():
    rng = np.random.default_rng(1)
    codec = Float8Codec((rng.uniform(0.1, 2.0, 8) / FLOAT8_MAX).astype(np.float32))
    codes = codec.encode(rng.standard_normal((100, 8)).astype(np.float32))  # (100, 8)
    cast = codes.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * codec.scale
    np.testing.assert_array_equal(codec.decode(codes), cast)
    every = np.tile(np.arange(256, dtype=np.uint8)[:, None], (1, 8))  # (256, 8): all bit patterns
    subnormal = (every[:, 0] & 0x78) == 0  # exponent bits 0: never written (flush to zero)
    ok = ~np.isin(every[:, 0], NAN_CODES) & ~subnormal
    cast = every.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * codec.scale
    np.testing.assert_array_equal(codec.decode(every)[ok], cast[ok])
    assert np.all(codec.decode(every)[~ok] == 0.0)  # a corrupt byte cannot poison a score
    assert not np.any(((codes & 0x78) == 0) & (codes != 0))  # encode writes no subnormal


def test_table_is_every_code_value_per_dimension():
    codec = Float8Codec(np.array([0.5, 2.0], np.float32))
    table = codec.table()  # (d, 256)
    assert table.shape == (2, 256)
    np.testing.assert_array_equal(table[1], FLOAT8_VALUES * 2.0)
    codes = np.array([[3, 200]], np.uint8)
    np.testing.assert_array_equal(codec.decode(codes)[0], [table[0, 3], table[1, 200]])


# -- PCA ------------------------------------------------------------------------------------
def test_pca_components_are_orthonormal_and_energy_sorted(structured_vectors):
    xb, _ = structured_vectors
    pca = fit_pca(xb, dims=32)
    C = pca.components  # (d, p)
    assert C.shape == (128, 32) and C.dtype == np.float32 and pca.dims == 32
    np.testing.assert_allclose(C.T @ C, np.eye(32), atol=1e-5)
    assert np.all(np.diff(pca.energy) <= 1e-7)
    assert 0.9 < pca.energy.sum() <= 1.0 + 1e-6
    assert pca.transform(xb[:3]).shape == (3, 32)


def test_uncentered_pca_keeps_inner_products_in_the_span():
    rng = np.random.default_rng(2)
    A = rng.standard_normal((4, 20))
    x = (rng.standard_normal((500, 4)) + 3.0) @ A  # (n, 20) rank 4, far from centered
    q = rng.standard_normal((10, 4)) @ A
    pca = fit_pca(x, dims=4)
    np.testing.assert_allclose(pca.transform(q) @ pca.transform(x).T, q @ x.T, rtol=1e-3, atol=1e-2)
    assert pca.energy.sum() == pytest.approx(1.0, abs=1e-5)


def test_pca_variance_picks_smallest_dims_reaching_target():
    # Axis-aligned rows with second moments 0.5, 0.3, 0.2, 0 along axes 0..3.
    x = np.diag(np.sqrt([1.5, 0.9, 0.6, 0.0])).astype(np.float32)[:3]  # (3, 4)
    for target, want in ((0.3, 1), (0.49, 1), (0.51, 2), (0.79, 2), (0.81, 3), (1.0, 3)):
        assert fit_pca(x, variance=target).dims == want, target


def test_pca_variance_matches_cumulative_energy(structured_vectors):
    xb, _ = structured_vectors
    energy = fit_pca(xb).energy  # all 128 axes
    cum = np.cumsum(energy.astype(np.float64))
    for target in (0.5, 0.8, 0.9, 0.95, 0.99):
        p = fit_pca(xb, variance=target).dims
        assert cum[p - 1] >= target - 1e-6
        assert p == 1 or cum[p - 2] < target


def test_pca_default_keeps_all_dims_and_identity():
    x = np.random.default_rng(3).standard_normal((50, 6)).astype(np.float32)
    assert fit_pca(x).dims == 6
    ident = identity_pca(6)
    np.testing.assert_array_equal(ident.transform(x), x)


@pytest.mark.parametrize("dims", [0, -1, 129])
def test_pca_dims_out_of_range(structured_vectors, dims):
    xb, _ = structured_vectors
    with pytest.raises(ConfigError, match=rf"pca_dims={dims} must be between 1 and the embedding dimension 128"):
        fit_pca(xb, dims=dims)


@pytest.mark.parametrize("variance", [0.0, -0.5, 1.5])
def test_pca_variance_out_of_range(variance):
    with pytest.raises(ConfigError, match=r"pca_variance=.* must be in \(0, 1\]"):
        fit_pca(np.eye(4, dtype=np.float32), variance=variance)


def test_pca_rejects_both_targets_and_no_data():
    with pytest.raises(ConfigError, match="either pca_dims or pca_variance"):
        fit_pca(np.eye(4, dtype=np.float32), dims=2, variance=0.5)
    with pytest.raises(ConfigError, match="zero vectors"):
        fit_pca(np.zeros((0, 4), np.float32), dims=2)
